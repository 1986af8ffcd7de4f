#!/usr/bin/env bash
# Instructions the kernel model's workload loop executes, counted by callgrind:
# deterministic, so two builds compare on a noisy machine where timings do not.
# Runs `exmem sim ARGS --json` under valgrind, counting only inside the loop
# (SyntheticWorkload::run_waking: the fill and the events, not the boot or the
# end-of-run report), and prints the count.
#
#   bench/model_instructions.sh [exmem sim arguments]
#   e.g. bench/model_instructions.sh --ram 1TiB --policy secretmem-pmd-pool --seed 1 --events 200000
#
# The exmem measured is $EXMEM, else the installed one on PATH, else the
# release build of the command only (scripts/run's), built when missing.
# Callgrind runs about fifty times slower than the program: keep the runs short.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
. "$here/lib.sh"
command -v valgrind >/dev/null || { echo "model_instructions.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
(($# > 0)) || set -- --ram 1TiB --policy upstream --seed 1 --events 2000000
exmem=$(bench_exmem "$src")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "exmem: $exmem ($("$exmem" --version)); exmem sim $* --json"
if ! valgrind --tool=callgrind --callgrind-out-file="$work/out" \
    --toggle-collect='*SyntheticWorkload::run_waking*' "$exmem" sim "$@" --json >"$work/json" 2>"$work/log"; then
  echo "model_instructions.sh: the run failed:" >&2
  grep -v '^==[0-9]*==' "$work/log" | tail -5 >&2
  exit 1
fi
n=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$work/log")
[[ -n $n ]] || { echo "model_instructions.sh: callgrind printed no count" >&2; exit 1; }
awk -v n="$n" 'BEGIN { printf "workload loop: %s instructions (%.2f G)\n", n, n / 1e9 }'

#!/usr/bin/env bash
# The wall time of `exmem sim --policy all --seed 1` (the default scenario, or
# SCENARIO: a shipped name such as vm-host-4tib, or a file; every policy) with
# --jobs 1 and with --jobs JOBS, alternately, RUNS times each: each run's time
# and peak RSS (the whole process: every concurrent run), the medians with
# their spread, and the speed-up.
#
#   bench/sim_jobs_bench.sh [runs=3] [jobs=the CPUs] [scenario=the default]
#
# The exmem measured is $EXMEM, else the installed one on PATH, else the
# release build of the command only (scripts/run's), built when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
. "$here/lib.sh"
runs=${1:-3}
jobs=${2:-$(nproc)}
scenario=()
[[ -n ${3:-} ]] && scenario=(--scenario "$3")
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "sim_jobs_bench.sh: runs \"$runs\": expected a whole number from 1" >&2; exit 2; }
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "sim_jobs_bench.sh: jobs \"$jobs\": expected a whole number from 1" >&2; exit 2; }
exmem=$(bench_exmem "$src")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "exmem: $exmem ($("$exmem" --version)); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "exmem sim ${scenario[*]:-(the default scenario)} --policy all --seed 1, --jobs 1 and --jobs $jobs, $runs runs each"
# One run: its wall seconds and peak RSS in MiB.
one() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$exmem" sim "${scenario[@]}" --policy all --seed 1 --jobs "$1" \
    --progress never >/dev/null 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
  awk '{ printf "%s %d", $1, $2 / 1024 }' "$work/time"
}
serial=() parallel=()
for ((r = 1; r <= runs; r++)); do
  out=$(one 1)
  read -r s srss <<<"$out"
  out=$(one "$jobs")
  read -r p prss <<<"$out"
  printf 'run %d: --jobs 1 %.2f s (%d MiB peak), --jobs %d %.2f s (%d MiB peak)\n' "$r" "$s" "$srss" "$jobs" "$p" "$prss"
  serial+=("$s") parallel+=("$p")
done
read -r sm smin smax < <(bench_stats "${serial[@]}")
read -r pm pmin pmax < <(bench_stats "${parallel[@]}")
printf -- '--jobs 1: median %.2f s [%.2f-%.2f]; --jobs %d: median %.2f s [%.2f-%.2f]; speed-up %.2fx over %d runs\n' \
  "$sm" "$smin" "$smax" "$jobs" "$pm" "$pmin" "$pmax" "$(awk -v a="$sm" -v b="$pm" 'BEGIN { print a / b }')" "$runs"

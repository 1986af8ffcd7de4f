#!/usr/bin/env bash
# The wall time of `exmem sim --policy all --seed 1` (the default scenario,
# every policy) with --jobs 1 and with --jobs JOBS, alternately, RUNS times
# each: each run's time, the medians with their spread, and the speed-up.
#
#   bench/sim_jobs_bench.sh [runs=3] [jobs=the CPUs]
#
# The exmem measured is $EXMEM, else the installed one on PATH, else the
# release build of the command only (scripts/run's), built when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
. "$here/lib.sh"
runs=${1:-3}
jobs=${2:-$(nproc)}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "sim_jobs_bench.sh: runs \"$runs\": expected a whole number from 1" >&2; exit 2; }
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "sim_jobs_bench.sh: jobs \"$jobs\": expected a whole number from 1" >&2; exit 2; }
exmem=$(bench_exmem "$src")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "exmem: $exmem ($("$exmem" --version)); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
# One run: its wall seconds.
one() {
  local j=$1 start end
  start=$(date +%s.%N)
  "$exmem" sim --policy all --seed 1 --jobs "$j" --progress never >/dev/null 2>"$work/log" ||
    { cat "$work/log" >&2; exit 1; }
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}
serial=() parallel=()
for ((r = 1; r <= runs; r++)); do
  s=$(one 1)
  p=$(one "$jobs")
  printf 'run %d: --jobs 1 %.2f s, --jobs %d %.2f s\n' "$r" "$s" "$jobs" "$p"
  serial+=("$s") parallel+=("$p")
done
read -r sm smin smax < <(bench_stats "${serial[@]}")
read -r pm pmin pmax < <(bench_stats "${parallel[@]}")
printf -- '--jobs 1: median %.2f s [%.2f-%.2f]; --jobs %d: median %.2f s [%.2f-%.2f]; speed-up %.2fx over %d runs\n' \
  "$sm" "$smin" "$smax" "$jobs" "$pm" "$pmin" "$pmax" "$(awk -v a="$sm" -v b="$pm" 'BEGIN { print a / b }')" "$runs"

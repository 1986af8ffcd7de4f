#!/usr/bin/env bash
# The speed of `exmem study`: bench/study-100.toml (100 points of 1 M events on
# 64 GiB) run from scratch (--force) RUNS times with --jobs JOBS, each run's
# wall time, their median and spread, and PASS/FAIL against the target:
# under 120 s on 2 cores. Also the points' own run time summed (what one
# process would take for them one after another), for the speed-up.
#
#   bench/study_bench.sh [runs=3] [jobs=2]
#
# The exmem measured is $EXMEM, else the installed one on PATH, else the
# release build of the command only (scripts/run's), built when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
. "$here/lib.sh"
runs=${1:-3}
jobs=${2:-2}
exmem=$(bench_exmem "$src")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "exmem: $exmem ($("$exmem" --version)); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
walls=()
for ((r = 1; r <= runs; r++)); do
  start=$(date +%s.%N)
  "$exmem" study "$here/study-100.toml" --jobs "$jobs" --force --out "$work/out" --progress never 2>"$work/log" ||
    { cat "$work/log" >&2; exit 1; }
  end=$(date +%s.%N)
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  serial=$(awk -F, 'NR > 1 { s += $NF } END { printf "%.1f", s }' "$work/out/results.csv")
  points=$(($(wc -l < "$work/out/results.csv") - 1))
  printf 'run %d: %d points in %.1f s wall with --jobs %d (their own run times sum to %s s)\n' "$r" "$points" "$wall" "$jobs" "$serial"
  walls+=("$wall")
done
read -r median min max < <(bench_stats "${walls[@]}")
printf 'median %.1f s (min %.1f, max %.1f) over %d runs\n' "$median" "$min" "$max" "$runs"
verdict=$(awk -v m="$median" 'BEGIN { print (m < 120) ? "PASS" : "FAIL" }')
printf '%s: 100 points of 1 M events on 64 GiB, median %.1f s, target < 120 s\n' "$verdict" "$median"

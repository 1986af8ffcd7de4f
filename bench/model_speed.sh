#!/usr/bin/env bash
# The model's sustained speed, as a user gets it: `exmem sim` on a RAM-sized
# machine for EVENTS events of the default synthetic mix, one policy at a time
# on one core (--jobs 1), RUNS times each; for every policy the events per
# second of the run (events / run_seconds: the workload loop, not the boot or
# the end-of-run report), its median and spread, the model's bytes per
# modelled frame and the process's peak RSS.
#
#   bench/model_speed.sh [runs=3] [events=100000000] [ram=1TiB] [policy ...]
#
# Without policies: every policy. The exmem measured is $EXMEM, else the
# installed one on PATH, else the release build of the command only
# (scripts/run's), built when missing. Runs are long on purpose: the speed of
# a 1 M-event run says little about a 100 M-event one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
. "$here/lib.sh"
runs=${1:-3}
events=${2:-100000000}
ram=${3:-1TiB}
shift $(($# < 3 ? $# : 3))
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "model_speed.sh: runs \"$runs\": expected a whole number from 1" >&2; exit 2; }
[[ $events =~ ^[1-9][0-9]*$ ]] || { echo "model_speed.sh: events \"$events\": expected a whole number from 1" >&2; exit 2; }
exmem=$(bench_exmem "$src")
policies=("$@")
if ((${#policies[@]} == 0)); then
  # The known policies, as `exmem sim --help` lists them.
  mapfile -t policies < <("$exmem" sim --help | awk '/^Known policies:/ {f = 1; next} f && /^  [a-z-]+:/ {sub(/^  /, ""); sub(/:.*/, ""); print}')
fi
((${#policies[@]})) || { echo "model_speed.sh: no policies (exmem sim --help lists none?)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "exmem: $exmem ($("$exmem" --version)); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "exmem sim --ram $ram --events $events --seed 1 --jobs 1 --policy P, $runs runs each"
printf '| policy | M events/s median [min-max] | bytes per frame | peak RSS MiB | wall s (median) |\n|---|---|---|---|---|\n' >"$work/table"
for p in "${policies[@]}"; do
  rates=() walls=() bpf="" rss=0
  for ((r = 1; r <= runs; r++)); do
    /usr/bin/time -f '%e %M' -o "$work/time" "$exmem" sim --ram "$ram" --events "$events" --seed 1 --jobs 1 \
      --policy "$p" --progress never --json >"$work/out.json" 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    read -r wall kb <"$work/time"
    read -r rate b < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
print(r["events_per_second"] / 1e6, r["model_bytes_per_frame"])' "$work/out.json")
    printf '%s run %d: %.2f M events/s, %.3f bytes/frame, %d MiB peak, %.1f s wall\n' "$p" "$r" "$rate" "$b" $((kb / 1024)) "$wall"
    rates+=("$rate") walls+=("$wall") bpf=$b
    ((kb / 1024 > rss)) && rss=$((kb / 1024))
  done
  read -r m lo hi < <(bench_stats "${rates[@]}")
  read -r wm _ _ < <(bench_stats "${walls[@]}")
  printf '| %s | %.2f [%.2f-%.2f] | %.2f | %d | %.1f |\n' "$p" "$m" "$lo" "$hi" "$bpf" "$rss" "$wm" >>"$work/table"
done
echo
cat "$work/table"

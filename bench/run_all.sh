#!/usr/bin/env bash
# Builds the benchmarks (Release) and runs the three, writing everything they print
# to the file given as argument (default: bench-results.txt).
#
#   bench/run_all.sh [results-file] [build-dir]
#
# With WAIT_QUIET=<seconds>, waits up to that long for the machine to be idle
# (under 10% of the CPUs busy in three 5-second windows in a row) before running.
#
# The density benchmark's part (b) needs root (it drops CAP_IPC_LOCK in its
# children); run as an ordinary user it reports what it could not set up.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
out=${1:-bench-results.txt}
build=${2:-$src/build/bench}

cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DEXMEM_BUILD_BENCH=ON -DEXMEM_BUILD_TESTS=OFF -DEXMEM_BUILD_CLI=OFF -DEXMEM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target exmem_alloc_bench exmem_density_bench exmem_vault_bench

# Percentage of all CPUs busy over the next 5 seconds.
busy_percent() {
  local a b
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
  sleep 5
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  a=$((a1 + a2 + a3 + a6 + a7 + a8)); b=$((b1 + b2 + b3 + b6 + b7 + b8))
  local idle=$(( (b4 + b5) - (a4 + a5) ))
  echo $(( 100 * (b - a) / ((b - a) + idle + 1) ))
}

quiet_note="not waited for"
if [[ -n "${WAIT_QUIET:-}" ]]; then
  deadline=$((SECONDS + WAIT_QUIET))
  idle_windows=0
  while :; do
    busy=$(busy_percent)
    if (( busy < 10 )); then idle_windows=$((idle_windows + 1)); else idle_windows=0; fi
    if (( idle_windows >= 3 )); then quiet_note="idle (under 10% busy for 15 s)"; break; fi
    if (( SECONDS >= deadline )); then
      quiet_note="still ${busy}% busy after waiting ${WAIT_QUIET} s: ran anyway"
      break
    fi
  done
fi

{
  echo "# exmem benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "# compiler: $(grep -m1 CMAKE_CXX_COMPILER: "$build/CMakeCache.txt" | cut -d= -f2-)"
  echo "# machine before the run: $quiet_note; load average $(cat /proc/loadavg)"
  echo
  echo "## exmem_alloc_bench"
  "$build/bench/exmem_alloc_bench"
  echo
  echo "## exmem_density_bench"
  "$build/bench/exmem_density_bench"
  echo
  echo "## exmem_vault_bench"
  "$build/bench/exmem_vault_bench"
  echo
  echo "# load average after: $(cat /proc/loadavg)"
} 2>&1 | tee "$out"

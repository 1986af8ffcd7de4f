#!/usr/bin/env bash
# libsodium, OpenSSL and libgcrypt secure allocations natively and through
# libexmem-preload.so, in one run, printed as one table.
#
#   bench/dropin_bench.sh [-n REPETITIONS] [-b BUILD_DIR] [--no-build] [--no-live]
#
# Builds exmem_dropin_bench and exmem_preload in BUILD_DIR (default
# build/release, a Release tree; -j1) unless --no-build, then:
#   cost: REPETITIONS (default 5) runs of `exmem_dropin_bench cost sodium openssl
#         gcrypt`, native and preloaded alternately, so that noise falls on both;
#         ns per allocate(32) + write + free pair: median [min-max] over the runs;
#   live: one run of `exmem_dropin_bench live LIB` per library and mode (root
#         needed: the child drops CAP_IPC_LOCK and sets RLIMIT_MEMLOCK = 8 MiB);
#         the count is deterministic, and libgcrypt's native run takes 1.5 to 3
#         minutes (its secure pool is searched linearly).
# The preloaded runs write their exmem-dropin report lines, printed below the
# table (protection=secret is what the preloaded figures are about).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
reps=5 build=$src/build/release do_build=1 do_live=1
while (($#)); do
  case $1 in
    -n) reps=$2; shift 2 ;;
    -b) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-live) do_live=0; shift ;;
    *) echo "usage: $0 [-n REPETITIONS] [-b BUILD_DIR] [--no-build] [--no-live]" >&2; exit 2 ;;
  esac
done

if ((do_build)); then
  if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
  fi
  cmake --build "$build" -j1 --target exmem_dropin_bench exmem_preload >/dev/null || { echo "build failed" >&2; exit 1; }
fi
bench=$build/bench/exmem_dropin_bench
# The tree's own library (src/preload), not one of a nested tree such as the
# packages' (<build>/deb).
preload=$build/src/preload/libexmem-preload.so
[[ -f $preload ]] || preload=$(find "$build" -path "$build/deb" -prune -o -name 'libexmem-preload.so' -type f -print 2>/dev/null | head -n 1)
[[ -x $bench ]] || { echo "no $bench" >&2; exit 1; }
[[ -n $preload ]] || { echo "no libexmem-preload.so under $build (target exmem_preload)" >&2; exit 1; }
grep -q 'CMAKE_BUILD_TYPE:STRING=Release' "$build/CMakeCache.txt" 2>/dev/null ||
  echo "WARNING: $build is not a Release build" >&2

tmp=$(mktemp -d /tmp/exmem-dropin-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
libs=(sodium openssl gcrypt gcrypt64k)

preloaded() { LD_PRELOAD="$preload" EXMEM_DROPIN_REPORT="$tmp/report" "$@"; }

echo "exmem_dropin_bench: $bench"
echo "preload:            $preload"
echo "machine:            $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "repetitions:        $reps"
for ((r = 1; r <= reps; r++)); do
  # One libgcrypt pool size per process.
  for set in "sodium openssl gcrypt" gcrypt64k; do
    # shellcheck disable=SC2086
    "$bench" cost $set >>"$tmp/cost.native" || echo "native cost run $r ($set) exited $?" >&2
    # shellcheck disable=SC2086
    preloaded "$bench" cost $set >>"$tmp/cost.preload" || echo "preloaded cost run $r ($set) exited $?" >&2
  done
  printf '.' >&2
done
echo >&2
if ((do_live)); then
  for lib in "${libs[@]}"; do
    "$bench" live "$lib" >>"$tmp/live.native" || echo "native live $lib exited $?" >&2
    preloaded "$bench" live "$lib" >>"$tmp/live.preload" || echo "preloaded live $lib exited $?" >&2
  done
fi

# stats FILE LIB: "median min max" of the ns column for LIB, or "error ...".
stats() {
  awk -v lib="$2" '$1 == "cost" && $2 == lib { if ($3 == "error") err = $4; else v[n++] = $3 }
    END {
      if (n == 0) { print "error", (err ? err : "no-data"); exit }
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      med = (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
      printf "%.1f %.1f %.1f\n", med, v[0], v[n - 1]
    }' "$1"
}
live_count() {
  [[ -f $1 ]] || { echo "-"; return; }
  awk -v lib="$2" '$1 == "live" && $2 == lib { print ($3 == "error" ? "error" : $3); found = 1 } END { if (!found) print "-" }' "$1" | tail -n 1
}
fmt_cost() {
  if [[ $1 == error ]]; then echo "error: $2"; else echo "$1 [$2-$3]"; fi
}

echo
printf '| %-9s | %-32s | %-32s | %-9s | %-12s | %-15s |\n' library "native ns/op median [min-max]" \
  "preloaded ns/op median [min-max]" "ratio p/n" "native live" "preloaded live"
printf '|%s|%s|%s|%s|%s|%s|\n' ----------- ---------------------------------- ---------------------------------- ----------- -------------- -----------------
for lib in "${libs[@]}"; do
  read -r nm nlo nhi < <(stats "$tmp/cost.native" "$lib")
  read -r pm plo phi < <(stats "$tmp/cost.preload" "$lib")
  ratio=-
  [[ $nm != error && $pm != error ]] && ratio=$(awk -v a="$pm" -v b="$nm" 'BEGIN { printf "%.3g", a / b }')
  printf '| %-9s | %-32s | %-32s | %-9s | %-12s | %-15s |\n' "$lib" "$(fmt_cost "$nm" "$nlo" "$nhi")" \
    "$(fmt_cost "$pm" "$plo" "$phi")" "$ratio" "$(live_count "$tmp/live.native" "$lib")" \
    "$(live_count "$tmp/live.preload" "$lib")"
done
echo
echo "ratio: preloaded / native ns per pair (below 1: the preload is faster)."
echo "live: 32-byte secrets live at once, RLIMIT_MEMLOCK = 8 MiB, no CAP_IPC_LOCK, bounded at 2,000,000."
echo "set-up (both modes, the same calls): sodium_init(); CRYPTO_secure_malloc_init(8 MiB, 32) (the largest power"
echo "of two the limit lets OpenSSL lock); gcrypt: GCRYCTL_INIT_SECMEM 8 MiB (the whole limit); gcrypt64k: 64 KiB."
if ((do_live)); then
  echo
  echo "live runs (native):"; sed 's/^/  /' "$tmp/live.native"
  echo "live runs (preloaded):"; sed 's/^/  /' "$tmp/live.preload"
fi
echo
echo "report lines of the preloaded runs (last 8):"
tail -n 8 "$tmp/report" 2>/dev/null | sed 's/^/  /'

# Sourced by the bench/*.sh scripts: what they share.

# bench_exmem SRC: the exmem to measure: $EXMEM, else the installed one on
# PATH, else the release build of the command only (scripts/run's) in the
# source tree SRC, built when missing.
bench_exmem() {
  if [[ -n ${EXMEM:-} ]]; then
    echo "$EXMEM"
  elif command -v exmem >/dev/null; then
    command -v exmem
  else
    cmake --preset app -S "$1" >/dev/null
    cmake --build --preset app >/dev/null
    echo "$1/build/app/src/cli/exmem"
  fi
}

# bench_stats N...: "median min max" of the numbers given, two decimals.
bench_stats() {
  printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}

#!/bin/sh
# EXMEM_DROPIN_REPORT: the exit report's line, to a file shared by several
# processes (appended) and to stderr. The line is parsed by other tests: its
# format is pinned here.
#   report_test.sh PRELOAD SODIUM_TEST OPENSSL_TEST GCRYPT_TEST
set -u
preload=$1 sodium=$2 openssl=$3 gcrypt=$4
fail() { echo "FAIL: $*" >&2; exit 1; }
"$sodium" require || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
report=$tmp/report
line_re='^exmem-dropin pid=[0-9]+ protection=(secret|locked|none) sodium_allocs=[0-9]+ sodium_live=-?[0-9]+ openssl_allocs=[0-9]+ openssl_live=-?[0-9]+ gcrypt_allocs=[0-9]+ gcrypt_live=-?[0-9]+$'

# Two processes append to one file.
EXMEM_DROPIN_REPORT=$report LD_PRELOAD=$PRELOAD_RUNTIME$preload "$sodium" report || fail "sodium_test report"
EXMEM_DROPIN_REPORT=$report LD_PRELOAD=$PRELOAD_RUNTIME$preload "$sodium" report || fail "sodium_test report (2)"
cat "$report"
[ "$(wc -l < "$report")" -eq 2 ] || fail "expected 2 lines in the report file"
grep -Evq "$line_re" "$report" && fail "a line does not match $line_re"
[ "$(grep -c ' protection=secret sodium_allocs=3 sodium_live=1 openssl_allocs=0 openssl_live=0 gcrypt_allocs=0 gcrypt_live=0$' "$report")" -eq 2 ] ||
  fail "expected sodium_allocs=3 sodium_live=1 (3 sodium_malloc, 2 sodium_free) in both lines"
[ "$(cut -d' ' -f2 "$report" | sort -u | wc -l)" -eq 2 ] || fail "the two lines must name two pids"

# The other libraries' programs (their forked children report too).
: > "$report"
EXMEM_DROPIN_REPORT=$report LD_PRELOAD=$PRELOAD_RUNTIME$preload "$openssl" preload > /dev/null || fail "openssl_test"
EXMEM_DROPIN_REPORT=$report LD_PRELOAD=$PRELOAD_RUNTIME$preload "$gcrypt" preload > /dev/null || fail "gcrypt_test"
cat "$report"
grep -Evq "$line_re" "$report" && fail "a line does not match $line_re"
grep -Eq ' openssl_allocs=[1-9][0-9]* openssl_live=0 ' "$report" || fail "openssl_test: openssl_allocs > 0, none live"
# libgcrypt keeps its random pool (secure) until exit: some stay live.
grep -Eq ' gcrypt_allocs=[1-9][0-9]* gcrypt_live=[0-9]+$' "$report" || fail "gcrypt_test: gcrypt_allocs > 0"

# stderr; and nothing at all without the variable.
out=$(EXMEM_DROPIN_REPORT=stderr LD_PRELOAD=$PRELOAD_RUNTIME$preload "$sodium" report 2>&1 >/dev/null)
echo "$out"
echo "$out" | grep -Eq "$line_re" || fail "EXMEM_DROPIN_REPORT=stderr: no report line on stderr"
out=$(env -u EXMEM_DROPIN_REPORT LD_PRELOAD=$PRELOAD_RUNTIME$preload "$sodium" report 2>&1)
echo "$out" | grep -q exmem-dropin && fail "a report without EXMEM_DROPIN_REPORT"
# EXMEM_POLICY applies to the drop-in's heap.
out=$(EXMEM_POLICY=locked-only EXMEM_DROPIN_REPORT=stderr LD_PRELOAD=$PRELOAD_RUNTIME$preload "$sodium" report 2>&1 >/dev/null)
echo "$out"
echo "$out" | grep -q '^exmem-dropin .* protection=locked sodium_allocs=3 ' || fail "EXMEM_POLICY=locked-only: not locked"
# A bad EXMEM_POLICY: a message naming it, and served allocations fail.
out=$(EXMEM_POLICY=bogus LD_PRELOAD=$PRELOAD_RUNTIME$preload "$sodium" report 2>&1) && fail "EXMEM_POLICY=bogus: sodium_malloc succeeded"
echo "$out"
echo "$out" | grep -q "libexmem-preload: .*EXMEM_POLICY.*bogus" || fail "EXMEM_POLICY=bogus: no message naming it"
echo "report: ok"

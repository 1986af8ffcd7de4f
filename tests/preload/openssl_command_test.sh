#!/bin/sh
# Debian's openssl command under libexmem-preload: what it writes is identical
# with and without the drop-in (Ed25519 and RSA PKCS#1 v1.5 signatures are
# deterministic), keys it generates under the drop-in are valid, and the exit
# report shows that OpenSSL's secure heap was served.
#   openssl_command_test.sh PRELOAD SODIUM_TEST
set -u
preload=$1 sodium=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v openssl > /dev/null || fail "the openssl command is not installed (Debian: apt-get install openssl)"
"$sodium" require || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pre() { EXMEM_DROPIN_REPORT=$tmp/report LD_PRELOAD=$PRELOAD_RUNTIME$preload "$@"; }
printf 'a message to sign\n' > "$tmp/msg"

# Keys generated under the drop-in.
pre openssl genpkey -algorithm ED25519 -out "$tmp/ed.pem" || fail "genpkey ED25519 under the preload"
pre openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa.pem" || fail "genpkey RSA under the preload"
openssl pkey -in "$tmp/rsa.pem" -check -noout || fail "the RSA key made under the preload does not check"
cat "$tmp/report"
grep -Eq '^exmem-dropin pid=[0-9]+ protection=secret .* openssl_allocs=[1-9][0-9]* ' "$tmp/report" ||
  fail "the report shows no OpenSSL allocation served from memfd_secret memory"

# Signatures: identical with and without.
for k in ed rsa; do
  if [ $k = ed ]; then opts="-rawin"; else opts="-rawin -digest sha256"; fi
  # shellcheck disable=SC2086
  openssl pkeyutl -sign $opts -inkey "$tmp/$k.pem" -in "$tmp/msg" -out "$tmp/$k.native" || fail "native $k sign"
  # shellcheck disable=SC2086
  pre openssl pkeyutl -sign $opts -inkey "$tmp/$k.pem" -in "$tmp/msg" -out "$tmp/$k.preload" || fail "preload $k sign"
  cmp "$tmp/$k.native" "$tmp/$k.preload" || fail "$k signature differs under the preload"
  # shellcheck disable=SC2086
  openssl pkeyutl -verify $opts -inkey "$tmp/$k.pem" -in "$tmp/msg" -sigfile "$tmp/$k.preload" || fail "$k verify"
done
grep -c . "$tmp/report" | grep -qx 4 || fail "expected 4 report lines (4 runs under the preload)"
echo "openssl command: ok"

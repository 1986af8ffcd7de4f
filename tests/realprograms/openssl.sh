#!/usr/bin/env bash
# OpenSSL 3's command (CRYPTO_secure_* for private key numbers) through
# libexmem-preload.so, beyond the preload's own genpkey/pkeyutl test.
#
#   openssl.sh PRELOAD_SO SECRETMEM_PROBE
#
# (a) `openssl genrsa 2048` and `openssl genrsa -primes 3 2048` under the
#     preload make keys that `openssl rsa -check` accepts natively; each run
#     reports protection=secret and openssl_allocs > 0.
# (b) With one RSA key generated natively, the deterministic operations give
#     byte-identical output and the same exit code natively and preloaded (each
#     preloaded run reporting openssl_allocs > 0): `rsa -check`, an RSASSA-PKCS1-v1_5
#     signature by `dgst -sha256 -sign`, its verification, the unencrypted
#     PKCS#8 form by `pkcs8 -topk8 -nocrypt`, and the key decrypted by `rsa
#     -passin` from a PEM encrypted (natively, once) with AES-256.
# The preload's own test (tests/preload/openssl_command_test.sh) covers
# genpkey, pkey -check and pkeyutl; these are the older commands' paths.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/realprograms/common.sh
source "$here/common.sh"

[[ $# -eq 2 ]] || rp_die "usage: $0 PRELOAD_SO SECRETMEM_PROBE"
rp_init "$1" "$2"
rp_require openssl
export LC_ALL=C TZ=UTC
unset OPENSSL_CONF
rp_log "openssl: $(openssl version)"
cd "$rp_tmp" || rp_die "cd $rp_tmp"
printf 'A file signed by openssl through libexmem-preload.so.\n' >msg

# run MODE NAME ARGS...: openssl natively or preloaded; stdout to NAME.out,
# stderr to NAME.err, report to NAME.report; sets RC.
run() {
  local mode=$1 name=$2; shift 2
  : >"$name.report"
  if [[ $mode == native ]]; then
    openssl "$@" >"$name.out" 2>"$name.err" </dev/null
  else
    rp_preloaded "$rp_tmp/$name.report" openssl "$@" >"$name.out" 2>"$name.err" </dev/null
  fi
  RC=$?
}
expect_rc0() {
  if [[ $2 -ne 0 ]]; then rp_fail "$1 exited $2; its stderr: $(tr '\n' '|' <"$3.err")"; return 1; fi
  return 0
}

# ---- (a) a key generated under the preload ----------------------------------------------
run preload genrsa genrsa -out gen.pem 2048
expect_rc0 "(a) openssl genrsa 2048 (preloaded)" $RC genrsa && rp_expect_report genrsa.report any "(a) openssl genrsa" openssl
run native gen-check rsa -check -noout -in gen.pem
expect_rc0 "(a) native openssl rsa -check of the preloaded key" $RC gen-check &&
  rp_pass "(a) the preloaded key passes a native rsa -check: $(tr '\n' ' ' <gen-check.out)"
run preload genrsa3 genrsa -primes 3 -out gen3.pem 2048
expect_rc0 "(a) openssl genrsa -primes 3 2048 (preloaded)" $RC genrsa3 &&
  rp_expect_report genrsa3.report any "(a) openssl genrsa -primes 3" openssl
run native gen3-check rsa -check -noout -in gen3.pem
expect_rc0 "(a) native openssl rsa -check of the preloaded 3-prime key" $RC gen3-check &&
  rp_pass "(a) the preloaded 3-prime key passes a native rsa -check: $(tr '\n' ' ' <gen3-check.out)"

# ---- (b) one native key: the same bytes both ways -----------------------------------------
run native key genrsa -out fixed.pem 2048
expect_rc0 "(b) native openssl genrsa" $RC key || rp_die "no native RSA key to work with"
run native enc rsa -in fixed.pem -aes256 -passout pass:exmem-test -out fixed-enc.pem
expect_rc0 "(b) native openssl rsa -aes256" $RC enc || rp_die "no encrypted copy of the native key"
steps=(check sign verify pkcs8 decrypt)
declare -A argv=(
  [check]="rsa -check -noout -in fixed.pem"
  [sign]="dgst -sha256 -sign fixed.pem -out SIG msg"
  [verify]="dgst -sha256 -prverify fixed.pem -signature native.sig msg"
  [pkcs8]="pkcs8 -topk8 -nocrypt -in fixed.pem -out PK8"
  [decrypt]="rsa -in fixed-enc.pem -passin pass:exmem-test -out DEC"
)
for step in "${steps[@]}"; do
  for mode in native preload; do
    a=${argv[$step]}
    a=${a//SIG/$mode.sig}
    a=${a//PK8/$mode.p8}
    a=${a//DEC/$mode.dec}
    # shellcheck disable=SC2086 # the words of the command line
    run $mode $mode-$step $a
    declare "rc_${step}_$mode=$RC"
  done
  n=rc_${step}_native p=rc_${step}_preload
  expect_rc0 "(b) native openssl $step" "${!n}" "native-$step"
  rp_same_rc "(b) openssl $step" "${!n}" "${!p}"
  rp_same_file "(b) openssl $step stdout" "native-$step".out "preload-$step".out
  [[ ${!p} -eq 0 ]] && rp_expect_report "preload-$step".report any "(b) openssl $step" openssl
done
rp_same_file "(b) RSASSA-PKCS1-v1_5 signature" native.sig preload.sig
rp_same_file "(b) PKCS#8 private key" native.p8 preload.p8
rp_same_file "(b) decrypted private key" native.dec preload.dec
run native cross-verify dgst -sha256 -verify <(openssl pkey -in fixed.pem -pubout) -signature preload.sig msg
expect_rc0 "(b) native verification of the preloaded signature" $RC cross-verify &&
  rp_pass "(b) the preloaded signature verifies natively: $(tr '\n' ' ' <cross-verify.out)"

rp_log "report lines:"
cat ./*.report | sed 's/^/  /'
rp_done

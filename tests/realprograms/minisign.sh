#!/usr/bin/env bash
# minisign (libsodium's sodium_malloc/sodium_free) through libexmem-preload.so.
#
#   minisign.sh PRELOAD_SO SECRETMEM_PROBE
#
# (a) A key pair generated without a password (-W) under the preload signs a
#     file that verifies both under the preload and natively; each preloaded
#     minisign reports protection=secret and sodium_allocs > 0.
# (b) One key pair generated natively signs the same file with the same trusted
#     comment natively and under the preload, in both of the preload's sodium
#     modes (EXMEM_SODIUM=packed, the default, and pages): the .minisig files
#     are byte-identical (Ed25519 is deterministic), and the exit codes and
#     outputs of signing and verifying are the same.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/realprograms/common.sh
source "$here/common.sh"

[[ $# -eq 2 ]] || rp_die "usage: $0 PRELOAD_SO SECRETMEM_PROBE"
rp_init "$1" "$2"
rp_require minisign
export LC_ALL=C TZ=UTC
rp_log "minisign: $(minisign -v 2>&1 | head -n 1)"
cd "$rp_tmp" || rp_die "cd $rp_tmp"
printf 'A file signed by minisign through libexmem-preload.so.\n' >msg
comment='exmem realprograms test: fixed trusted comment'

# run MODE NAME ARGS...: minisign natively (MODE native) or preloaded with
# EXMEM_SODIUM=MODE; stdout+stderr to NAME.out, report to NAME.report; sets RC.
run() {
  local mode=$1 name=$2; shift 2
  : >"$name.report"
  if [[ $mode == native ]]; then
    minisign "$@" >"$name.out" 2>&1 </dev/null
  elif [[ $mode == default ]]; then
    rp_preloaded "$rp_tmp/$name.report" minisign "$@" >"$name.out" 2>&1 </dev/null
  else
    EXMEM_SODIUM=$mode rp_preloaded "$rp_tmp/$name.report" minisign "$@" >"$name.out" 2>&1 </dev/null
  fi
  RC=$?
}
expect_rc0() {
  if [[ $2 -ne 0 ]]; then rp_fail "$1 exited $2; its output: $(tr '\n' '|' <"$3.out")"; return 1; fi
  return 0
}

# ---- (a) everything preloaded ---------------------------------------------------------
run default gen -G -W -p gen.pub -s gen.key
expect_rc0 "(a) minisign -G -W (preloaded)" $RC gen && rp_expect_report gen.report any "(a) minisign -G" sodium
run default gen-sign -S -s gen.key -m msg -x gen.minisig -t "$comment"
expect_rc0 "(a) minisign -S (preloaded)" $RC gen-sign && rp_expect_report gen-sign.report any "(a) minisign -S" sodium
run default gen-verify -V -p gen.pub -m msg -x gen.minisig
expect_rc0 "(a) minisign -V (preloaded)" $RC gen-verify && rp_pass "(a) the preloaded signature verifies under the preload"
run native gen-verify-native -V -p gen.pub -m msg -x gen.minisig
expect_rc0 "(a) native minisign -V of the preloaded signature" $RC gen-verify-native &&
  rp_pass "(a) the preloaded signature verifies natively"

# ---- (b) one native key: signatures byte for byte -----------------------------------
run native key -G -W -p fixed.pub -s fixed.key
expect_rc0 "(b) native minisign -G -W" $RC key || rp_die "no native key pair to sign with"
run native native-sign -S -s fixed.key -m msg -x native.minisig -t "$comment"
expect_rc0 "(b) native minisign -S" $RC native-sign
run native native-verify -V -p fixed.pub -m msg -x native.minisig
expect_rc0 "(b) native minisign -V" $RC native-verify
for mode in packed pages; do
  run $mode $mode-sign -S -s fixed.key -m msg -x $mode.minisig -t "$comment"
  rc_sign=$RC
  rp_same_rc "(b) minisign -S, EXMEM_SODIUM=$mode" 0 $rc_sign
  [[ $rc_sign -eq 0 ]] && rp_expect_report $mode-sign.report any "(b) minisign -S, EXMEM_SODIUM=$mode" sodium
  rp_same_file "(b) minisign -S output, EXMEM_SODIUM=$mode" native-sign.out $mode-sign.out
  rp_same_file "(b) .minisig file, EXMEM_SODIUM=$mode" native.minisig $mode.minisig
  run $mode $mode-verify -V -p fixed.pub -m msg -x $mode.minisig
  rp_same_rc "(b) minisign -V, EXMEM_SODIUM=$mode" 0 $RC
  rp_same_file "(b) minisign -V output, EXMEM_SODIUM=$mode" native-verify.out $mode-verify.out
  run native $mode-verify-native -V -p fixed.pub -m msg -x $mode.minisig
  expect_rc0 "(b) native minisign -V of the EXMEM_SODIUM=$mode signature" $RC $mode-verify-native
done

rp_log "report lines:"
cat ./*.report | sed 's/^/  /'
rp_done

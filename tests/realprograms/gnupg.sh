#!/usr/bin/env bash
# GnuPG (gpg 2.2 and the gpg-agent it starts, libgcrypt 1.10) through libexmem-preload.so.
#
#   gnupg.sh PRELOAD_SO SECRETMEM_PROBE FIXED_KEY_ASC
#
# (a) In an empty GNUPGHOME, with LD_PRELOAD for gpg and so for the gpg-agent
#     it starts: generate an Ed25519 key, sign a file, verify it. While the
#     agent lives, its /proc/PID/maps holds the preload and "/secretmem"
#     mappings, which /proc/PID/mem cannot read (its [heap] it can); at its
#     exit its report line says protection=secret and gcrypt_allocs > 0.
# (b) The fixed test key (FIXED_KEY_ASC, made once natively) imported into a
#     native and a preloaded GNUPGHOME: the detached signature and the
#     clear-signed text made with a pinned time are byte-identical (Ed25519 is
#     deterministic), gpg's exit codes and --status-fd output are the same, and
#     the preloaded signature verifies natively.
# Every gpg-agent started here is killed and the directory removed on any exit.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/realprograms/common.sh
source "$here/common.sh"

[[ $# -eq 3 ]] || rp_die "usage: $0 PRELOAD_SO SECRETMEM_PROBE FIXED_KEY_ASC"
rp_init "$1" "$2"
fixed_key=$3
[[ -r "$fixed_key" ]] || rp_die "the fixed test key '$fixed_key' is not readable"
rp_require gpg gpg-agent gpgconf gpg-connect-agent
export LC_ALL=C TZ=UTC
unset GPG_AGENT_INFO
report=$rp_tmp/report
: >"$report"
rp_log "gpg: $(gpg --version | head -n 1); libgcrypt $(gpg --version | sed -n 's/^libgcrypt \(.*\)/\1/p')"

# Options every gpg call takes: no tty, no pinentry, an empty passphrase.
gpg_opts=(--batch --no-tty --pinentry-mode loopback --passphrase '')
# The signing time is pinned, so that the signatures can be compared.
sign_time=20250102T000000!

# new_home NAME: makes $rp_tmp/NAME (mode 700), sets HOME_DIR, and registers
# the killing of its agent for any exit.
new_home() {
  HOME_DIR=$rp_tmp/$1
  mkdir -m 700 "$HOME_DIR" || rp_die "mkdir $HOME_DIR"
  rp_cleanups+=("GNUPGHOME='$HOME_DIR' gpgconf --kill gpg-agent >/dev/null 2>&1")
}

# agent_pid HOME: the pid of the gpg-agent serving HOME (empty if none runs).
agent_pid() {
  GNUPGHOME=$1 gpg-connect-agent --no-autostart 'getinfo pid' /bye 2>/dev/null | sed -n 's/^D \([0-9][0-9]*\)$/\1/p'
}

# check_agent HOME WHAT: the agent of HOME has the preload and memfd_secret
# mappings while alive; killed, it writes a report line with gcrypt_allocs > 0.
check_agent() {
  local home=$1 what=$2 pid maps secret i
  pid=$(agent_pid "$home")
  if [[ -z "$pid" ]]; then rp_fail "$what: no gpg-agent answers 'getinfo pid' for $home"; return; fi
  maps=$(cat "/proc/$pid/maps" 2>/dev/null) || { rp_fail "$what: cannot read /proc/$pid/maps"; return; }
  if grep -qF "$(basename "$RP_PRELOAD")" <<<"$maps"; then
    rp_pass "$what: gpg-agent pid $pid has $(basename "$RP_PRELOAD") mapped"
  else
    rp_fail "$what: gpg-agent pid $pid does not have $(basename "$RP_PRELOAD") mapped (LD_PRELOAD did not reach it)"
  fi
  secret=$(grep -c '/secretmem' <<<"$maps")
  if (( secret > 0 )); then
    rp_pass "$what: gpg-agent pid $pid has $secret /secretmem mapping(s): $(grep '/secretmem' <<<"$maps" | head -n 3 | awk '{print $1}' | tr '\n' ' ')"
  else
    rp_fail "$what: gpg-agent pid $pid has no /secretmem mapping in /proc/$pid/maps (its secure memory is not memfd_secret)"
  fi
  # Even root cannot read it through /proc/PID/mem (the kernel's GUP refuses
  # secretmem VMAs), while the agent's ordinary heap reads fine.
  local sec_range heap_range got_sec got_heap
  sec_range=$(awk '$2 ~ /^rw/ && $6 == "/secretmem" {print $1; exit}' <<<"$maps")
  heap_range=$(awk '$2 ~ /^rw/ && $6 == "[heap]" {print $1; exit}' <<<"$maps")
  if [[ -n "$sec_range" && -n "$heap_range" ]]; then
    got_sec=$(dd if="/proc/$pid/mem" bs=4096 iflag=skip_bytes skip=$((16#${sec_range%-*})) count=1 status=none 2>/dev/null | wc -c)
    got_heap=$(dd if="/proc/$pid/mem" bs=4096 iflag=skip_bytes skip=$((16#${heap_range%-*})) count=1 status=none 2>/dev/null | wc -c)
    if [[ $got_heap -ne 4096 ]]; then
      rp_log "note: $what: could not read the agent's [heap] through /proc/$pid/mem either ($got_heap bytes); the /secretmem read check says nothing here"
    elif [[ $got_sec -eq 0 ]]; then
      rp_pass "$what: /proc/$pid/mem reads 4096 bytes of the agent's [heap] and 0 of its /secretmem page at ${sec_range%-*}"
    else
      rp_fail "$what: /proc/$pid/mem gave $got_sec bytes of the agent's /secretmem page at ${sec_range%-*}; memfd_secret memory should be unreadable"
    fi
  fi
  GNUPGHOME=$home gpgconf --kill gpg-agent
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then rp_fail "$what: gpg-agent pid $pid still alive 10 s after gpgconf --kill"; return; fi
  # The report is written at exit; give the file system a moment.
  for ((i = 0; i < 20; i++)); do [[ -n $(rp_report_line "$report" "$pid") ]] && break; sleep 0.1; done
  rp_expect_report "$report" "$pid" "$what: gpg-agent" gcrypt
}

# run_gpg MODE OUT_PREFIX ARGS...: gpg natively (MODE native) or preloaded,
# stdout+status to OUT_PREFIX.status, stderr to OUT_PREFIX.err; sets RC.
run_gpg() {
  local mode=$1 out=$2; shift 2
  if [[ $mode == native ]]; then
    gpg "${gpg_opts[@]}" --status-fd 1 "$@" >"$out.status" 2>"$out.err"
  else
    rp_preloaded "$report" gpg "${gpg_opts[@]}" --status-fd 1 "$@" >"$out.status" 2>"$out.err"
  fi
  RC=$?
}

expect_rc0() {
  if [[ $2 -ne 0 ]]; then rp_fail "$1 exited $2; its stderr: $(tr '\n' '|' <"$3.err")"; return 1; fi
  return 0
}

printf 'A message signed by gpg through libexmem-preload.so.\n' >"$rp_tmp/msg"

# ---- (a) generate, sign and verify with everything preloaded ---------------------------
new_home gen
gen=$HOME_DIR
export GNUPGHOME=$gen
run_gpg preload "$rp_tmp/gen-key" --quick-gen-key 'Test <t@example.org>' ed25519 sign never
expect_rc0 "(a) gpg --quick-gen-key (preloaded)" $RC "$rp_tmp/gen-key" && rp_pass "(a) key generated under the preload"
fpr=$(rp_preloaded "$report" gpg "${gpg_opts[@]}" --with-colons -K 2>/dev/null | awk -F: '/^fpr:/ {print $10; exit}')
[[ -n "$fpr" ]] || rp_fail "(a) the generated key is not listed by gpg -K"
run_gpg preload "$rp_tmp/gen-sign" --yes -u "$fpr" --detach-sign -o "$rp_tmp/gen.sig" "$rp_tmp/msg"
expect_rc0 "(a) gpg --detach-sign (preloaded)" $RC "$rp_tmp/gen-sign"
run_gpg preload "$rp_tmp/gen-verify" --verify "$rp_tmp/gen.sig" "$rp_tmp/msg"
if expect_rc0 "(a) gpg --verify (preloaded)" $RC "$rp_tmp/gen-verify"; then
  if grep -q "^\[GNUPG:\] GOODSIG" "$rp_tmp/gen-verify.status"; then
    rp_pass "(a) the signature verifies under the preload (GOODSIG)"
  else
    rp_fail "(a) gpg --verify exited 0 without GOODSIG: $(tr '\n' '|' <"$rp_tmp/gen-verify.status")"
  fi
fi
run_gpg native "$rp_tmp/gen-verify-native" --verify "$rp_tmp/gen.sig" "$rp_tmp/msg"
expect_rc0 "(a) native gpg --verify of the preloaded signature" $RC "$rp_tmp/gen-verify-native" &&
  rp_pass "(a) the preloaded signature verifies natively"
check_agent "$gen" "(a)"

# ---- (b) the fixed key: native and preloaded outputs byte for byte -----------------------
new_home native; nat=$HOME_DIR
new_home preloaded; pre=$HOME_DIR
fixed_fpr=15AA6C256222CC9A5451C11A847812D7AB21858F
sign_opts=(--yes --faked-system-time "$sign_time" --digest-algo SHA256 -u "$fixed_fpr")

for mode in native preload; do
  if [[ $mode == native ]]; then export GNUPGHOME=$nat; else export GNUPGHOME=$pre; fi
  run_gpg $mode "$rp_tmp/$mode-import" --import "$fixed_key"; declare "rc_import_$mode=$RC"
  run_gpg $mode "$rp_tmp/$mode-sign" "${sign_opts[@]}" --detach-sign -o "$rp_tmp/$mode.sig" "$rp_tmp/msg"
  declare "rc_sign_$mode=$RC"
  run_gpg $mode "$rp_tmp/$mode-clear" "${sign_opts[@]}" --clearsign -o "$rp_tmp/$mode.asc" "$rp_tmp/msg"
  declare "rc_clear_$mode=$RC"
  run_gpg $mode "$rp_tmp/$mode-verify" --verify "$rp_tmp/$mode.sig" "$rp_tmp/msg"
  declare "rc_verify_$mode=$RC"
done
for step in import sign clear verify; do
  n=rc_${step}_native p=rc_${step}_preload
  expect_rc0 "(b) native gpg $step" "${!n}" "$rp_tmp/native-$step"
  rp_same_rc "(b) gpg $step" "${!n}" "${!p}"
  rp_same_file "(b) gpg $step --status-fd output" "$rp_tmp/native-$step.status" "$rp_tmp/preload-$step.status"
done
rp_same_file "(b) detached Ed25519 signature" "$rp_tmp/native.sig" "$rp_tmp/preload.sig"
rp_same_file "(b) clear-signed message" "$rp_tmp/native.asc" "$rp_tmp/preload.asc"
# The preloaded signatures verify in the native home, natively.
export GNUPGHOME=$nat
run_gpg native "$rp_tmp/cross-verify" --verify "$rp_tmp/preload.sig" "$rp_tmp/msg"
expect_rc0 "(b) native gpg --verify of the preloaded signature" $RC "$rp_tmp/cross-verify" &&
  rp_same_file "(b) native verification of the preloaded signature (status)" "$rp_tmp/native-verify.status" "$rp_tmp/cross-verify.status"
run_gpg native "$rp_tmp/cross-clear" --verify "$rp_tmp/preload.asc"
expect_rc0 "(b) native gpg --verify of the preloaded clear-signed message" $RC "$rp_tmp/cross-clear" &&
  rp_pass "(b) the preloaded clear-signed message verifies natively"
check_agent "$pre" "(b)"

rp_log "report lines:"
sed 's/^/  /' "$report"
rp_done

# shellcheck shell=bash
# Shared by the real-program tests (sourced, not run). Each test runs a program
# nobody in this project wrote natively and with LD_PRELOAD=libexmem-preload.so,
# and compares what matters.
#
# Conventions:
#   - every failure prints "FAIL: <what differed>" and the test exits 1;
#   - a test that cannot run here (program missing, no memfd_secret) prints
#     "SKIP: <reason>" and exits 77 (CTest shows it as skipped, with the reason
#     in the output); with EXMEM_REALPROGRAMS_STRICT=1 it fails instead;
#   - everything lives in one temporary directory, removed on any exit.
#
# Usage: source common.sh; rp_init PRELOAD_SO PROBE; ... ; rp_done
set -u

rp_failures=0
rp_tmp=""
rp_cleanups=()

rp_log() { printf '%s\n' "$*"; }
rp_fail() { printf 'FAIL: %s\n' "$*"; rp_failures=$((rp_failures + 1)); }
# Fatal: the rest of the test cannot run.
rp_die() { printf 'FAIL: %s\n' "$*"; exit 1; }
rp_skip() {
  if [[ "${EXMEM_REALPROGRAMS_STRICT:-0}" == 1 ]]; then
    printf 'FAIL (EXMEM_REALPROGRAMS_STRICT=1, would skip): %s\n' "$*"
    exit 1
  fi
  printf 'SKIP: %s\n' "$*"
  exit 77
}
rp_pass() { printf 'ok: %s\n' "$*"; }

rp_cleanup() {
  local c
  for c in "${rp_cleanups[@]+"${rp_cleanups[@]}"}"; do eval "$c" || true; done
  [[ -n "$rp_tmp" && -d "$rp_tmp" ]] && rm -rf -- "$rp_tmp"
}

# rp_init PRELOAD_SO PROBE: checks the preload and memfd_secret, makes the
# temporary directory (short: gpg-agent's socket path must fit in 108 bytes).
rp_init() {
  RP_PRELOAD=$1
  local probe=$2
  if [[ -n "${EXMEM_REALPROGRAMS_SANITIZE:-}" ]]; then
    rp_skip "this build's preload is instrumented (EXMEM_SANITIZE=$EXMEM_REALPROGRAMS_SANITIZE): it cannot be preloaded into uninstrumented programs without the sanitizer runtime first; run these tests in a release or debug build"
  fi
  [[ -f "$RP_PRELOAD" ]] || rp_die "the preload library '$RP_PRELOAD' does not exist (build the exmem_preload target)"
  [[ -x "$probe" ]] || rp_die "the memfd_secret probe '$probe' does not exist"
  local why
  if ! why=$("$probe" 2>&1); then
    rp_skip "memfd_secret is unavailable here, so the preload would fall back to locked memory and nothing below shows secret memory: $why"
  fi
  rp_log "memfd_secret: $why"
  rp_tmp=$(mktemp -d /tmp/exmem-rp.XXXXXX) || rp_die "mktemp failed"
  trap rp_cleanup EXIT
  trap 'exit 130' INT TERM
}

rp_require() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || rp_skip "'$c' is not installed (Debian package: ${RP_PACKAGE_OF[$c]:-?})"
  done
}

# rp_preloaded REPORT CMD...: runs CMD with the preload and its exit report
# appended to REPORT (extra environment goes before: VAR=x rp_preloaded ...).
rp_preloaded() {
  local report=$1; shift
  LD_PRELOAD="$RP_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}" EXMEM_DROPIN_REPORT="$report" "$@"
}

# rp_field LINE NAME: the value of NAME=value in a report line.
rp_field() {
  local w
  for w in $1; do
    [[ "$w" == "$2="* ]] && { printf '%s' "${w#*=}"; return 0; }
  done
  return 1
}

# rp_report_line REPORT PID: the report line of process PID (empty if none);
# PID "any": the last line.
rp_report_line() {
  if [[ $2 == any ]]; then grep -E '^exmem-dropin pid=' "$1" 2>/dev/null | tail -n 1; return; fi
  grep -E "^exmem-dropin pid=$2( |$)" "$1" 2>/dev/null | tail -n 1
}

# rp_expect_report REPORT PID WHAT FAMILY: the process PID ("any": the last one)
# wrote a report line with protection=secret and FAMILY_allocs > 0 (FAMILY:
# sodium, openssl, gcrypt).
rp_expect_report() {
  local report=$1 pid=$2 what=$3 family=$4 line allocs prot
  line=$(rp_report_line "$report" "$pid")
  if [[ -z "$line" ]]; then
    rp_fail "$what (pid $pid) wrote no 'exmem-dropin pid=...' line to $report (EXMEM_DROPIN_REPORT); the report holds: $(tr '\n' '|' <"$report" 2>/dev/null)"
    return 1
  fi
  prot=$(rp_field "$line" protection)
  allocs=$(rp_field "$line" "${family}_allocs")
  if [[ "$prot" != secret ]]; then rp_fail "$what: protection=$prot, expected secret ($line)"; return 1; fi
  if [[ -z "$allocs" || "$allocs" -le 0 ]]; then
    rp_fail "$what: ${family}_allocs=${allocs:-missing}, expected > 0 ($line)"; return 1
  fi
  rp_pass "$what: $line"
}

# rp_same_file WHAT NATIVE PRELOADED: byte-identical, or a failure with the first difference.
rp_same_file() {
  local what=$1 a=$2 b=$3
  if cmp -s -- "$a" "$b"; then rp_pass "$what: identical ($(wc -c <"$a") bytes)"; return 0; fi
  rp_fail "$what differs natively and under the preload: $(cmp -- "$a" "$b" 2>&1 | head -n 1)"
  if ! grep -qI . -- "$a" || ! grep -qI . -- "$b"; then
    rp_log "  native:    $(od -An -tx1 -- "$a" | head -c 300 | tr -s ' \n' ' ')"
    rp_log "  preloaded: $(od -An -tx1 -- "$b" | head -c 300 | tr -s ' \n' ' ')"
  else
    diff -u --label native --label preloaded -- "$a" "$b" | head -n 40
  fi
  return 1
}

# rp_same_rc WHAT NATIVE PRELOADED
rp_same_rc() {
  if [[ "$2" == "$3" ]]; then rp_pass "$1: exit code $2 both ways"; return 0; fi
  rp_fail "$1: exit code $2 natively, $3 under the preload"
  return 1
}

rp_done() {
  if (( rp_failures > 0 )); then
    rp_log "$rp_failures check(s) failed"
    exit 1
  fi
  rp_log "all checks passed"
  exit 0
}

declare -A RP_PACKAGE_OF=(
  [gpg]=gpg [gpg-agent]=gpg-agent [gpgconf]=gpgconf [gpg-connect-agent]=gnupg-utils
  [minisign]=minisign [openssl]=openssl [cmp]=diffutils
)

#!/usr/bin/env bash
# contents.sh PACKAGE_DIR VERSION WITH_PRELOAD(0|1)
# Checks the three .deb files: each lists what it must, nothing of another's,
# nothing from the build tree and no test program; and their control fields.
set -uo pipefail
dir=$1 version=$2 preload=${3:-0}
rel="$version-1"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
lib=./usr/lib/$multiarch
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

deb() { echo "$dir/${1}_${rel}_${arch}.deb"; }
for p in libexmem0 libexmem-dev exmem; do
  [[ -f $(deb "$p") ]] || { echo "FAIL: $(deb "$p") is missing"; exit 1; }
done
extra=$(ls "$dir"/*.deb | grep -v -e "/libexmem0_" -e "/libexmem-dev_" -e "/exmem_")
[[ -z $extra ]] || fail "unexpected packages: $extra"

listing() { dpkg-deb -c "$(deb "$1")" | awk '{print $6}'; }

# must PACKAGE PATH...: each PATH is in the package.
must() {
  local p=$1; shift
  local l; l=$(listing "$p")
  for f in "$@"; do grep -qxF -- "$f" <<<"$l" || fail "$p lacks $f"; done
}
# mustnot PACKAGE REGEX...: no path of the package matches.
mustnot() {
  local p=$1; shift
  local l; l=$(listing "$p")
  for re in "$@"; do
    local hit; hit=$(grep -E -- "$re" <<<"$l")
    [[ -z $hit ]] || fail "$p holds what it must not ($re): $hit"
  done
}

must libexmem0 "$lib/libexmem.so.0" "$lib/libexmem.so.$version"
[[ $preload == 1 ]] && must libexmem0 "$lib/libexmem-preload.so"
mustnot libexmem0 '\.a$' '/libexmem\.so$' '/include/' '/cmake/' '/pkgconfig/' '/bin/' '/share/'

must libexmem-dev ./usr/include/exmem/exmem.h ./usr/include/exmem/exmem.hpp \
  "$lib/libexmem.so" "$lib/libexmem.a" "$lib/libexmem_host.a" "$lib/pkgconfig/exmem.pc" \
  "$lib/cmake/exmem/exmemConfig.cmake" "$lib/cmake/exmem/exmemConfigVersion.cmake" \
  "$lib/cmake/exmem/exmemTargets.cmake" "$lib/cmake/exmem/exmemTargets-release.cmake" \
  ./usr/share/exmem/rust/exmem/Cargo.toml ./usr/share/exmem/rust/exmem/build.rs \
  ./usr/share/exmem/rust/exmem/src/lib.rs ./usr/share/exmem/rust/exmem/examples/vault_demo.rs
mustnot libexmem-dev '\.so\.' '/bin/' '/rust/exmem/target' 'Cargo\.lock' '/rust/exmem/tests/'

must exmem ./usr/bin/exmem ./usr/share/exmem/scenarios/default.toml
mustnot exmem '/lib/' '/include/'

# Nothing from the build tree, no test programs, no stray install rules.
for p in libexmem0 libexmem-dev exmem; do
  mustnot "$p" 'CMakeFiles' '\.o$' '_test($|\.)' 'gtest' 'test_helper' 'share_demo' '/usr/local/' '/work/' \
    '/build/' '/tests?/' '/bench' '/fuzz'
  # Every path is under /usr.
  bad=$(listing "$p" | grep -v -e '^\./$' -e '^\./usr/')
  [[ -z $bad ]] || fail "$p installs outside /usr: $bad"
done

# The exported CMake targets name no build-tree path.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$(deb libexmem-dev)" "$tmp"
if grep -rl -e "$(cd "$dir/../.." && pwd)" -e '/usr/local' "$tmp" >/dev/null; then
  fail "libexmem-dev names the build tree or /usr/local: $(grep -rl -e "$(cd "$dir/../.." && pwd)" -e /usr/local "$tmp")"
fi
grep -q '^prefix=${pcfiledir}/../../..$' "$tmp/usr/lib/$multiarch/pkgconfig/exmem.pc" ||
  fail "exmem.pc's prefix is not three levels up from $lib/pkgconfig: $(grep ^prefix= "$tmp/usr/lib/$multiarch/pkgconfig/exmem.pc")"

# Control fields.
field() { dpkg-deb -f "$(deb "$1")" "$2"; }
for p in libexmem0 libexmem-dev exmem; do
  [[ $(field "$p" Package) == "$p" ]] || fail "$p: Package is $(field "$p" Package)"
  [[ $(field "$p" Version) == "$rel" ]] || fail "$p: Version is $(field "$p" Version), not $rel"
  [[ -n $(field "$p" Maintainer) ]] || fail "$p: no Maintainer"
  desc=$(field "$p" Description)
  [[ $(wc -l <<<"$desc") -ge 3 && $desc != *"built using CMake"* ]] || fail "$p: Description is $desc"
done
[[ $(field libexmem-dev Depends) == *"libexmem0 (= $rel)"* ]] || fail "libexmem-dev: Depends is $(field libexmem-dev Depends)"
[[ $(field libexmem0 Depends) == *libc6* ]] || fail "libexmem0: Depends (shlibdeps) is $(field libexmem0 Depends)"
[[ $(field exmem Depends) == *libc6* ]] || fail "exmem: Depends (shlibdeps) is $(field exmem Depends)"
[[ $(dpkg-deb --ctrl-tarfile "$(deb libexmem0)" | tar -xO ./shlibs 2>/dev/null) == "libexmem 0 libexmem0"* ]] ||
  fail "libexmem0 has no shlibs entry for libexmem.so.0"

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "the three packages hold what they must"

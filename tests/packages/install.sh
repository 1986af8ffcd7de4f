#!/usr/bin/env bash
# install.sh PACKAGE_DIR VERSION CONSUMER_DIR WITH_PRELOAD(0|1)
# As root: installs libexmem0, libexmem-dev and exmem with apt-get, builds a C
# program (pkg-config), a C++ project (find_package(exmem)) and a Rust crate
# (path dependency on the installed crate source, Debian's cargo, offline)
# against the installed files only, runs them, runs the exmem command, then
# purges the packages and checks that their files are gone. The packages are
# purged however the test ends. Not root: exit 77 (skipped), saying why.
# (No `cmd | grep -q` under pipefail: grep exiting early fails the pipeline.)
set -uo pipefail
dir=$1 version=$2 consumers=$3 preload=${4:-0}
consumers=$(cd "$consumers" && pwd) || exit 1
if [[ $(id -u) -ne 0 ]]; then
  echo "*** packages.install NEEDS ROOT: it installs the .deb files with apt-get and purges them. SKIPPED. ***"
  exit 77
fi
export DEBIAN_FRONTEND=noninteractive
arch=$(dpkg --print-architecture)
packages=(libexmem0 libexmem-dev exmem)
debs=()
for p in "${packages[@]}"; do
  f=$(cd "$dir" && pwd)/${p}_${version}-1_${arch}.deb
  [[ -f $f ]] || { echo "FAIL: $f is missing"; exit 1; }
  debs+=("$f")
done
for p in "${packages[@]}"; do
  if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"install ok installed"* ]]; then
    echo "FAIL: $p is installed already; this test installs and purges it, so remove it first"
    exit 1
  fi
done

work=$(mktemp -d /tmp/exmem-packages.XXXXXX)
installed=0
purge() {
  apt-get remove --purge -y -qq "${packages[@]}" >"$work/purge.log" 2>&1 ||
    { echo "apt-get remove --purge failed:"; cat "$work/purge.log"; return 1; }
}
cleanup() {
  local rc=$?
  if ((installed)); then
    echo "cleaning up: purging ${packages[*]}"
    purge
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
step() { echo "== $*"; }
die() { echo "FAIL: $*"; exit 1; }

# Nothing from a build tree may leak in.
unset LD_LIBRARY_PATH LD_PRELOAD PKG_CONFIG_PATH CMAKE_PREFIX_PATH EXMEM_LIB_DIR CARGO_TARGET_DIR LIBRARY_PATH CPATH
cd "$work" || exit 1

step "apt-get install ${debs[*]}"
installed=1
apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; die "apt-get install failed"; }
dpkg-query -W "${packages[@]}" || die "dpkg does not list the packages"

# linked_to_system PROGRAM: its libexmem.so.0 is the installed one (if it has one).
linked_to_system() {
  local line; line=$(ldd "$1" | grep 'libexmem\.so')
  [[ -z $line || $line == *"=> /usr/lib/"* || $line == *"=> /lib/"* ]] || die "$1 links $line"
  echo "   $1: ${line:-libexmem linked statically}"
}

step "C program with pkg-config"
cp -r "$consumers/c" c && cd c || die "cannot copy $consumers/c"
pkg-config --exists exmem || die "pkg-config does not know exmem"
[[ $(pkg-config --modversion exmem) == "$version" ]] || die "pkg-config says exmem $(pkg-config --modversion exmem)"
cc -Wall -Werror consumer.c $(pkg-config --cflags --libs exmem) -o consumer || die "the C program does not build"
linked_to_system ./consumer
./consumer || die "the C program failed"
cd "$work" || exit 1

step "C++ program with find_package(exmem)"
cp -r "$consumers/cxx" cxx || exit 1
cmake -S cxx -B cxx/build -DCMAKE_BUILD_TYPE=Release >cxx.log 2>&1 || { cat cxx.log; die "find_package(exmem) failed"; }
cmake --build cxx/build >>cxx.log 2>&1 || { cat cxx.log; die "the C++ programs do not build"; }
for prog in cxx/build/consumer_shared cxx/build/consumer_static; do
  linked_to_system "$prog"
  "$prog" || die "$prog failed"
done
[[ $(ldd cxx/build/consumer_shared) == *libexmem.so.0* ]] || die "consumer_shared does not use libexmem.so.0"

step "Rust program with a path dependency on /usr/share/exmem/rust/exmem"
[[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || die "/usr/bin/cargo or /usr/bin/rustc is missing: install Debian's cargo and rustc (scripts/deps test)"
cp -r "$consumers/rust" rust || exit 1
(cd rust && RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$work/rust-target" /usr/bin/cargo build --offline --quiet) ||
  die "the Rust program does not build against the installed crate"
linked_to_system "$work/rust-target/debug/exmem-consumer"
"$work/rust-target/debug/exmem-consumer" || die "the Rust program failed"

step "the exmem command"
[[ $(command -v exmem) == /usr/bin/exmem ]] || die "exmem is $(command -v exmem)"
[[ $(exmem --version) == "exmem $version" ]] || die "exmem --version says $(exmem --version)"
exmem sim --help >/dev/null || die "exmem sim --help failed"

if [[ $preload == 1 ]]; then
  step "libexmem-preload.so"
  pre=$(ls /usr/lib/*/libexmem-preload.so 2>/dev/null | head -1)
  [[ -n $pre ]] || die "libexmem-preload.so is not installed"
  LD_PRELOAD=$pre /bin/true || die "LD_PRELOAD=$pre /bin/true failed"
fi

step "apt-get remove --purge"
files=()
for f in "${debs[@]}"; do
  while read -r path; do files+=("${path#.}"); done < <(dpkg-deb -c "$f" | awk '$1 !~ /^d/ {print $6}')
done
purge || die "purge failed"
installed=0
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *" installed"* ]] && die "$p is still installed"
done
left=()
for f in "${files[@]}"; do [[ -e $f || -L $f ]] && left+=("$f"); done
((${#left[@]} == 0)) || die "files left after the purge: ${left[*]}"
[[ -e /usr/include/exmem || -e /usr/share/exmem ]] && die "folders left after the purge"
echo "installed, used from C, C++ and Rust, and purged: ${#files[@]} files gone"

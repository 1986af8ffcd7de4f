#!/bin/bash
# Regenerates the README's pictures of the QEMU test (docs/qemu-direct-map-*.png):
# the guest kernel's direct map at the end of the third step's recording beside
# the model's (exmem_qemu_picture), screenshot by headless Chromium.
#
#   tests/qemu/pictures.sh [BUILD_DIR]     (default build/release)
#
# Runs the QEMU test first when its results are missing:
#   ctest --preset release -L qemu
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$repo/build/release}
results=$build/tests/qemu/qemu
picture=$build/tests/qemu/exmem_qemu_picture
[[ -x $picture ]] || { echo "no $picture (cmake --build $build --target exmem_qemu_picture)" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "needs chromium (Debian: chromium) for the screenshot" >&2; exit 1; }
kernel=$(cat "$results/kernel/package" 2>/dev/null || echo "Debian's kernel")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for run in m2048:"-m 2048" cpumax-m4096:"-cpu max -m 4096"; do
  name=${run%%:*} args=${run#*:}
  trace=$results/$name/guest.trace
  [[ -s $trace ]] || { echo "no $trace: run ctest --preset release -L qemu first" >&2; exit 1; }
  read -r w h < <("$picture" "$trace" "$kernel under QEMU $args: exmem trace record of exmem_qemu_guest 1024" "$tmp/$name.html")
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size="$w,$h" --screenshot="$tmp/$name.png" "file://$tmp/$name.html" >/dev/null 2>&1
  cp "$tmp/$name.png" "$repo/docs/qemu-direct-map-$name.png"
  echo "docs/qemu-direct-map-$name.png: ${w}x${h}, $(wc -c <"$repo/docs/qemu-direct-map-$name.png") bytes"
done

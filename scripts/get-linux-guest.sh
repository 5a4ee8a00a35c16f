#!/usr/bin/env bash
# Fetch a stock Debian Linux guest: the cloud kernel and a static busybox.
#
#   sudo scripts/get-linux-guest.sh          # into ./guest-cache
#   sudo GUEST_CACHE=/some/dir scripts/get-linux-guest.sh
#
# Packages are only downloaded (`apt-get download`), never installed on the host.
# Result (all under $GUEST_CACHE):
#   debs/            the .deb files
#   root/            both packages extracted with dpkg-deb -x
#   vmlinuz          copy of the kernel bzImage
#   busybox          copy of the static busybox binary
#   modules          symlink to root/lib/modules/<version>
#   kernel-version   the kernel release string, e.g. 6.1.0-40-cloud-amd64
# Running it again re-uses what is already there.
set -euo pipefail

die() { echo "get-linux-guest: error: $*" >&2; exit 1; }
say() { echo "get-linux-guest: $*"; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cache=${GUEST_CACHE:-$repo_root/guest-cache}

command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian/Ubuntu host"
command -v apt-cache >/dev/null || die "apt-cache not found"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"

mkdir -p "$cache/debs" "$cache/root" || die "cannot create $cache (set GUEST_CACHE to a writable directory)"
cache=$(cd "$cache" && pwd)

meta=linux-image-cloud-amd64

# Resolve the real kernel package from the metapackage's Depends.
resolve_kernel() {
  apt-cache depends "$meta" 2>/dev/null |
    awk '/^ *Depends: linux-image-[0-9]/ { print $2; exit }'
}

kpkg=$(resolve_kernel || true)
if [ -z "$kpkg" ]; then
  [ "$(id -u)" = 0 ] || die "package lists do not know $meta; run as root so that apt-get update can run"
  say "package lists do not know $meta: running apt-get update"
  apt-get update -q >&2 || die "apt-get update failed"
  kpkg=$(resolve_kernel || true)
  [ -n "$kpkg" ] || die "cannot resolve the kernel package from $meta's Depends (is the Debian main archive in sources.list?)"
fi
say "kernel package: $kpkg (from $meta)"

# Download one package unless a .deb of its candidate version is already in debs/.
fetch() {
  local pkg=$1 ver file
  ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2; exit }')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no installable candidate for package $pkg"
  # apt-get download names files <pkg>_<version with ':' as %3a>_<arch>.deb
  file=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
  if [ -n "$file" ]; then
    say "already downloaded: $(basename "$file")"
  else
    say "downloading $pkg $ver"
    (cd "$cache/debs" && apt-get download -q "$pkg=$ver") >&2 || die "apt-get download $pkg=$ver failed"
    file=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
    [ -n "$file" ] || die "apt-get download $pkg did not leave a .deb in $cache/debs"
  fi
  FETCHED=$file
}

fetch "$kpkg"; kdeb=$FETCHED
fetch busybox-static; bdeb=$FETCHED

for deb in "$kdeb" "$bdeb"; do
  stamp="$cache/root/.extracted-$(basename "$deb")"
  if [ -e "$stamp" ]; then
    say "already extracted: $(basename "$deb")"
  else
    say "extracting $(basename "$deb")"
    dpkg-deb -x "$deb" "$cache/root" || die "dpkg-deb -x $deb failed"
    touch "$stamp"
  fi
done

# The kernel release is the name of the single lib/modules dir the package ships
# (linux-image-6.1.0-40-cloud-amd64 -> 6.1.0-40-cloud-amd64).
kver=${kpkg#linux-image-}
kver=${kver%-unsigned}
[ -d "$cache/root/lib/modules/$kver" ] || die "expected $cache/root/lib/modules/$kver after extraction"
[ -f "$cache/root/boot/vmlinuz-$kver" ] || die "expected $cache/root/boot/vmlinuz-$kver after extraction"
bb="$cache/root/bin/busybox"
[ -f "$bb" ] || bb="$cache/root/usr/bin/busybox"
[ -f "$bb" ] || die "busybox binary not found in the extracted busybox-static package"

cp -f "$cache/root/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp" && mv -f "$cache/vmlinuz.tmp" "$cache/vmlinuz"
cp -f "$bb" "$cache/busybox.tmp" && chmod 755 "$cache/busybox.tmp" && mv -f "$cache/busybox.tmp" "$cache/busybox"
ln -sfn "root/lib/modules/$kver" "$cache/modules"
echo "$kver" > "$cache/kernel-version"

# Sanity checks: a bzImage has "HdrS" at offset 0x202.
magic=$(dd if="$cache/vmlinuz" bs=1 skip=514 count=4 2>/dev/null)
[ "$magic" = "HdrS" ] || die "$cache/vmlinuz is not a bzImage (no HdrS magic)"

say "done:"
say "  $cache/vmlinuz        ($(stat -c %s "$cache/vmlinuz") bytes, bzImage)"
say "  $cache/busybox        ($(stat -c %s "$cache/busybox") bytes)"
say "  $cache/modules -> root/lib/modules/$kver"
say "  $cache/kernel-version = $kver"

#!/bin/sh
# Build the cached, run-independent part of the real-Xen test host into OUT (argument 1):
#   xen          uncompressed multiboot ELF of the Xen 4.17 hypervisor (QEMU's -kernel wants it so)
#   vmlinuz      the Debian Linux kernel, used for dom0 and for the PV guest
#   dom0.cpio.gz initramfs base for dom0: xl, xenstored, xenconsoled, xenstore-utils, python3, busybox,
#                systemd, apt and the dom0 package's dependencies (python3-daemon)
#                (and /guest/root.img: the guest's root disk, ext4: python3, xenstore-utils, busybox,
#                systemd, apt and the guest package's dependencies: python3-daemon, python3-lockfile)
# Both boot busybox init; the scenarios under systemd (issue 22) exec systemd as PID 1 instead
# (dom0: its /init once the other scenarios are done; the guest: init2, booted with e2e_init=systemd).
# systemd without systemd-sysv: /sbin/init stays busybox's, and invoke-rc.d and service go to the
# SysV scripts while systemd is not running.
#   guest-boot.cpio.gz the guest's small boot initramfs: busybox, xen-blkfront and ext4 modules
#   KVER         kernel version used
# The project's own files and the scenario scripts are NOT in here: harness.py packs them (the project
# as its built .debs, which the guest and dom0 install with apt at boot, offline) into a small second
# cpio that is appended to each base (the kernel unpacks concatenated archives in order).
# Both roots come from mmdebstrap with the machine's own apt sources; nothing is installed on the host.
set -eu
OUT=$1
SRC=${XENBALLOON_E2E_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
# Xen 4.17.5, bookworm's main archive, hypervisor and tools alike: its hypervisor is built with
# CONFIG_SHADOW_PAGING=y, which a PV guest's live migration needs (log-dirty mode); the security
# update 4.17.7 is built without it.  Every Xen package of the dom0 and the guest is pinned, so
# that no library comes from the other version.
XV=${XENBALLOON_E2E_XEN_VERSION:-4.17.5+72-g01140da4e8-1}
XEN_PKGS=""
for p in xen-utils-4.17 xen-utils-common xenstore-utils libxenmisc4.17 libxencall1 libxenevtchn1 \
         libxenforeignmemory1 libxengnttab1 libxentoollog1 libxenstore4 libxendevicemodel1 \
         libxenhypfs1 libxentoolcore1; do
  XEN_PKGS="$XEN_PKGS,$p=$XV"
done
GUEST_XEN_PKGS="xenstore-utils=$XV,libxenstore4=$XV,libxentoolcore1=$XV"
KVER=${KVER:-$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-\(.*\)/\1/p' | head -1)}
[ -n "$KVER" ] || { echo "build-base: cannot find the kernel version (run apt-get update?)" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"
T0=$(date +%s)
slim='--dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/*
      --dpkgopt=path-exclude=/usr/share/locale/* --dpkgopt=path-exclude=/usr/share/info/*'
# no apt lists nor sources: the packages under test are installed from local .debs, offline;
# the dpkg path-excludes above go too, so that those packages are installed whole
tidy='rm -rf "$1"/etc/apt/sources.list* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap'
rm -rf dom0root guestroot debs ex
# shellcheck disable=SC2086
mmdebstrap --quiet --variant=essential $slim --customize-hook="$tidy" \
  --include="busybox,python3,kmod,procps,apt,systemd,python3-daemon$XEN_PKGS" \
  bookworm dom0root "$SRC"
# shellcheck disable=SC2086
mmdebstrap --quiet --variant=essential $slim --customize-hook="$tidy" \
  --include="busybox,python3,procps,kmod,apt,systemd,python3-daemon,python3-lockfile,$GUEST_XEN_PKGS" \
  bookworm guestroot "$SRC"
T1=$(date +%s)
mkdir -p debs ex
(cd debs && apt-get download "linux-image-$KVER" "xen-hypervisor-4.17-amd64=$XV")
for deb in debs/*.deb; do dpkg-deb -x "$deb" ex; done
grep -q '^CONFIG_SHADOW_PAGING=y' ex/boot/xen-4.17-amd64.config ||
  { echo "build-base: Xen $XV is built without CONFIG_SHADOW_PAGING: no PV live migration" >&2; exit 1; }
for v in "$(dpkg-query --admindir=dom0root/var/lib/dpkg -W -f='${Version}' xen-utils-4.17)" \
         "$(dpkg-query --admindir=guestroot/var/lib/dpkg -W -f='${Version}' xenstore-utils)"; do
  [ "$v" = "$XV" ] || { echo "build-base: Xen tools $v, not $XV" >&2; exit 1; }
done
echo "$XV" > XEN_VERSION
zcat ex/boot/xen-4.17-amd64.gz > xen
cp "ex/boot/vmlinuz-$KVER" vmlinuz
depmod -b "$PWD/ex" "$KVER"
mods=ex/lib/modules/$KVER
# the .ko files a module needs, in load order
needs() { modprobe -d "$PWD/ex" -S "$KVER" --show-depends "$1" | sed -n 's/^insmod \([^ ]*\).*/\1/p'; }
for root in dom0root guestroot; do
  mkdir -p "$root/lib/modules/$KVER/kernel/drivers"
  cp -a "$mods/kernel/drivers/xen" "$root/lib/modules/$KVER/kernel/drivers/"
  cp "$mods"/modules.order "$mods"/modules.builtin "$mods"/modules.builtin.modinfo "$root/lib/modules/$KVER/"
done
# dom0 serves the guest's disks from loop devices through blkback
for m in loop xen-blkback; do
  for ko in $(needs $m); do
    rel=lib/modules/${ko#*/lib/modules/}
    mkdir -p "$(dirname "dom0root/$rel")"; cp "$ko" "dom0root/$rel"
  done
done
for root in dom0root guestroot; do
  depmod -b "$root" "$KVER"
  chroot "$root" /usr/bin/busybox --install -s /usr/bin 2>/dev/null || true
done
# busybox init is the guest's init (tests/e2e/guest/init2): /sbin/init as on any Debian system,
# without which invoke-rc.d (the packages' maintainer scripts) runs no init script at all
ln -s ../bin/busybox guestroot/usr/sbin/init
# The guest's root is an ext4 disk (xvda) rather than a RAM file system, as on a real guest:
# its page cache can be reclaimed when the guest balloons down, which a ramfs root cannot.
mke2fs -q -t ext4 -L guestroot -E root_owner=0:0 -d guestroot guest-root.img 224M
mkdir -p dom0root/guest
mv guest-root.img dom0root/guest/root.img
# The guest's boot initramfs: busybox, the block and ext4 modules, nothing else (its /init is
# per run, from tests/e2e/guest/boot, with the files to copy onto the root disk).
b=guestboot; rm -rf $b; mkdir -p $b/bin $b/lib64 $b/lib/x86_64-linux-gnu $b/modules $b/newroot
cp guestroot/usr/bin/busybox $b/bin/
for a in sh mount umount insmod sleep cp mkdir switch_root ls cat echo; do ln -s busybox $b/bin/$a; done
cp -L guestroot/lib64/ld-linux-x86-64.so.2 $b/lib64/
cp -L guestroot/lib/x86_64-linux-gnu/libc.so.6 guestroot/lib/x86_64-linux-gnu/libresolv.so.2 $b/lib/x86_64-linux-gnu/
n=10
for m in xen-blkfront ext4; do
  for ko in $(needs $m); do cp "$ko" "$b/modules/$n-$(basename "$ko")"; n=$((n+1)); done
done
# dom0's root unpacked: the emulated dom0 took 33 s to gunzip its 131 MB (438 MB as cpio),
# a third of its boot; QEMU loads the cpio as it is, and the kernel only copies it
(cd dom0root && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > dom0.cpio
(cd $b && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) > guest-boot.cpio.gz
echo "$KVER" > KVER
T2=$(date +%s)
rm -rf debs ex guestboot
echo "build-base: roots $((T1-T0)) s, images $((T2-T1)) s, kernel $KVER"
du -sh dom0root guestroot dom0.cpio guest-boot.cpio.gz

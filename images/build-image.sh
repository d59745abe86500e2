#!/usr/bin/env bash
# Build dist/shadowrec.img: an MBR disk (2 GiB, sparse; first boot grows its partition to fill the disk it
# is written to) with one ext4 partition holding a Debian bookworm
# minbase system, a kernel, EXTLINUX, and the shadowrec .deb installed through apt (so its dependencies
# resolve from Debian). The serial console is ttyS0. Root (needs debootstrap, extlinux, losetup, mount).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022  # a package's and an image's files are world-readable, whatever the caller's umask (dpkg-deb insists)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
for tool in debootstrap extlinux sfdisk losetup mkfs.ext4 chroot; do
    command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (apt install debootstrap extlinux syslinux-common fdisk e2fsprogs mount)" >&2; exit 1; }
done
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || { echo "build-image: /usr/lib/syslinux/mbr/mbr.bin is missing (apt install syslinux-common)" >&2; exit 1; }
deb=${SHADOWREC_DEB:-$(bash images/build-deb.sh | tail -1)}
work=$(mktemp -d /var/tmp/shadowrec-image.XXXXXX)
mnt="$work/mnt"
rootfs="$work/rootfs"
loop=""
cleanup() {
    mountpoint -q "$mnt" && umount "$mnt" || true
    for d in proc sys dev; do mountpoint -q "$rootfs/$d" && umount -l "$rootfs/$d" || true; done
    [ -n "$loop" ] && losetup -d "$loop" || true
    rm -rf "$work"
}
trap cleanup EXIT
echo "image: debootstrap bookworm (minbase) from $mirror" >&2
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,udev,kmod,iproute2,linux-image-amd64,python3.11,libpcap0.8,adduser,netbase,procps,cloud-guest-utils,fdisk,e2fsprogs \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
# Every build installs an older copy of the package first and upgrades it to this one with apt: its
# dependencies resolve from Debian, and an upgrade must keep a locally edited config and the recordings.
echo "image: installing $deb with apt, as an upgrade" >&2
dpkg-deb -R "$deb" "$work/older"
sed -i 's/^Version: .*/Version: 0.0.0~upgradetest/' "$work/older/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -b "$work/older" "$rootfs/tmp/shadowrec-older.deb" >/dev/null
cp "$deb" "$rootfs/tmp/shadowrec.deb"
mount -t proc proc "$rootfs/proc"; mount -t sysfs sys "$rootfs/sys"; mount --bind /dev "$rootfs/dev"
chroot "$rootfs" apt-get install -y -q /tmp/shadowrec-older.deb >"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
echo "# edited by the operator" >> "$rootfs/etc/shadowrec/shadowrec.toml"
mkdir -p "$rootfs/var/lib/shadowrec/calls"
echo "a recording" > "$rootfs/var/lib/shadowrec/calls/upgrade-check.wav"
chroot "$rootfs" apt-get install -y -q /tmp/shadowrec.deb >>"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
grep -q "^# edited by the operator" "$rootfs/etc/shadowrec/shadowrec.toml" || { echo "build-image: the upgrade lost the edited config" >&2; exit 1; }
[ -f "$rootfs/var/lib/shadowrec/calls/upgrade-check.wav" ] || { echo "build-image: the upgrade lost recordings" >&2; exit 1; }
chroot "$rootfs" dpkg-query -W -f='image: upgraded to shadowrec ${Version}; config and recordings kept\n' shadowrec >&2
sed -i '/^# edited by the operator$/d' "$rootfs/etc/shadowrec/shadowrec.toml"
rm -r "$rootfs/var/lib/shadowrec/calls" "$rootfs/tmp/shadowrec.deb" "$rootfs/tmp/shadowrec-older.deb"
chroot "$rootfs" apt-get clean
echo shadowrec > "$rootfs/etc/hostname"
echo "LABEL=root / ext4 defaults,errors=remount-ro 0 1" > "$rootfs/etc/fstab"
# root's password is "shadowrec" and must be changed at the first login (serial console or VGA)
echo "root:shadowrec" | chroot "$rootfs" chpasswd
chroot "$rootfs" chage -d 0 root
chroot "$rootfs" systemctl enable systemd-networkd shadowrec.service shadowrec-firstboot.service \
    shadowrec-report.service >/dev/null 2>&1
for d in proc sys dev; do umount -l "$rootfs/$d"; done
kernel=$(cd "$rootfs/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=$(cd "$rootfs/boot" && ls initrd.img-* | sort -V | tail -1)
echo "image: disk with EXTLINUX ($kernel)" >&2
mkdir -p dist
img=dist/shadowrec.img
rm -f "$img"
truncate -s 2G "$img"
echo 'start=2048, type=83, bootable' | sfdisk -q "$img"
off=$((2048 * 512))
loop=$(losetup -f --show -o "$off" --sizelimit $(( $(stat -c %s "$img") - off )) "$img")
mkfs.ext4 -q -L root -O ^64bit,^metadata_csum "$loop"
mkdir -p "$mnt"
mount "$loop" "$mnt"
cp -a "$rootfs/." "$mnt/"
mkdir -p "$mnt/boot/extlinux"
extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1
cat > "$mnt/boot/extlinux/extlinux.conf" <<CFG
DEFAULT shadowrec
TIMEOUT 10
PROMPT 0
LABEL shadowrec
    LINUX /boot/$kernel
    INITRD /boot/$initrd
    APPEND root=LABEL=root ro console=tty0 console=ttyS0,115200 net.ifnames=0 systemd.journald.forward_to_console=1
CFG
umount "$mnt"
losetup -d "$loop"; loop=""
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
echo "$img"

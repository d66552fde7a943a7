#!/bin/bash
# Build provision's libvirt box from Debian's packages: a bookworm root filesystem (mmdebstrap), a BIOS-booting
# qcow2 disk (GRUB written in place, the filesystem filled by mke2fs -d: no loop device, no mount), packed as a
# Vagrant box. Run by `provision image build --vm` (provision/providers/vm_box.py), which caches the box by a digest
# of this file and its inputs.
#
#   vm-box.sh WORKDIR OUT.box VAGRANT_PUBLIC_KEY DISK_GIB
#
# What keeps a guest fast under QEMU's emulation (measured on a 2-core host without KVM, ../shared/test-vms):
#   - a small initramfs (MODULES=list: virtio, ahci, ext4): Debian's default makes every update-initramfs in the
#     guest take 20+ minutes;
#   - ed25519 and ecdsa host keys only (RSA 3072 takes about 90 s to generate);
#   - no NTP server until the site sets one (nothing may reach public NTP servers), e2scrub off.
set -euo pipefail
work=$1 out=$2 vagrant_key=$3 disk_gib=$4
rootfs=$work/rootfs
packages=linux-image-amd64,systemd,systemd-sysv,systemd-resolved,dbus,libpam-systemd,udev,kmod,\
openssh-server,python3,sudo,passwd,iproute2,iputils-ping,netbase,ca-certificates,e2fsprogs,procps,\
initramfs-tools,zstd,curl,gnupg
initramfs_modules="virtio_pci virtio_blk virtio_scsi virtio_net virtio_console sd_mod ahci ata_piix ext4 crc32c_generic"

rm -rf "$rootfs"
echo "vm-box: root filesystem (mmdebstrap)"
mmdebstrap --quiet --variant=minbase --include="$packages" \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
    echo MODULES=list > "$1/etc/initramfs-tools/conf.d/provision-vm.conf"
    printf "%s\n" '"$initramfs_modules"' > "$1/usr/share/initramfs-tools/modules.d/provision-vm"' \
  bookworm "$rootfs" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"

echo "vm-box: configuration"
echo vagrant-box > "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvagrant-box\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
  > "$rootfs/etc/hosts"
echo 'LABEL=rootfs / ext4 errors=remount-ro 0 1' > "$rootfs/etc/fstab"
units=$rootfs/etc/systemd/system
# DHCP on every NIC (Vagrant sets the private network's fixed address itself)
mkdir -p "$rootfs/etc/systemd/network" "$units/sockets.target.wants" "$units/network-online.target.wants" \
  "$units/systemd-networkd-wait-online.service.d" "$units/ssh.service.d"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$rootfs/etc/systemd/network/80-dhcp.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$units/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.socket "$units/sockets.target.wants/systemd-networkd.socket"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
  "$units/network-online.target.wants/systemd-networkd-wait-online.service"
# one NIC with an address is enough: a second one without DHCP must not hold the boot for minutes
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60\n' \
  > "$units/systemd-networkd-wait-online.service.d/any.conf"
ln -sf /run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
# each VM makes its own machine id and host keys on first boot
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id" "$rootfs"/etc/ssh/ssh_host_*
cat > "$units/ssh.service.d/provision-host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'for t in ed25519 ecdsa; do test -e /etc/ssh/ssh_host_$${t}_key || ssh-keygen -q -t $$t -N "" -f /etc/ssh/ssh_host_$${t}_key; done'
ExecStartPre=/usr/sbin/sshd -t
EOF
printf '%s\n' 'UseDNS no' 'HostKey /etc/ssh/ssh_host_ed25519_key' 'HostKey /etc/ssh/ssh_host_ecdsa_key' \
  > "$rootfs/etc/ssh/sshd_config.d/provision-vm.conf"
mkdir -p "$units/getty.target.wants"
# systemd-timesyncd stays (os_prep enables it) but asks no server until the site names its own: nothing here may
# reach public NTP servers (Debian's default pool, and FallbackNTP)
mkdir -p "$rootfs/etc/systemd/timesyncd.conf.d"
printf '[Time]\nNTP=\nFallbackNTP=\n' > "$rootfs/etc/systemd/timesyncd.conf.d/provision-box.conf"
for unit in e2scrub_reap.service e2scrub_all.timer; do
  ln -sf /dev/null "$units/$unit"
done
rm -f "$units/multi-user.target.wants/e2scrub_reap.service"
ln -sf /lib/systemd/system/serial-getty@.service "$units/getty.target.wants/serial-getty@ttyS0.service"
# Vagrant's way in: user vagrant, passwordless sudo, Vagrant's public key (replaced by its own on first `up`)
chroot "$rootfs" useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$rootfs/etc/sudoers.d/vagrant"
chmod 440 "$rootfs/etc/sudoers.d/vagrant"
install -d -m 700 -o 1000 -g 1000 "$rootfs/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$vagrant_key" "$rootfs/home/vagrant/.ssh/authorized_keys"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages

echo "vm-box: disk (${disk_gib} GiB, GRUB for BIOS)"
fs_uuid=$(cat /proc/sys/kernel/random/uuid)
grub=/usr/lib/grub/i386-pc
rm -rf "$rootfs/boot/grub"
mkdir -p "$rootfs/boot/grub/i386-pc"
cp "$grub"/*.mod "$grub"/*.lst "$rootfs/boot/grub/i386-pc/"
cmdline="root=UUID=$fs_uuid ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 quiet"
cat > "$rootfs/boot/grub/grub.cfg" <<EOF
set default=0
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry 'Debian GNU/Linux (bookworm)' {
  insmod part_msdos
  insmod ext2
  search --no-floppy --fs-uuid --set=root $fs_uuid
  linux /vmlinuz $cmdline
  initrd /initrd.img
}
EOF
raw=$work/disk.raw
rm -f "$raw"
truncate -s "${disk_gib}G" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw"
sectors=$(( disk_gib * 1024 * 1024 * 2 - 2048 ))
mke2fs -q -F -t ext4 -L rootfs -U "$fs_uuid" -E offset=$((2048 * 512)) -d "$rootfs" "$raw" $((sectors / 2))k
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$fs_uuid" > "$work/grub-early.cfg"
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/grub-early.cfg" -p /boot/grub \
  biosdisk part_msdos ext2 search search_fs_uuid normal configfile linux echo serial terminal
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -lt 2047 ] || { echo "vm-box: GRUB's core image does not fit before the partition" >&2; exit 1; }
dd if="$grub/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

echo "vm-box: box"
box=$work/box
rm -rf "$box"
mkdir -p "$box"
qemu-img convert -f raw -O qcow2 "$raw" "$box/box.img"
rm -f "$raw"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' "$disk_gib" > "$box/metadata.json"
printf 'Vagrant.configure("2") do |config|\nend\n' > "$box/Vagrantfile"
tar -C "$box" -cf "$out" metadata.json Vagrantfile box.img
rm -rf "$box" "$rootfs"

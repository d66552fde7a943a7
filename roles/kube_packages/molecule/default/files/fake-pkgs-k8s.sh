#!/bin/bash
# A STAND-IN for pkgs.k8s.io's per-minor repository, for the molecule test only (pkgs.k8s.io is not reachable
# from the test machine). It builds a flat, signed apt repository of the same shape — <root>/Release.key,
# InRelease, Packages — whose kubeadm, kubelet and kubectl packages hold small shell scripts instead of the real
# binaries. Several versions are built so the test can see the role pin one of them.
#
#   fake-pkgs-k8s.sh ROOT UNIT_DIR VERSION...
set -euo pipefail
root=$1 units=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$root"

for version in "$@"; do
  for pkg in kubeadm kubelet kubectl; do
    d=$work/$pkg-$version
    mkdir -p "$d/DEBIAN" "$d/usr/bin"
    printf '#!/bin/sh\n# STAND-IN for the real %s binary (molecule test of kube_packages).\necho "%s stand-in v%s"\n' \
      "$pkg" "$pkg" "$version" > "$d/usr/bin/$pkg"
    chmod 0755 "$d/usr/bin/$pkg"
    if [ "$pkg" = kubelet ]; then
      mkdir -p "$d/usr/lib/systemd/system/kubelet.service.d"
      cp "$units/kubelet.service" "$d/usr/lib/systemd/system/"
      cp "$units/10-kubeadm.conf" "$d/usr/lib/systemd/system/kubelet.service.d/"
    fi
    cat > "$d/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version-1.1
Architecture: amd64
Maintainer: provision molecule <molecule@provision.invalid>
Description: stand-in for $pkg $version (molecule test of the kube_packages role)
CONTROL
    dpkg-deb --root-owner-group -Zgzip -b "$d" "$root/${pkg}_${version}-1.1_amd64.deb" >/dev/null
  done
done

cd "$root"
: > Packages
for deb in *.deb; do
  { dpkg-deb -f "$deb"
    echo "Filename: ./$deb"
    echo "Size: $(stat -c %s "$deb")"
    echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
    echo; } >> Packages
done
cat > Release <<RELEASE
Origin: provision-molecule
Label: stand-in for pkgs.k8s.io
Date: $(date -Ru)
Architectures: amd64
SHA256:
 $(sha256sum Packages | cut -d' ' -f1) $(stat -c %s Packages) Packages
RELEASE

export GNUPGHOME=$work/gnupg
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
  --quick-gen-key 'provision molecule stand-in <molecule@provision.invalid>' ed25519 sign never
gpg --batch --quiet --yes --clearsign -o InRelease Release
gpg --batch --quiet --armor --export > Release.key

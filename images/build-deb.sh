#!/usr/bin/env bash
# Build dist/shadowrec_<version>_amd64.deb for Debian bookworm: shadowrec and its Python dependencies
# under /opt/shadowrec/lib (built with Debian's python3.11), /usr/bin/shadowrec, the systemd units,
# and /etc/shadowrec/shadowrec.toml as a conffile (kept on upgrade).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
umask 022  # a package's and an image's files are world-readable, whatever the caller's umask (dpkg-deb insists)
py=/usr/bin/python3.11
[ -x "$py" ] || { echo "build-deb: needs Debian's python3.11 (apt install python3 python3-venv python3-dev)" >&2; exit 1; }
version=$($py -c "import re;print(re.search(r'__version__ = \"(.+)\"', open('capture/__init__.py').read())[1])")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$py -m venv "$work/venv"
"$work/venv/bin/pip" -q install --upgrade pip wheel
"$work/venv/bin/pip" -q wheel --no-deps -w "$work/wheels" "$root"
pkg="$work/pkg"
mkdir -p "$pkg/opt/shadowrec/lib" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/shadowrec" \
         "$pkg/usr/lib/shadowrec" "$pkg/usr/share/doc/shadowrec" "$pkg/DEBIAN"
"$work/venv/bin/pip" -q install --no-compile --target "$pkg/opt/shadowrec/lib" "$work"/wheels/shadowrec-*.whl \
    fastapi uvicorn prometheus-client
rm -rf "$pkg/opt/shadowrec/lib/bin"
cat > "$pkg/usr/bin/shadowrec" <<'SH'
#!/bin/sh
PYTHONPATH=/opt/shadowrec/lib exec /usr/bin/python3.11 -m appliance.cli "$@"
SH
chmod 755 "$pkg/usr/bin/shadowrec"
install -m 644 images/shadowrec.service images/shadowrec-report.service images/shadowrec-firstboot.service \
    "$pkg/lib/systemd/system/"
install -m 755 images/console-report images/firstboot "$pkg/usr/lib/shadowrec/"
install -m 640 images/shadowrec.toml "$pkg/etc/shadowrec/shadowrec.toml"  # holds the API token: group shadowrec (postinst)
install -m 644 README.md "$pkg/usr/share/doc/shadowrec/README.md"
install -m 755 images/deb/postinst images/deb/prerm images/deb/postrm "$pkg/DEBIAN/"
echo /etc/shadowrec/shadowrec.toml > "$pkg/DEBIAN/conffiles"
size=$(du -sk "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CTL
Package: shadowrec
Version: $version
Architecture: amd64
Maintainer: shadowrec developers <shadowrec@localhost>
Installed-Size: $size
Depends: python3.11, libpcap0.8, iproute2, adduser, systemd
Section: net
Priority: optional
Description: passive recorder for Cisco Built-in-Bridge calls
 Records every Cisco BiB call seen on a switch SPAN port as a stereo WAV with metadata,
 keeps recording when the primary recorder dies, takes over its virtual IP (VRRPv3) and
 answers new recording calls until it returns. Local status API on 127.0.0.1:8480.
CTL
mkdir -p dist
dpkg-deb --root-owner-group -Zxz --build "$pkg" "dist/shadowrec_${version}_amd64.deb" >/dev/null
echo "dist/shadowrec_${version}_amd64.deb"

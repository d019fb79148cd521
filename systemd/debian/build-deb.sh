#!/bin/sh
# build-deb.sh DEBARCH BINSUFFIX VERSION OUTDIR
#
# Builds stanzad_VERSION_DEBARCH.deb in OUTDIR from the `make cross`
# binaries dist/stanzad-linux-BINSUFFIX and dist/stanzactl-linux-BINSUFFIX,
# with dpkg-deb (docs/decisions.md §11 says why). Run from the top of the
# repository; `make package` calls it for every architecture.
set -eu
arch=$1 bin=$2 version=$3 out=$4
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT INT TERM

install -D -m 0755 "dist/stanzad-linux-$bin" "$root/usr/bin/stanzad"
install -D -m 0755 "dist/stanzactl-linux-$bin" "$root/usr/bin/stanzactl"
install -D -m 0644 systemd/stanzad.service "$root/lib/systemd/system/stanzad.service"
install -D -m 0644 systemd/stanzad.sysusers "$root/usr/lib/sysusers.d/stanzad.conf"
install -D -m 0644 systemd/stanzad.tmpfiles "$root/usr/lib/tmpfiles.d/stanzad.conf"
# Mode 0640; postinst gives it to group stanzad (which does not exist yet
# when dpkg unpacks it).
install -D -m 0640 systemd/stanzad.toml.example "$root/etc/stanzad/stanzad.toml"

doc="$root/usr/share/doc/stanzad"
install -D -m 0644 README.md "$doc/README.md"
for f in docs/*.md firmware-notes/*.md; do
	install -D -m 0644 "$f" "$doc/$f"
done
install -D -m 0644 systemd/debian/copyright "$doc/copyright"
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'stanzad (%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- stanzad developers <stanzad@users.noreply.github.com>  %s\n' \
	"$version" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$date" | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -D -m 0644 systemd/debian/lintian-overrides "$root/usr/share/lintian/overrides/stanzad"

mkdir -p "$root/DEBIAN"
install -m 0755 systemd/debian/postinst systemd/debian/prerm systemd/debian/postrm "$root/DEBIAN/"
echo /etc/stanzad/stanzad.toml > "$root/DEBIAN/conffiles"
(cd "$root" && find usr lib -type f -exec md5sum {} + | sort -k 2) > "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: stanzad
Version: $version
Architecture: $arch
Maintainer: stanzad developers <stanzad@users.noreply.github.com>
Installed-Size: $size
Depends: adduser, passwd
Recommends: systemd
Section: net
Priority: optional
Homepage: https://github.com/stanzad/stanzad
Description: XMPP device agent for embedded Linux boards
 stanzad keeps a TLS XMPP session alive and turns sensor readings and
 GPIO, serial and file events into stanzas; operators control the board
 with ad-hoc commands from a chat client, XEP-0323/0325 or stanzactl.
 Readings wait on disk while the network is away; an optional bridge
 publishes them to MQTT.
 .
 The service starts once /etc/stanzad/password exists.
CONTROL
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/stanzad_${version}_${arch}.deb" >/dev/null
echo "$out/stanzad_${version}_${arch}.deb"

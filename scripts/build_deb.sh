#!/usr/bin/env bash
# Build the hie-edge Debian package (dh-virtualenv): dist/hie-edge_<version>-<rev>_<arch>.deb
#
# Usage: scripts/build_deb.sh            (from anywhere; needs network access to PyPI)
#
# The build runs in build/deb/, in a copy of the source tree (the files git knows plus new,
# not-ignored ones), with packaging/debian/ as debian/ and the unit, sysusers and tmpfiles
# files from packaging/ put where debhelper looks for them. The work tree is not touched
# except for build/deb/ and dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

missing=()
for tool in dpkg-buildpackage dh dh_virtualenv help2man python3.11 gcc pkg-config git; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
pkg-config --exists libsystemd 2>/dev/null || missing+=("libsystemd-dev")
/usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3.11-venv")
if [ ${#missing[@]} -gt 0 ]; then
    echo "build_deb.sh: missing ${missing[*]}" >&2
    echo "install: apt-get install --no-install-recommends dpkg-dev debhelper dh-virtualenv" \
         "help2man build-essential libsystemd-dev pkg-config python3.11-dev python3.11-venv git" >&2
    exit 69
fi

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' edge/__init__.py)
deb_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "${deb_version%-*}" != "$version" ]; then
    echo "build_deb.sh: packaging/debian/changelog is at $deb_version but edge.__version__ is" \
         "$version; add a changelog entry (dch -c packaging/debian/changelog -v $version-1)" >&2
    exit 65
fi

build=$root/build/deb
src=$build/hie-edge-$version
rm -rf "$build"
mkdir -p "$src" "$root/dist"

# The source tree as git sees it (tracked and new files; ignored ones such as .venv and
# node_modules stay out; files deleted in the work tree are skipped).
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done \
    | tar --null --files-from=- -cf - | tar -xf - -C "$src"

cp -r packaging/debian "$src/debian"
cp packaging/systemd/hie-edge.service "$src/debian/hie-edge.service"
cp packaging/sysusers.d/hie-edge.conf "$src/debian/hie-edge.sysusers"
cp packaging/tmpfiles.d/hie-edge.conf "$src/debian/hie-edge.tmpfiles"
/usr/bin/python3.11 packaging/debian/make_conffile.py config/edge.example.toml \
    "$src/debian/edge.toml"

# A plain PATH: the build must use Debian's python3.11, not a developer's pyenv shims.
(cd "$src" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b)

debs=("$build"/hie-edge_"$deb_version"_*.deb)
mv "${debs[@]}" "$root/dist/"
for deb in "${debs[@]}"; do
    echo "built dist/$(basename "$deb")"
done

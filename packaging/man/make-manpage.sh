#!/bin/sh
# Generate hie-edge(1) from the CLI's own --help texts (help2man), with a COMMANDS section
# holding every subcommand's --help and the static sections of hie-edge.h2m.
# Usage: make-manpage.sh PYTHON OUTPUT
#   PYTHON  an interpreter that can import edge (the package's venv, or the dev venv)
#   OUTPUT  the man page to write (roff, uncompressed)
# help2man dates the page from $SOURCE_DATE_EPOCH when set (reproducible builds).
set -eu
if [ $# -ne 2 ]; then
    echo "usage: make-manpage.sh PYTHON OUTPUT" >&2
    exit 64
fi
python=$1
output=$2
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v help2man >/dev/null 2>&1; then
    echo "make-manpage.sh: help2man not found; install the Debian package help2man" >&2
    exit 69
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# help2man runs a program by name; this one runs the CLI under the given interpreter. A wide
# COLUMNS keeps argparse from breaking lines inside words ("/etc/hie-" "edge"), which help2man
# would join wrongly.
cat > "$work/hie-edge" <<WRAPPER
#!/bin/sh
COLUMNS=1000 exec "$python" -m edge "\$@"
WRAPPER
chmod +x "$work/hie-edge"
"$python" "$here/subcommands.py" > "$work/commands.h2m"
cat "$here/hie-edge.h2m" >> "$work/commands.h2m"
help2man --no-info --no-discard-stderr \
    --name="HL7v2/FHIR edge daemon for a health-data consortium" \
    --section=1 --manual="hie-edge" \
    --include="$work/commands.h2m" \
    --output="$output" "$work/hie-edge"

#!/usr/bin/env bash
# Install the built package and check it as an operator would, then remove and purge it.
#
# Usage: scripts/check_deb.sh [DEB]     (default: the newest dist/hie-edge_*.deb; needs root)
#
# Checks: the package installs with apt; `hie-edge --version`; the system user; /etc/hie-edge
# ownership; keys made by postinst (0400, owned by hie-edge); `hie-edge check-config` against
# the packaged /etc/hie-edge/edge.toml, as the service user; the man page; the unit installed,
# disabled, `systemd-analyze verify` silent and `security` at most 2.0 on the installed paths;
# the daemon starts as hie-edge from the packaged venv, says READY=1 and answers `status`; an
# edited conffile and the keys survive a reinstall; remove keeps the conffile, purge removes it
# and keeps /var/lib/hie-edge. Leaves the machine as it found it (user and state it created).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "check_deb.sh: must run as root (it installs a package)" >&2
    exit 77
fi
deb=${1:-$(ls -t dist/hie-edge_*.deb 2>/dev/null | head -n1)}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "check_deb.sh: no package; run scripts/build_deb.sh first" >&2
    exit 66
fi
if dpkg-query -W -f='${Status}' hie-edge 2>/dev/null | grep -q "installed"; then
    echo "check_deb.sh: hie-edge is already installed here; remove it first" >&2
    exit 73
fi
export DEBIAN_FRONTEND=noninteractive
version=$(dpkg-deb -f "$deb" Version)
user_existed=no; getent passwd hie-edge >/dev/null && user_existed=yes
state_existed=no; [ -e /var/lib/hie-edge ] && state_existed=yes
work=$(mktemp -d)
restore_machine() {
    # Leave the machine as found: no package, and no user or state this script created.
    if dpkg-query -W -f='${Status}' hie-edge 2>/dev/null | grep -q "installed"; then
        apt-get purge -y -q hie-edge >/dev/null 2>&1 || true
    fi
    [ "$state_existed" = yes ] || rm -rf /var/lib/hie-edge /var/log/hie-edge
    if [ "$user_existed" = no ] && getent passwd hie-edge >/dev/null; then
        userdel hie-edge 2>/dev/null || true
        groupdel hie-edge 2>/dev/null || true
    fi
    rmdir /etc/hie-edge 2>/dev/null || true
}
cleanup() {
    status=$?
    [ "$status" = 0 ] || restore_machine
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

apt-get install -y -q --no-install-recommends "./$deb" >"$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; fail "apt-get install $deb"; }
ok "installed $deb"

[ "$(hie-edge --version)" = "hie-edge ${version%-*}" ] || fail "hie-edge --version: $(hie-edge --version)"
ok "hie-edge --version: $(hie-edge --version)"

[ "$(getent passwd hie-edge | cut -d: -f6,7)" = "/var/lib/hie-edge:/usr/sbin/nologin" ] \
    || fail "user hie-edge: $(getent passwd hie-edge)"
[ "$(stat -c '%U:%G %a' /etc/hie-edge)" = "root:hie-edge 750" ] \
    || fail "/etc/hie-edge is $(stat -c '%U:%G %a' /etc/hie-edge)"
dpkg-query -W -f='${Conffiles}' hie-edge | grep -q '/etc/hie-edge/edge.toml' \
    || fail "/etc/hie-edge/edge.toml is not a conffile"
for key in kek facility-ed25519.pem; do
    [ "$(stat -c '%U %a' "/var/lib/hie-edge/keys/$key")" = "hie-edge 400" ] \
        || fail "/var/lib/hie-edge/keys/$key: $(stat -c '%U %a' "/var/lib/hie-edge/keys/$key")"
done
ok "user, /etc/hie-edge 0750 root:hie-edge, conffile, keys 0400 hie-edge"

runuser -u hie-edge -- hie-edge check-config --config /etc/hie-edge/edge.toml \
    || fail "check-config on the packaged config"
ok "check-config against the packaged /etc/hie-edge/edge.toml, as hie-edge"

man -w hie-edge >/dev/null || fail "no man page"
man hie-edge 2>/dev/null | grep -q "check-config" || fail "man page lacks the commands"
ok "man hie-edge"

unit=/lib/systemd/system/hie-edge.service
[ -f "$unit" ] || fail "$unit missing"
[ "$(systemctl --root=/ is-enabled hie-edge.service || true)" = "disabled" ] \
    || fail "the unit is not disabled after install"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify printed: $out"
score=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1 \
    | sed -n 's/.*Overall exposure level for hie-edge.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "systemd-analyze security gave no score"
ok "unit installed, disabled, verify silent, security exposure $score"

# The daemon from the packaged venv, as hie-edge, with the packaged config (ports made free).
sed -e 's/^bind = "127.0.0.1:[0-9]*"/bind = "127.0.0.1:0"/' /etc/hie-edge/edge.toml \
    > "$work/edge.toml"
chmod 0755 "$work"; chmod 0644 "$work/edge.toml"
/usr/bin/python3 - "$work" <<'PY' || fail "the packaged daemon did not start, answer and stop"
import json, os, signal, socket, subprocess, sys, urllib.request
work = sys.argv[1]
path = os.path.join(work, "notify.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
os.chmod(path, 0o666)
sock.settimeout(1.0)
env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": path}
log = open(os.path.join(work, "daemon.log"), "wb")
# setpriv execs the daemon itself (runuser would stay in between and turn SIGTERM into a kill).
proc = subprocess.Popen(["setpriv", "--reuid=hie-edge", "--regid=hie-edge", "--init-groups",
                         "hie-edge", "run",
                         "--config", os.path.join(work, "edge.toml")],
                        env=env, stdout=log, stderr=log)
seen = []
try:
    for _ in range(120):  # up to ~2 minutes; ends early if the daemon exits
        if "READY=1" in seen or proc.poll() is not None:
            break
        try:
            seen += sock.recv(4096).decode().split("\n")
        except TimeoutError:
            pass
    assert "READY=1" in seen, f"no READY=1; saw {seen}"
    runtime = json.load(open("/var/lib/hie-edge/daemon.json"))
    status = json.load(urllib.request.urlopen(f"http://{runtime['admin'][0]}/status", timeout=10))
    assert status["facility"] == "general-hospital", status["facility"]
    print(f"ok: daemon READY as hie-edge, /status answers (facility {status['facility']})")
finally:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    if code != 0:
        print(open(os.path.join(work, "daemon.log")).read(), file=sys.stderr)
        sys.exit(f"daemon exited {code}")
PY

# Upgrade path: an edited conffile and the keys survive a reinstall of the package.
echo "# edited by check_deb.sh" >> /etc/hie-edge/edge.toml
kek_sum=$(sha256sum /var/lib/hie-edge/keys/kek)
dpkg -i --force-confold "$deb" >"$work/reinstall.log" 2>&1 \
    || { cat "$work/reinstall.log" >&2; fail "reinstall"; }
grep -q "^# edited by check_deb.sh" /etc/hie-edge/edge.toml || fail "reinstall lost the edit"
[ "$(sha256sum /var/lib/hie-edge/keys/kek)" = "$kek_sum" ] || fail "reinstall changed the KEK"
[ "$(stat -c '%U:%G %a' /etc/hie-edge)" = "root:hie-edge 750" ] \
    || fail "reinstall reset /etc/hie-edge to $(stat -c '%U:%G %a' /etc/hie-edge)"
ok "reinstall kept the edited conffile, the KEK and /etc/hie-edge's mode"

apt-get remove -y -q hie-edge >"$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; fail "remove"; }
[ ! -e /opt/venvs/hie-edge ] || fail "remove left /opt/venvs/hie-edge"
[ -f /etc/hie-edge/edge.toml ] || fail "remove deleted the conffile"
apt-get purge -y -q hie-edge >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "purge"; }
[ ! -e /etc/hie-edge/edge.toml ] || fail "purge left the conffile"
[ -f /var/lib/hie-edge/keys/kek ] || fail "purge deleted the keys"
! dpkg-statoverride --list /etc/hie-edge >/dev/null || fail "purge left the statoverride"
ok "remove kept the conffile; purge removed it and kept /var/lib/hie-edge"

restore_machine
echo "check_deb.sh: all checks passed"

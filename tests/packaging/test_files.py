"""sysusers.d, tmpfiles.d, the packaged conffile, the man page and the Debian packaging files,
checked with the real systemd tools against a temporary root (no running systemd, no root)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from edge import __version__
from edge.cli.main import build_parser
from edge.config import load_config

from .conftest import (
    DEBIAN,
    PACKAGING,
    REPO,
    SYSUSERS,
    TMPFILES,
    make_manpage,
    require_tool,
    run,
)


def _passwd(root: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":")
            for line in (root / "etc" / "passwd").read_text().splitlines()}


def _sysusers(root: Path) -> subprocess.CompletedProcess[str]:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    return run([require_tool("systemd-sysusers"), f"--root={root}", SYSUSERS])


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    result = _sysusers(tmp_path)
    assert result.returncode == 0, result.stderr
    user = _passwd(tmp_path)["hie-edge"]
    assert user[5:] == ["/var/lib/hie-edge", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000, "not a system user"
    groups = {line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()}
    assert "hie-edge" in groups
    # Locked: no password can ever log in.
    shadow = (tmp_path / "etc" / "shadow").read_text()
    assert re.search(r"^hie-edge:!", shadow, re.M)


def test_sysusers_is_idempotent(tmp_path: Path) -> None:
    _sysusers(tmp_path)
    first = _passwd(tmp_path)["hie-edge"]
    assert _sysusers(tmp_path).returncode == 0
    assert _passwd(tmp_path)["hie-edge"] == first


def test_tmpfiles_makes_private_directories(tmp_path: Path) -> None:
    _sysusers(tmp_path)
    uid = int(_passwd(tmp_path)["hie-edge"][2])
    result = run([require_tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create", TMPFILES])
    assert result.returncode == 0, result.stderr
    expected = {"var/lib/hie-edge": 0o700, "var/lib/hie-edge/keys": 0o700,
                "var/log/hie-edge": 0o750}
    for rel, mode in expected.items():
        st = (tmp_path / rel).stat()
        assert (st.st_mode & 0o777, st.st_uid) == (mode, uid), rel


def _conffile(tmp_path: Path) -> Path:
    out = tmp_path / "edge.toml"
    result = run([sys.executable, DEBIAN / "make_conffile.py",
                  REPO / "config" / "edge.example.toml", out])
    assert result.returncode == 0, result.stderr
    return out


def test_packaged_conffile_is_the_example_with_optional_tables_off(tmp_path: Path) -> None:
    packaged = _conffile(tmp_path).read_text().splitlines()
    example = (REPO / "config" / "edge.example.toml").read_text().splitlines()
    body = packaged[len(packaged) - len(example):]
    assert all(p == e or p == "# " + e for p, e in zip(body, example, strict=True))
    settings = load_config(tmp_path / "edge.toml")
    assert settings.storage.dir == Path("/var/lib/hie-edge")
    assert all(listener.tls is None for listener in settings.mllp)
    assert settings.ledger.evm is None
    assert not getattr(settings, "serial", ())
    assert str(settings.keys.kek_file).startswith("/var/lib/hie-edge/keys/")


def test_make_conffile_rejects_a_table_it_could_not_disable(tmp_path: Path) -> None:
    # A table header written inline with a key would survive line-wise commenting: the
    # script must notice rather than ship it active.
    example = tmp_path / "example.toml"
    example.write_text('[ledger]\nbackend = "local"\nevm = { rpc_url = "http://x" }\n')
    result = run([sys.executable, DEBIAN / "make_conffile.py", example, tmp_path / "out.toml"])
    assert result.returncode != 0
    assert "ledger.evm" in result.stderr


def test_manpage_documents_every_command(tmp_path: Path) -> None:
    page = make_manpage(tmp_path)
    rendered = run([require_tool("man"), "-l", page], timeout=60).stdout
    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    for name in sub.choices:
        assert f"hie-edge {name}" in rendered.replace("\u2010", "-"), name
    assert "78" in rendered and "EXIT STATUS" in rendered
    assert f"hie-edge {__version__}" in rendered


def test_changelog_matches_the_version() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.match(r"hie-edge \(([^)-]+)-\d+\)", first)
    assert match is not None, first
    assert match.group(1) == __version__, "add a packaging/debian/changelog entry"


def test_no_python_package_in_packaging() -> None:
    # packaging/ is data: an __init__.py would shadow the PyPI "packaging" distribution.
    assert list(PACKAGING.rglob("__init__.py")) == []


def test_maintainer_scripts_parse() -> None:
    for script in ("hie-edge.postinst", "hie-edge.postrm"):
        result = run(["sh", "-n", DEBIAN / script])
        assert result.returncode == 0, f"{script}: {result.stderr}"
    for script in ("build_deb.sh", "check_deb.sh"):
        result = run(["bash", "-n", REPO / "scripts" / script])
        assert result.returncode == 0, f"{script}: {result.stderr}"
    assert (DEBIAN / "rules").stat().st_mode & 0o111, "debian/rules must be executable"


def test_package_never_starts_or_enables_the_service() -> None:
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installsystemd --no-enable" in rules
    # Our own postinst code runs no service manager command (the operator's echo aside);
    # scripts/check_deb.sh checks the installed unit is disabled.
    for line in (DEBIAN / "hie-edge.postinst").read_text().splitlines():
        command = line.strip()
        if command.startswith(("#", "echo")):
            continue
        assert not command.startswith(("systemctl", "deb-systemd-invoke")), command


def test_operations_guide_lists_every_metric() -> None:
    # The guide's metric table must follow edge/metrics.py (design.md, example 13).
    from edge.metrics import Metrics

    guide = (REPO / "docs" / "operations.md").read_text()
    names = set()
    for family in Metrics().registry.collect():
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    assert names, "no metrics registered"
    missing = sorted(n for n in names if f"`{n}`" not in guide)
    assert missing == [], f"docs/operations.md does not document {missing}"


def test_operations_guide_lists_every_exit_status() -> None:
    from edge.cli import exits

    guide = (REPO / "docs" / "operations.md").read_text()
    codes = {v for k, v in vars(exits).items() if k.isupper() and isinstance(v, int) and v}
    missing = sorted(c for c in codes if f"\n| {c} |" not in guide)
    assert missing == [], f"docs/operations.md lacks exit statuses {missing}"

"""Fixtures for the packaging checks: the unit as systemd would see it, without a running
systemd. A tool these checks need that is missing fails the test with the Debian package to
install; nothing is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
UNIT = PACKAGING / "systemd" / "hie-edge.service"
EXAMPLES = PACKAGING / "systemd" / "examples"
SYSUSERS = PACKAGING / "sysusers.d" / "hie-edge.conf"
TMPFILES = PACKAGING / "tmpfiles.d" / "hie-edge.conf"
DEBIAN = PACKAGING / "debian"
MAKE_MANPAGE = PACKAGING / "man" / "make-manpage.sh"
# Where the Debian package puts the venv (debian/rules: DH_VIRTUALENV_INSTALL_ROOT + name).
PACKAGED_VENV = "/opt/venvs/hie-edge"

# tool -> Debian package that provides it
_PROVIDERS = {
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "systemd-tmpfiles": "systemd",
    "help2man": "help2man",
    "man": "man-db",
}


def require_tool(name: str) -> str:
    """The path of ``name``; fails (never skips) with what to install when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {_PROVIDERS.get(name, name)}",
                    pytrace=False)
    return path


def run(args: Sequence[str | Path], *, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def systemd_version() -> int:
    out = run([require_tool("systemd-analyze"), "--version"]).stdout
    return int(out.split()[1])


@dataclass(frozen=True)
class UnitUnderTest:
    """The unit copied to a temporary directory with the packaged venv path replaced by this
    checkout's venv (verify checks that every Exec*= command exists and is executable), and
    the man page its Documentation= names, generated where ``env`` lets man find it."""

    path: Path
    env: dict[str, str]

    @property
    def dropin_dir(self) -> Path:
        return self.path.parent / f"{self.path.name}.d"

    def add_dropin(self, name: str, text: str) -> None:
        self.dropin_dir.mkdir(exist_ok=True)
        (self.dropin_dir / name).write_text(text)

    def verify(self) -> str:
        """Everything ``systemd-analyze verify`` prints (empty when the unit is clean)."""
        result = run([require_tool("systemd-analyze"), "verify", self.path], env=self.env)
        return (result.stdout + result.stderr).strip()

    def security(self) -> tuple[int, float, str]:
        """``systemd-analyze security --offline=yes --threshold=20``: exit status, the
        overall exposure score, and the full report."""
        result = run([require_tool("systemd-analyze"), "security", "--offline=yes",
                      "--threshold=20", "--no-pager", self.path], env=self.env)
        report = result.stdout + result.stderr
        marker = f"Overall exposure level for {self.path.name}:"
        lines = [line for line in report.splitlines() if marker in line]
        assert lines, f"no overall score in:\n{report}"
        score = float(lines[0].split(marker)[1].split()[0])
        return result.returncode, score, report


def packaged_command(venv_bin: Path) -> Path:
    command = venv_bin / "hie-edge"
    if not command.exists():
        pytest.fail(f"{command} is missing: install the project into the venv "
                    "(pip install -e .)", pytrace=False)
    return command


def make_manpage(directory: Path) -> Path:
    """hie-edge.1 generated as the package build does, under ``directory``/man1."""
    require_tool("help2man")
    target = directory / "man1" / "hie-edge.1"
    target.parent.mkdir(parents=True, exist_ok=True)
    result = run(["sh", MAKE_MANPAGE, sys.executable, target])
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def unit(tmp_path: Path) -> UnitUnderTest:
    command = packaged_command(Path(sys.executable).parent)
    text = UNIT.read_text().replace(f"{PACKAGED_VENV}/bin/hie-edge", str(command))
    assert PACKAGED_VENV not in text, "the unit names the venv somewhere unexpected"
    path = tmp_path / "unit" / UNIT.name
    path.parent.mkdir()
    path.write_text(text)
    man_dir = tmp_path / "man"
    make_manpage(man_dir)
    env = {**os.environ, "MANPATH": str(man_dir), "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return UnitUnderTest(path, env)

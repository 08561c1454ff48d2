"""``keys split`` / ``keys recover`` through the CLI functions: M of N shares rebuild the KEK,
M-1 do not; files are private and nothing is overwritten."""

from __future__ import annotations

import argparse
import io
import itertools
import stat
from pathlib import Path

import pytest

from edge.cli.exits import CLIError
from edge.cli.keys import run_keys
from edge.crypto.keys import read_kek_file
from tests.edge.store.store_support import Env


def _split(env: Env, capsys: pytest.CaptureFixture[str], shares: int, threshold: int,
           out_dir: Path | None = None) -> list[str]:
    args = argparse.Namespace(action="split", shares=shares, threshold=threshold,
                              out_dir=out_dir)
    assert run_keys(args, env.settings) == 0
    return capsys.readouterr().out.splitlines()


def _recover(env: Env, monkeypatch: pytest.MonkeyPatch, lines: list[str], out: Path) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    return run_keys(argparse.Namespace(action="recover", out=out), env.settings)


def test_any_m_of_n_shares_recover_the_kek(env: Env, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    shares = _split(env, capsys, 5, 3)
    assert len(shares) == 5 and len(set(shares)) == 5
    kek = read_kek_file(env.kek_file)
    for i, subset in enumerate(itertools.combinations(shares, 3)):
        out = tmp_path / f"recovered-{i}" / "kek"
        assert _recover(env, monkeypatch, ["# custodians", "", *subset], out) == 0
        assert read_kek_file(out).kek_id == kek.kek_id
        assert stat.S_IMODE(out.stat().st_mode) == 0o400
    assert kek.to_text() not in capsys.readouterr().out  # the KEK itself is never printed


def test_m_minus_one_shares_do_not(env: Env, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shares = _split(env, capsys, 5, 3)
    out = tmp_path / "kek"
    with pytest.raises(CLIError) as info:
        _recover(env, monkeypatch, shares[:2], out)
    assert info.value.status == 65
    assert "needs 3 shares, got 2" in info.value.message
    assert not out.exists()


def test_a_mistyped_share_is_named(env: Env, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shares = _split(env, capsys, 3, 2)
    bad = shares[1][:-12] + ("A" if shares[1][-12] != "A" else "B") + shares[1][-11:]
    with pytest.raises(CLIError) as info:
        _recover(env, monkeypatch, [shares[0], bad], tmp_path / "kek")
    assert info.value.status == 65 and "share #2" in info.value.message


def test_recover_refuses_to_overwrite_a_kek(env: Env, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shares = _split(env, capsys, 3, 2)
    before = env.kek_file.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(shares[:2])))
    with pytest.raises(CLIError) as info:
        run_keys(argparse.Namespace(action="recover", out=None), env.settings)
    assert info.value.status == 73
    assert env.kek_file.read_bytes() == before


def test_recover_stops_reading_at_the_threshold(env: Env, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    shares = _split(env, capsys, 4, 2)
    # Anything after the second share is never read (an interactive custodian may stop).
    assert _recover(env, monkeypatch, [*shares[:2], "not a share"], tmp_path / "kek") == 0


def test_split_to_a_directory_writes_private_files_and_never_overwrites(
        env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out_dir = tmp_path / "shares"
    paths = [Path(p) for p in _split(env, capsys, 3, 2, out_dir)]
    assert len(paths) == 3
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        assert path.read_text().startswith("hiekek1:")
    with pytest.raises(CLIError) as info:
        _split(env, capsys, 3, 2, out_dir)
    assert info.value.status == 73
    lines = [p.read_text() for p in paths[1:]]
    assert _recover(env, monkeypatch, lines, tmp_path / "kek") == 0


@pytest.mark.parametrize(("shares", "threshold"), [(3, 1), (2, 3), (256, 2)])
def test_impossible_splits_are_usage_errors(env: Env, shares: int, threshold: int) -> None:
    with pytest.raises(CLIError) as info:
        run_keys(argparse.Namespace(action="split", shares=shares, threshold=threshold,
                                    out_dir=None), env.settings)
    assert info.value.status == 64

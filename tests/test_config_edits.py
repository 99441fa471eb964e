"""Editing the config safely: parallel edits keep every update, a symlinked config stays a
symlink, special files are refused, and a password is checked when it is given."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti_cli import config as cfg
from cti_cli.cli.app import _register, app

_register()


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


Run = Callable[..., Result]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "cti.toml"


@pytest.fixture
def cti(conf: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)

    def run(*args: str, input: str | None = None, config: Path = conf) -> Result:
        result = CliRunner().invoke(app, ["--config", str(config), *args], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    return run


# ---------------------------------------------------------------- 3. parallel edits


def _add_members(conf: str, worker: int, count: int) -> None:
    """In a child process: `cti teams member` `count` times, as a shell loop would."""
    for name in list(os.environ):
        if name.startswith("CTI_"):
            del os.environ[name]
    for i in range(count):
        ext = f"{worker}{i:03d}"
        result = CliRunner().invoke(
            app, ["--config", conf, "teams", "member", "T", "--login", f"u{ext}", "--ext", ext]
        )
        if result.exit_code != 0:
            raise SystemExit(f"{ext}: {result.stdout}{result.stderr}")


def test_parallel_member_loops_keep_every_member(cti: Run, conf: Path) -> None:
    assert cti("teams", "add", "T").code == 0
    count = 60
    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=_add_members, args=(str(conf), w, count)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    team = cfg.load_file(conf).team("T")
    assert team is not None and len(team.members) == 2 * count


def test_an_edit_waits_for_the_lock_then_says_who_holds_it(
    cti: Run, conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cti("teams", "add", "A").code == 0
    real = cfg.lock_for_edit
    monkeypatch.setattr(cfg, "lock_for_edit", lambda path, wait=30.0: real(path, 0.2))
    with cfg.lock_for_edit(conf):
        busy = cti("teams", "add", "B")
    assert busy.code == 1 and "another cti command" in busy.err
    assert cti("teams", "add", "B").code == 0
    failed = cti("teams", "remove", "nope")  # a failed edit releases the lock too
    assert failed.code == 2
    assert cti("teams", "add", "C").code == 0
    assert [t.name for t in cfg.load_file(conf).teams] == ["A", "B", "C"]


# ---------------------------------------------------------------- 4. a symlinked config


@pytest.mark.parametrize("chain", [False, True])
def test_a_symlinked_config_is_written_through_to_its_target(
    cti: Run, tmp_path: Path, chain: bool
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    target = store / "real.toml"
    cfg.save(target, cfg.Config.model_validate({"teams": [{"name": "Old"}]}))
    etc = tmp_path / "etc"
    etc.mkdir()
    link = etc / "cti.toml"
    if chain:
        (etc / "middle.toml").symlink_to("../store/real.toml")
        link.symlink_to("middle.toml")
    else:
        link.symlink_to(target)
    assert cti("teams", "add", "New", config=link).code == 0
    assert link.is_symlink() and (not chain or (etc / "middle.toml").is_symlink())
    assert [t.name for t in cfg.load_file(target).teams] == ["Old", "New"]
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in store.iterdir()) == [".real.toml.lock", "real.toml"]
    assert sorted(p.name for p in etc.iterdir()) == sorted(
        ["cti.toml", *(["middle.toml"] if chain else [])]
    )


# ---------------------------------------------------------------- 5. special files


@pytest.mark.timeout(30)
def test_fifo_or_device_as_config_is_refused_not_read(cti: Run, tmp_path: Path) -> None:
    fifo = tmp_path / "cti.fifo"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device")):
        for args in (("show",), ("teams", "add", "X")):
            result = cti(*args, config=path)
            assert result.code == 2, (path, args, result.out, result.err)
            assert f"{path}: cannot read: is {kind}, not a regular file" in result.err


def test_oversized_config_is_refused(cti: Run, conf: Path) -> None:
    conf.parent.mkdir(parents=True)
    conf.write_bytes(b"# padding\n" * 200_000)
    conf.chmod(0o600)
    result = cti("show")
    assert result.code == 2 and "is larger than 1 MiB" in result.err


@pytest.mark.timeout(30)
def test_fifo_as_dbaccess_or_rule_is_refused(cti: Run, conf: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "dbaccess.properties"
    os.mkfifo(fifo)
    conf.parent.mkdir(parents=True)
    conf.write_text(f'[cdr]\ndbaccess = "{fifo}"\n', "utf-8")
    conf.chmod(0o600)
    calls = cti("calls")
    assert calls.code == 2 and "is a FIFO, not a regular file" in calls.err
    rule = cti("configure", "--rule", str(fifo))
    assert rule.code == 2 and "is a FIFO, not a regular file" in rule.err


# ---------------------------------------------------------------- 6. a password is one line


@pytest.mark.parametrize("secret", ["ab\rcd", "ab\r\rcd", "ab\x00cd"])
def test_password_with_a_line_break_is_refused_when_given(
    cti: Run, conf: Path, secret: str
) -> None:
    result = cti("configure", "--host", "pbx", "--password-stdin", input=secret + "\n")
    assert result.code == 2 and not conf.exists()
    assert "server.password: must not contain line breaks (CR/LF)" in result.err
    assert "ab" not in result.err.replace("cti.toml", "")


def test_password_with_a_line_break_in_environment_or_file_is_refused(
    cti: Run, conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg.save(conf, cfg.Config())
    monkeypatch.setenv("CTI_SERVER__PASSWORD", "top\nsecret")
    shown = cti("show")
    assert shown.code == 2 and "CTI_SERVER__PASSWORD: must not contain line breaks" in shown.err
    assert "secret" not in shown.err
    monkeypatch.delenv("CTI_SERVER__PASSWORD")
    conf.write_text('[server]\npassword = "top\\nsecret"\n', "utf-8")
    shown = cti("show")
    assert shown.code == 2 and "cti.toml: server.password: must not contain line" in shown.err


def test_a_huge_argument_is_not_echoed_whole(cti: Run) -> None:
    huge = "a " + "b" * 100_000
    for args in (("configure", "--host", huge), ("teams", "remove", huge)):
        result = cti(*args)
        assert result.code == 2
        assert len(result.err) < 1000 and "characters left out" in result.err, args

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from newswatch.cli import main
from newswatch.shared.processes import free_port, port_open, spawn
from tests.support.waiting import wait_for

COMMANDS = ["broker", "fetcher", "matcher", "notifier", "up", "demo", "apply", "migrate"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"] if command else ["--help"])
    assert info.value.code == 0
    assert "usage: newswatch" in capsys.readouterr().out


def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kafka: {bootstrap: '127.0.0.1:1', partitions: zero}\n")
    assert main(["fetcher", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "kafka.partitions" in err and "valid integer" in err


def test_service_without_broker_address_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSWATCH_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("NEWSWATCH_CONFIG", raising=False)
    monkeypatch.setenv("NEWSWATCH_STATE_DIR", str(tmp_path))
    assert main(["matcher", "--http-port", "0"]) == 2
    assert "kafka.bootstrap is not set" in capsys.readouterr().err


def test_apply_refuses_an_invalid_query_before_publishing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text('topics:\n  - id: t1\n    query: "(North Korea NEAR/5 troops"\n')
    assert main(["apply", "-f", str(path), "--direct", "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "topics[0] (t1): query: ')' expected to close the group opened at position 0" in err


def test_apply_without_topics_or_broker_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSWATCH_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("NEWSWATCH_STATE_DIR", str(tmp_path))
    empty = tmp_path / "empty.yaml"
    empty.write_text("feeds: []\n")
    assert main(["apply", "-f", str(empty), "--direct"]) == 2
    assert "no `topics:` to apply" in capsys.readouterr().err
    topics = tmp_path / "topics.yaml"
    topics.write_text("topics: [{id: t1, query: Korea}]\n")
    assert main(["apply", "-f", str(topics), "--direct"]) == 2
    assert "no broker address" in capsys.readouterr().err


def test_broker_command_prints_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    out = (tmp_path / "broker.out").open("wb")
    proc = spawn(
        [sys.executable, "-m", "newswatch", "broker", "--port", str(port)],
        env=dict(os.environ),
        stdout=out,
        stderr=out,
    )
    try:
        wait_for(
            lambda: f"127.0.0.1:{port}" in (tmp_path / "broker.out").read_text(), 30, what="bootstrap printed"
        )
        assert port_open("127.0.0.1", port)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        wait_for(lambda: not port_open("127.0.0.1", port), 10, what="broker port closed")
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newswatch", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("newswatch ")


def test_migrate_checks_applies_and_refuses_a_newer_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from newswatch.fetcher.state import MIGRATIONS as FETCHER
    from newswatch.notifier.schema import MIGRATIONS as NOTIFIER

    monkeypatch.delenv("NEWSWATCH_CONFIG", raising=False)
    monkeypatch.delenv("NEWSWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("NEWSWATCH_STATE_DIR", str(tmp_path / "state"))
    assert main(["migrate", "--check"]) == 1  # nothing applied yet, and nothing created by a check
    assert not (tmp_path / "state").exists()
    assert main(["migrate"]) == 0
    assert f"notifier: version 0 → {len(NOTIFIER)}" in capsys.readouterr().out
    assert main(["migrate", "--check"]) == 0
    assert f"fetcher: version {len(FETCHER)} of {len(FETCHER)}, up to date" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "state" / "notifier.sqlite3") as db:
        db.execute("UPDATE newswatch_migrations SET version = 99 WHERE component = 'notifier'")
    assert main(["migrate"]) == 2  # a database from a newer release: never run older code on it
    assert "schema version 99 is newer than this newswatch knows" in capsys.readouterr().err
    from newswatch.shared.db import StoreError, make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'notifier.sqlite3'}")
    with pytest.raises(StoreError, match="restore the backup"):  # what a service does at start-up
        migrate(engine, "notifier", NOTIFIER)
    engine.dispose()

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from pydantic import ValidationError

from newswatch.shared.config import load_config
from newswatch.shared.durations import parse_duration
from newswatch.shared.errors import ConfigError

GOOD = """
kafka: {bootstrap: "127.0.0.1:9092"}
allow_networks: ["127.0.0.0/8"]
feeds:
  - url: "http://127.0.0.1:8080/world.xml"
    interval: 5m
topics:
  - id: nk-ukraine
    query: "North Korea Ukraine deployment"
subscriptions:
  - id: ops
    topics: [nk-ukraine]
    to: "http://127.0.0.1:9000/hook"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newswatch.yaml"
    path.write_text(text)
    return path


def test_issue_example_loads_into_frozen_objects(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.kafka.bootstrap == "127.0.0.1:9092"
    assert config.feeds[0].interval == 300.0
    assert config.allow_networks == (ipaddress.ip_network("127.0.0.0/8"),)
    assert config.subscriptions[0].topics == ("nk-ukraine",)
    with pytest.raises(ValidationError, match="frozen"):
        config.kafka.bootstrap = "x:1"


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "NEWSWATCH_KAFKA_BOOTSTRAP": "10.0.0.5:9093",
        "NEWSWATCH_KAFKA_PARTITIONS": "6",
        "NEWSWATCH_STATE_DIR": "/var/x",
    }
    config = load_config(write(tmp_path, GOOD), env=env)
    assert config.kafka.bootstrap == "10.0.0.5:9093"
    assert config.kafka.partitions == 6
    assert config.state_dir == Path("/var/x")


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert load_config(None, env={"NEWSWATCH_CONFIG": str(path)}).topics[0].id == "nk-ukraine"


def test_bad_value_names_file_key_path_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("interval: 5m", "interval: soon"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert "feeds[0].interval" in message
    assert "expected a duration such as 30s, 5m or 1h30m" in message


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"environment NEWSWATCH_KAFKA_PARTITIONS: kafka\.partitions"):
        load_config(write(tmp_path, GOOD), env={"NEWSWATCH_KAFKA_PARTITIONS": "many"})


def test_unknown_env_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="NEWSWATCH_KAFKA_BOOTSTRAPP"):
        load_config(None, env={"NEWSWATCH_KAFKA_BOOTSTRAPP": "x:1"})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("ops\n", "ops\n    colour: red\n"), "subscriptions[0].colour: Extra inputs are not permitted"),
        (("[nk-ukraine]", "[nk-ukriane]"), "refers to unknown topic(s) ['nk-ukriane']"),
        (('to: "http://127.0.0.1:9000/hook"', 'to: "ftp://x/y"'), "notification URL that Apprise supports"),
        (
            ('to: "http://127.0.0.1:9000/hook"', 'to: "mailto:nobody"'),
            "one address, such as mailto:name@example.org",
        ),
        (('to: "http://127.0.0.1:9000/hook"', 'to: "http:///x"'), "expected an http:// or https:// URL"),
        (("ops\n", "ops\n    mode: daily at 25:00\n"), "unknown mode 'daily at 25:00'"),
        (("ops\n", "ops\n    timezone: Mars/Olympus\n"), "unknown time zone 'Mars/Olympus'"),
        (("ops\n", "ops\n    quiet_hours: late\n"), "expected quiet hours as HH:MM-HH:MM"),
        (('"127.0.0.1:9092"', '"localhost"'), "kafka.bootstrap: expected host:port"),
        (('["127.0.0.0/8"]', '["loopback"]'), "allow_networks: expected a network such as 127.0.0.0/8"),
        (("id: nk-ukraine", "id: NK Ukraine"), "topics[0].id: String should match pattern"),
        (
            ('"127.0.0.1:9092"}', '"127.0.0.1:9092", fetch_max_wait_ms: 0}'),
            "kafka.fetch_max_wait_ms: Input should be greater than or equal to 1",
        ),
        (
            ('"127.0.0.1:9092"}', '"127.0.0.1:9092", linger_ms: -5}'),
            "kafka.linger_ms: Input should be greater than or equal to 0",
        ),
    ],
)
def test_invalid_documents(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace(*change)), env={})
    assert expected in str(info.value)


def test_duplicate_ids_refused(tmp_path: Path) -> None:
    text = GOOD + "  - id: ops\n    topics: [nk-ukraine]\n    to: http://127.0.0.1:1/x\n"
    with pytest.raises(ConfigError, match="subscriptions: duplicate id 'ops'"):
        load_config(write(tmp_path, text), env={})


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - url: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: invalid YAML"):
        load_config(path, env={})


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", env={})
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_require_bootstrap_says_how_to_set_it() -> None:
    config = load_config(None, env={})
    with pytest.raises(ConfigError, match="NEWSWATCH_KAFKA_BOOTSTRAP"):
        config.require_bootstrap()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800), (15, 15), ("7", 7)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m5", "-3s", "1h foo"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "newswatch.example.yaml"
    config = load_config(example, env={})
    assert config.topics[0].query == "North Korea Ukraine deployment"


def test_the_old_fetcher_stop_grace_says_where_it_moved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fetcher.stop_grace moved to the top-level `stop_grace`"):
        load_config(write(tmp_path, "fetcher:\n  stop_grace: 10s\n"), env={})


def test_stop_grace_is_bounded_and_read_from_the_environment() -> None:
    assert load_config(None, env={"NEWSWATCH_STOP_GRACE": "7s"}).stop_grace == 7.0
    with pytest.raises(ConfigError, match="stop_grace"):
        load_config(None, env={"NEWSWATCH_STOP_GRACE": "0s"})

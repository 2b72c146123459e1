"""The operator's configuration (server/config.py, ``mvault-server config``) and clean exits of ``mvault-server run``,
through the real ``mvault-server`` executable: defaults < the TOML file < ``MVAULT_*`` < flags, each bad key refused
with its name and where it came from, secrets masked, every key documented in README.md; a taken port, a data
directory that cannot be one and a broken certificate end the process with one ``error:`` line and exit 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.config import KEYS, env_name

SERVER = str(Path(sys.executable).parent / "mvault-server")
README = Path(__file__).resolve().parents[1] / "README.md"
HANG = 60  # seconds: far longer than a refused start takes; reaching it means the process hung


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}
    return {**env, **extra}


def _server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=HANG,
                              env=env if env is not None else _env())
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mvault-server {' '.join(args)} did not end within {HANG} s (it hangs): {e.stderr!r}")


def _config(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = _server("config", "--json", *args, env=env)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _refused(*args: str, env: dict[str, str] | None = None) -> str:
    r = _server(*args, env=env)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_defaults_file_environment_and_flags_in_that_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text('port = 1111\nsession_ttl = 120\nlog_format = "json"\nhost = "0.0.0.0"\n'
                                      "[quota_caps]\nversions_per_day = 500\n")
    out = _config("--data", str(data), "--port", "3333",
                  env=_env(MVAULT_PORT="2222", MVAULT_LOG_FORMAT="text", MVAULT_METRICS_LOOPBACK="false"))
    opts = out["options"]
    assert out["file"] == str(data / "config.toml") and out["file_found"] is True
    assert set(opts) == set(KEYS)
    assert opts["rate_burst"] == {"value": 200, "source": "default", "env": "MVAULT_RATE_BURST", "flag": "--burst"}
    assert opts["session_ttl"]["value"] == 120 and opts["session_ttl"]["source"] == str(data / "config.toml")
    assert opts["host"]["value"] == "0.0.0.0" and opts["host"]["source"] == str(data / "config.toml")
    assert opts["quota_caps"]["value"] == {"versions_per_day": 500}
    assert opts["log_format"] == {"value": "text", "source": "MVAULT_LOG_FORMAT", "env": "MVAULT_LOG_FORMAT",
                                  "flag": "--log-format"}
    loopback = opts["metrics_loopback"]
    assert loopback["value"] is False and loopback["source"] == "MVAULT_METRICS_LOOPBACK"
    assert opts["port"]["value"] == 3333 and opts["port"]["source"] == "--port"
    # without the flag the environment wins, without that the file
    assert _config("--data", str(data), env=_env(MVAULT_PORT="2222"))["options"]["port"]["value"] == 2222
    assert _config("--data", str(data))["options"]["port"] == {"value": 1111, "source": str(data / "config.toml"),
                                                               "env": "MVAULT_PORT", "flag": "--port"}


def test_an_explicit_file_and_no_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('public_url = "https://vault.example.org"\n')
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text("port = 1111\n")
    out = _config("--data", str(data), "--config", str(other))
    assert out["file"] == str(other)
    assert out["options"]["public_url"]["value"] == "https://vault.example.org"
    assert out["options"]["port"]["source"] == "default"  # DIR/config.toml is not read when --config names another
    bare = _config("--data", str(tmp_path / "empty"))
    assert bare["file_found"] is False and all(o["source"] == "default" for o in bare["options"].values())


def test_the_metrics_token_is_masked(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('metrics_token = "s3cret-token-value"\n')
    r = _server("config", "--config", str(conf))
    assert r.returncode == 0 and "s3cret" not in r.stdout and "metrics_token" in r.stdout
    out = _config("--config", str(conf))
    assert out["options"]["metrics_token"]["value"] == "********"
    assert "s3cret" not in json.dumps(out)
    assert _config()["options"]["metrics_token"]["value"] == ""  # unset: nothing to hide


@pytest.mark.parametrize(("text", "words"), [
    ("prot = 8443\n", ["'prot'", "unknown key"]),
    ('port = "8443"\n', ["'port'", "expected `int`"]),
    ("port = 70000\n", ["'port'", "<= 65535"]),
    ("session_ttl = 0\n", ["'session_ttl'", "> 0"]),
    ("clock_skew = 3600\n", ["'clock_skew'", "<= 600"]),  # at most half the judge's ALLOWANCE
    ('log_level = "loud"\n', ["'log_level'", "loud"]),
    ("metrics_loopback = 1\n", ["'metrics_loopback'", "expected `bool`"]),
    ("[quota_caps]\nstorage = 5\n", ["'quota_caps.storage'", "unknown quota"]),
    ("[quota_caps]\nstored_bytes = -1\n", ["'quota_caps'", ">= 0"]),
    ("port = \n", ["not valid TOML"]),
])
def test_each_bad_key_in_the_file_is_refused_by_name(tmp_path: Path, text: str, words: list[str]) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    for command in ("config", "run"):
        line = _refused(command, *(("--data", str(tmp_path / "d")) if command == "run" else ()), "--config", str(conf))
        assert str(conf) in line, line
        for word in words:
            assert word in line, line
    assert not (tmp_path / "d").exists()  # refused before anything was created


@pytest.mark.parametrize(("key", "value", "words"), [
    ("port", "eighty", ["expected `int`"]),
    ("port", "0", [">= 1"]),
    ("rate_per_second", "fast", ["expected `float`"]),
    ("log_format", "xml", ["xml"]),
    ("metrics_loopback", "perhaps", ["expected `bool`"]),
    ("quota_caps", "{ nope = 1 }", ["unknown quota"]),
    ("quota_caps", "not a table", ["TOML inline table"]),
])
def test_each_bad_environment_variable_is_refused_by_name(key: str, value: str, words: list[str]) -> None:
    line = _refused("config", env=_env(**{env_name(key): value}))
    assert f"environment variable {env_name(key)}" in line, line
    for word in words:
        assert word in line, line


def test_a_missing_explicit_file_and_bad_flags(tmp_path: Path) -> None:
    line = _refused("config", "--config", str(tmp_path / "none.toml"))
    assert "does not exist" in line and "none.toml" in line
    line = _refused("config", "--port", "0")
    assert "flag --port" in line and ">= 1" in line
    usage = _server("config", "--log-format", "xml")
    assert usage.returncode == 2 and "--log-format" in usage.stderr  # click's usage error


def test_every_key_is_documented_in_the_readme() -> None:
    text = README.read_text()
    section = text[text.index("## Configuration"):]
    missing = [key for key in KEYS if f"`{key}`" not in section or f"`{env_name(key)}`" not in section]
    assert not missing, f"README.md's Configuration section lacks {missing}"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_run_on_a_taken_port_exits_with_one_error_line(tmp_path: Path, taken_port: int) -> None:
    line = _refused("run", "--data", str(tmp_path / "d"), "--port", str(taken_port))
    assert "address already in use" in line, line


def test_run_with_a_taken_port_from_the_config_file(tmp_path: Path, taken_port: int) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "config.toml").write_text(f"port = {taken_port}\nlog_format = \"json\"\n")
    assert "address already in use" in _refused("run", "--data", str(data))


def test_run_on_a_file_as_data_directory_or_with_a_broken_certificate(tmp_path: Path, taken_port: int) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    _refused("run", "--data", str(not_a_dir), "--port", str(taken_port))
    data = tmp_path / "d"
    r = _server("init", "--data", str(data), "--json")
    assert r.returncode == 0, r.stderr
    (data / "server.crt").write_text("not a certificate\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    _refused("run", "--data", str(data), "--port", str(free))

"""The config: a DBA's mistake is named by file, key and reason, all at once, at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.config import (
    AgentConfig,
    Config,
    ErrorlogConfig,
    MetricsConfig,
    ProcessConfig,
    ServerConfig,
    default_config,
    default_state_dir,
    load_config,
    resolve_state_dir,
)
from monitor.errors import ConfigError

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parent.parent / "asewatch.example.toml"
SERVER = '[[server]]\nname = "SRV"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "asewatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    text = str(err)
    assert err.path == str(path)
    assert text.startswith(str(path))
    for noise in ("Traceback", "pydantic", "For further information", "validation error"):
        assert noise not in text
    # Nothing chained: an unhandled ConfigError prints no pydantic or tomllib traceback.
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__
    return err


def test_the_example_config_loads_and_shows_the_defaults(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    (server,) = config.servers
    assert server.name == "PROD_ASE"
    assert server.errorlog == Path("/opt/sap/ASE-16_0/install/PROD_ASE.log")
    assert server.dump_dirs == (Path("/dumps/PROD_ASE"),)
    # The example says the values outside [[server]] are the defaults: hold it to that.
    assert config.agent == AgentConfig()
    assert config.process == ProcessConfig()
    assert config.errorlog == ErrorlogConfig()
    assert config.metrics == MetricsConfig()


def test_defaults_are_the_documented_ones() -> None:
    config = default_config()
    assert config.servers == ()
    assert (config.agent.state_dir, config.agent.queue_size, config.agent.log_level) == (None, 10_000, "INFO")
    assert (config.process.poll_interval, config.process.sample_interval) == (0.5, 5.0)
    assert (config.errorlog.poll_interval, config.errorlog.quiet_period) == (1.0, 0.5)
    assert config.errorlog.use_watchdog is True
    m = config.metrics
    assert (m.enabled, m.listen, m.port, m.tls_cert_file, m.tls_key_file) == (
        True,
        "127.0.0.1",
        9399,
        None,
        None,
    )
    assert ServerConfig(name="SRV").host  # defaults to this machine's host name


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (SERVER + "[errorlog]\npoll_intervl = 2\n", "errorlog.poll_intervl", "did you mean 'poll_interval'"),
        (SERVER + "[metric]\nport = 1\n", "metric", "unknown key (did you mean 'metrics'?)"),
        (SERVER + "[metrics]\nport = 70000\n", "metrics.port", "65535 (got 70000)"),
        (SERVER + "[metrics]\nport = -1\n", "metrics.port", "greater than or equal to 0"),
        (SERVER + '[metrics]\nport = "9399"\n', "metrics.port", 'must be an integer (got "9399")'),
        (SERVER + "[metrics]\nport = 9399.0\n", "metrics.port", "must be an integer"),
        (SERVER + '[metrics]\nlisten = "local host"\n', "metrics.listen", "not an IP address or a host name"),
        (SERVER + '[errorlog]\nuse_watchdog = "yes"\n', "errorlog.use_watchdog", "true or false"),
        (SERVER + "[process]\npoll_interval = 0\n", "process.poll_interval", "greater than 0"),
        (SERVER + "[process]\nsample_interval = nan\n", "process.sample_interval", "finite number"),
        (SERVER + "[agent]\nqueue_size = 0\n", "agent.queue_size", "greater than or equal to 1"),
        (SERVER + '[agent]\nlog_level = "LOUD"\n', "agent.log_level", "'DEBUG'"),
        ("agent = 3\n" + SERVER, "agent", "must be a table"),
        (SERVER + "agent = 3\n", "server[0].agent", "unknown key"),
        ('[[server]]\nerrorlog = "/x.log"\n', "server[0].name", "required key is missing"),
        ('[[server]]\nname = "PROD ASE"\n', "server[0].name", "not an ASE server name"),
        (SERVER + "errorlog = 5\n", "server[0].errorlog", "must be a path"),
        (SERVER + 'dump_dirs = ["/d", 3]\n', "server[0].dump_dirs[1]", "must be a path"),
        (SERVER + SERVER, "server[1].name", "'SRV' is configured twice"),
        ('[server]\nname = "SRV"\n', "server", "write [[server]]"),
        ("[agent]\n", "server", "at least one"),
    ],
)
def test_each_mistake_names_the_file_the_key_and_the_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    err = _error(_write(tmp_path, text))
    assert err.key == key
    assert reason in err.reason
    assert f"{key}: " in str(err)


def test_tls_half_configured_names_the_missing_half(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked here\n")
    err = _error(_write(tmp_path, SERVER + f'[metrics]\ntls_cert_file = "{cert}"\n'))
    assert err.key == "metrics.tls_key_file"
    assert "required when tls_cert_file is set" in err.reason


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x\n")
    text = SERVER + f'[metrics]\ntls_cert_file = "{cert}"\ntls_key_file = "key.pem"\n'
    err = _error(_write(tmp_path, text))
    assert err.key == "metrics.tls_key_file"
    assert err.reason == f"no such file: {tmp_path / 'key.pem'}"
    (tmp_path / "key.pem").write_text("x\n")
    assert load_config(tmp_path / "asewatch.toml").metrics.tls_key_file == tmp_path / "key.pem"


def test_invalid_toml_gives_its_line(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, SERVER + "[metrics]\nport = \n"))
    assert err.key == ""
    assert "not valid TOML" in err.reason
    assert "line 4" in err.reason


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = '[[server]]\nname = "A B"\n[metrics]\nport = 99999\n[process]\npol_interval = 1\n'
    err = _error(_write(tmp_path, text))
    assert err.key == ""
    lines = err.reason.splitlines()
    assert lines[0] == "3 problems:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "server[0].name",
        "process.pol_interval",
        "metrics.port",
    ]


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    err = _error(tmp_path / "missing.toml")
    assert "cannot read the file: No such file or directory" in err.reason
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[[server]]\nname = "S\xe5"\n')
    assert "not UTF-8" in _error(bad).reason


def test_the_config_is_immutable(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    with pytest.raises(ValidationError, match="frozen"):
        config.metrics.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        config.agent = AgentConfig()  # type: ignore[misc]
    assert isinstance(config.servers, tuple)
    assert isinstance(config.servers[0].dump_dirs, tuple)
    assert hash(config) == hash(load_config(EXAMPLE))


def test_paths_are_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    text = '[agent]\nstate_dir = "state"\n[[server]]\nname = "SRV"\nerrorlog = "logs/SRV.log"\n'
    text += 'dump_dirs = ["~/dumps", "/abs"]\n'
    config = load_config(_write(tmp_path, text))
    assert config.agent.state_dir == tmp_path / "state"
    assert config.servers[0].errorlog == tmp_path / "logs" / "SRV.log"
    assert config.servers[0].dump_dirs == (Path.home() / "dumps", Path("/abs"))


def test_friendly_forms_are_accepted(tmp_path: Path) -> None:
    text = SERVER + '[agent]\nlog_level = "debug"\n[process]\npoll_interval = 1\n[metrics]\nlisten = "::"\n'
    config = load_config(_write(tmp_path, text))
    assert config.agent.log_level == "DEBUG"
    assert config.process.poll_interval == 1.0
    assert isinstance(config.process.poll_interval, float)
    assert config.metrics.listen == "::"


def test_a_config_without_servers_loads_when_none_are_required(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "[metrics]\nport = 0\n"), require_server=False)
    assert config.servers == ()
    assert config.metrics.port == 0


def test_configs_built_in_code_are_validated_too() -> None:
    config = Config(server=(ServerConfig(name="SIM"),))
    assert config.servers[0].name == "SIM"
    with pytest.raises(ValidationError):
        ServerConfig(name="not a name")


def test_state_dir_comes_from_the_cli_then_the_config_then_the_user_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_write(tmp_path, SERVER + '[agent]\nstate_dir = "/srv/asewatch"\n'))
    monkeypatch.chdir(tmp_path)
    assert resolve_state_dir(Path("cli"), config) == tmp_path / "cli"
    assert resolve_state_dir(None, config) == Path("/srv/asewatch")
    assert resolve_state_dir(None, default_config()) == default_state_dir()
    assert resolve_state_dir(None, None) == default_state_dir()


def test_the_per_user_state_folder() -> None:
    home = Path("/home/dba")
    assert default_state_dir(euid=0, environ={}) == Path("/var/lib/asewatch")
    assert default_state_dir(euid=1000, environ={}, home=home) == home / ".local/state/asewatch"
    xdg = {"XDG_STATE_HOME": "/xdg/state"}
    assert default_state_dir(euid=1000, environ=xdg, home=home) == Path("/xdg/state/asewatch")
    relative = {"XDG_STATE_HOME": "rel"}  # the XDG spec says to ignore a relative value
    assert default_state_dir(euid=1000, environ=relative, home=home) == home / ".local/state/asewatch"
    expected = Path("/var/lib/asewatch") if os.geteuid() == 0 else None
    if expected is not None:
        assert default_state_dir() == expected

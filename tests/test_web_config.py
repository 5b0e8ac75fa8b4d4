"""The ``[web]`` table: each mistake is one line naming the key and the fix; tokens are read from a file or
the environment, never from the configuration, and a weak or missing one is refused with the reason."""

from __future__ import annotations

import pytest

from floorwatch.edge.config import ConfigError, WebConfig, parse_config

BASE = {
    "gateway": {"site": "plant", "line": "l1", "id": "gw-1"},
    "instruments": [{"name": "caliper-1", "driver": "mitutoyo", "simulate": "normal"}],
    "characteristics": [{"name": "bore", "instrument": "caliper-1", "unit": "mm"}],
}


def problem(web: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, "web": web}, "gateway.toml")
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


@pytest.mark.parametrize(("web", "expected"), [
    ({"allowed_hosts": ["http://gw.lan"]},
     "gateway.toml: web.allowed_hosts: 'http://gw.lan': give the host name only, without scheme, port or path"),
    ({"allowed_hosts": ["gw.lan:8080"]}, "web.allowed_hosts: 'gw.lan:8080': give the host name only"),
    ({"allowed_hosts": ["gw lan"]}, "web.allowed_hosts: 'gw lan' is not a host name"),
    ({"allowed_hosts": ["-gw.lan"]}, "IP addresses need no entry"),
    ({"view_token_file": "/etc/floorwatch/v", "view_token_env": "V"},
     "gateway.toml: web.view_token_file: give view_token_file or view_token_env, not both"),
    ({"action_token_file": "/etc/floorwatch/a", "action_token_env": "A"},
     "gateway.toml: web.action_token_file: give action_token_file or action_token_env, not both"),
    ({"max_connections": 2}, "gateway.toml: web.max_connections: Input should be greater than or equal to 4"),
    ({"idle_timeout": 0}, "gateway.toml: web.idle_timeout: Input should be greater than or equal to 1"),
    ({"view_token": "inline-secret-0123456789"}, "gateway.toml: web.view_token: unknown key; did you mean"),
])
def test_web_mistakes_are_explained(web, expected):
    assert expected in problem(web)


def test_allowed_hosts_are_normalised():
    web = parse_config({**BASE, "web": {"allowed_hosts": [" Gateway-3.Plant.LAN. ", "floor"]}}).web
    assert web.allowed_hosts == ["gateway-3.plant.lan", "floor"]
    assert (web.max_connections, web.idle_timeout) == (64, 10.0)


def test_tokens_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    assert WebConfig().view_token() is None and WebConfig().action_token() is None
    path = tmp_path / "view"
    path.write_text("0123456789abcdef0123\n")
    assert WebConfig(view_token_file=path).view_token() == "0123456789abcdef0123"
    monkeypatch.setenv("FW_ACTION", "abcdef0123456789abcd")
    assert WebConfig(action_token_env="FW_ACTION").action_token() == "abcdef0123456789abcd"

    with pytest.raises(ConfigError, match=r"web\.view_token_file: cannot read .*missing.*openssl rand -hex 16"):
        WebConfig(view_token_file=tmp_path / "missing").view_token()
    with pytest.raises(ConfigError, match=r"web\.action_token_env: environment variable FW_UNSET_TOKEN is not set"):
        WebConfig(action_token_env="FW_UNSET_TOKEN").action_token()
    monkeypatch.setenv("FW_WEAK", "short")
    with pytest.raises(ConfigError, match=r"web\.view_token_env: the token must be 16 to 256 .*openssl rand"):
        WebConfig(view_token_env="FW_WEAK").view_token()
    monkeypatch.setenv("FW_SPACES", "has spaces in the middle of it")
    with pytest.raises(ConfigError, match="no spaces"):
        WebConfig(view_token_env="FW_SPACES").view_token()

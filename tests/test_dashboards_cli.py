"""``floorwatch dashboards``: generate writes what is committed; push fails clearly, never with a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from floorwatch.gateway.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_generate_writes_the_committed_files(tmp_path, capsys):
    assert main(["dashboards", "generate", "--config", str(ROOT / "gateway/example.toml"),
                 "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 4
    for path in map(Path, written):
        assert path.read_bytes() == (ROOT / "dashboards" / path.relative_to(tmp_path)).read_bytes()


def test_generate_rejects_a_bad_gateway_config(tmp_path, capsys):
    bad = tmp_path / "gateway.toml"
    bad.write_text("[gateway]\nsite = 'a'\n")
    assert main(["dashboards", "generate", "--config", str(bad), "--out", str(tmp_path)]) == 1
    assert "gateway.toml: gateway.line: required key is missing" in capsys.readouterr().err


def test_push_names_the_unreadable_token_file(tmp_path, capsys):
    assert main(["dashboards", "push", "--grafana-url", "http://127.0.0.1:1",
                 "--token-file", str(tmp_path / "none")]) == 1
    assert f"--token-file {tmp_path / 'none'}: cannot read" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert main(["dashboards", "push", "--grafana-url", "http://127.0.0.1:1",
                 "--token-file", str(tmp_path / "empty")]) == 1
    assert "the file is empty" in capsys.readouterr().err


def test_push_to_an_unreachable_grafana_says_where_it_failed(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "token").write_text("glsa_example\n")
    assert main(["dashboards", "push", "--grafana-url", f"http://127.0.0.1:{port}",
                 "--token-file", str(tmp_path / "token"), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}: checking folder 'floorwatch' failed: ConnectionError" in err

"""History belongs to one server: two servers sharing HFP_HOME keep separate databases, stats and series."""

from __future__ import annotations

from pathlib import Path

from hf_provider.observability import queries
from hf_provider.server.factory import instance_home, make_observer
from hf_provider.settings import load_settings


def test_two_servers_on_one_home_never_mix(tmp_path: Path) -> None:
    a = load_settings({"server": {"port": 8001}}, home=tmp_path)
    b = load_settings({"server": {"port": 8002, "host": "0.0.0.0"}}, home=tmp_path)
    assert instance_home(a) == tmp_path / "servers" / "127.0.0.1-8001"
    assert instance_home(b) == tmp_path / "servers" / "0.0.0.0-8002"
    obs_a, obs_b = make_observer(a), make_observer(b)
    try:
        for _ in range(3):
            obs_a.request_done("my-lm", "text-generation", None, "ok", 0.01, 1, 5)
        obs_a.flush()
        assert queries.stats(obs_a, "my-lm", None, 60)["requests"] == 3
        assert queries.stats(obs_b, "my-lm", None, 60)["requests"] == 0
        assert queries.stats(obs_b, None, None, 60)["requests"] == 0
        assert "my-lm" not in queries.series(obs_b, 60)["models"]
    finally:
        obs_a.close()
        obs_b.close()
    assert (instance_home(a) / "metrics.db").exists() and (instance_home(b) / "metrics.db").exists()


def test_a_restarted_server_on_the_same_port_keeps_its_history(tmp_path: Path) -> None:
    s = load_settings({"server": {"port": 8003}}, home=tmp_path)
    first = make_observer(s)
    first.request_done("m", "embeddings", None, "ok", 0.01, 1, 1)
    first.close()
    again = make_observer(s)
    try:
        assert queries.stats(again, "m", None, 60)["requests"] == 1
    finally:
        again.close()

"""`streamgate check-config`: broken configs are refused with the offending key path named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMGATE")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], capture_output=True,
                          text=True, env=full_env, cwd=ROOT, timeout=60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("passthrough: true\nkafka:\n  upstream:\n    bootstrap: localhost\n",
         'kafka.upstream.bootstrap: expected "host:port", got "localhost"'),
        ("passthrough: true\nkafka:\n  listn: 127.0.0.1:9092\n", "kafka.listn: unknown key"),
        ("passthrough: true\nkafka:\n  node_port_base: 80\n", "kafka.node_port_base: must be between 1024"),
        ("passthrough: true\nserver:\n  workers: many\n", "server.workers: expected int | null, got str"),
        ("passthrough: true\nkafka:\n  listen: 0.0.0.0:9092\n",
         "passthrough: only allowed when every listener is on a loopback address"),
        ("passthrough: true\nkafka:\n  upstream:\n    tls: {ca: /nonexistent/ca.pem}\n",
         "kafka.upstream.tls.ca: file not found: /nonexistent/ca.pem"),
        ("passthrough: true\nkafka: [1, 2]\n", "kafka: expected object, got array"),
        ("passthrough: true\nkafka:\n  max_api_versions: {Fetchh: 3}\n",
         "kafka.max_api_versions: unknown API 'Fetchh'"),
        ("passthrough: true\nkafka:\n  listen: 127.0.0.1:9092\n   bad-indent: 1\n", "invalid YAML (line 4, column 14): mapping values are not allowed here"),
    ],
)
def test_check_config_names_the_key_path(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = check_config(path)
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr, result.stderr


def test_check_config_accepts_the_example():
    result = check_config(ROOT / "examples" / "passthrough.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_env_substitution_and_overrides(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        "passthrough: true\n"
        "kafka:\n  upstream:\n    bootstrap: ${env:SG_TEST_BOOT}\n"
        f"    sasl: {{mechanism: PLAIN, username: gw, password: \"${{file:{secret}}}\"}}\n")
    cfg = load_config(path, environ={"SG_TEST_BOOT": "10.0.0.1:9093",
                                     "STREAMGATE__KAFKA__NODE_PORT_BASE": "21000", "STREAMGATE_WORKERS": "3"})
    assert cfg.kafka.upstream.bootstrap == "10.0.0.1:9093"
    assert cfg.kafka.upstream.sasl is not None and cfg.kafka.upstream.sasl.password == "s3cret-from-file"
    assert "s3cret" not in repr(cfg.kafka.upstream.sasl)
    assert cfg.kafka.node_port_base == 21000
    assert cfg.worker_count == 3


def test_missing_env_variable_is_named_without_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("passthrough: true\nkafka:\n  upstream:\n    bootstrap: ${env:SG_NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == "kafka.upstream.bootstrap: environment variable SG_NOT_SET_ANYWHERE is not set"


def test_bad_override_is_reported(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("passthrough: true\n")
    result = check_config(path, {"STREAMGATE_WORKERS": "lots"})
    assert result.returncode == 1
    assert 'server.workers: STREAMGATE_WORKERS must be an integer, got "lots"' in result.stderr


def test_deploy_config_is_valid(tmp_path):
    """The config shipped for Compose/Kubernetes validates once its environment is provided."""
    result = check_config(ROOT / "deploy" / "streamgate.yaml",
                          {"STREAMGATE_ADVERTISED_HOST": "gateway.example.com",
                           "STREAMGATE_OIDC_ISSUER": "https://idp.example.com/realms/main"})
    assert result.returncode == 0, result.stderr
    missing = check_config(ROOT / "deploy" / "streamgate.yaml")
    assert missing.returncode == 1
    assert "kafka.advertised_host: environment variable STREAMGATE_ADVERTISED_HOST is not set" in missing.stderr

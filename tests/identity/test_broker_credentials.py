"""The gateway authenticates to the broker with its own credentials; clients never see them; no output leaks them.

The broker side is `start_secured_tansu`: Tansu behind a SASL-checking front (scramp's SCRAM server), because
Tansu 0.6 cannot itself authenticate any SCRAM user (see gateway/devstack/secured_broker.py and docs/identity.md).
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.devstack.secured_broker import start_secured_tansu
from tests.helpers.gateway import start_gateway
from tests.identity.conftest import oidc_conf, read_audit, write_identity_config
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration

SECRET = "broker-Pa55-7d1e9f0c"  # the string every output is searched for


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_gateway_uses_its_own_broker_credentials(idp, tmp_path, mechanism, monkeypatch):
    broker = start_secured_tansu({"streamgate": (mechanism, SECRET)}, log_dir=tmp_path)
    try:
        audit = tmp_path / "audit"
        audit.mkdir()
        cfg = write_identity_config(tmp_path / "gw.yaml", idp.extra["issuer"], audit)
        cfg.write_text(cfg.read_text().replace(
            "kafka:\n  advertised_host: 127.0.0.1\n",
            "kafka:\n  advertised_host: 127.0.0.1\n  upstream:\n    bootstrap: 127.0.0.1:1\n"
            f"    sasl: {{mechanism: {mechanism}, username: streamgate, password: \"${{env:SG_BROKER_PW}}\"}}\n"))
        gw = start_gateway(broker.address, tmp_path, workers=2, config=cfg, extra_env={"SG_BROKER_PW": SECRET})
        try:
            admin = AdminClient(oidc_conf(gw, idp, "admin-svc"))
            name = unique_topic("payments.cred")
            admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
            errors: list[str] = []
            p = Producer({**oidc_conf(gw, idp, "payments-svc"), "linger.ms": 2})
            for i in range(20):
                p.produce(name, value=f"v{i}".encode(), on_delivery=lambda e, m: errors.append(str(e)) if e else None)
            assert p.flush(30) == 0 and errors == []
            md = admin.list_topics(timeout=20)
            assert name in md.topics
            assert all(b.port != broker.port for b in md.brokers.values())
        finally:
            assert gw.stop() == 0
        outputs = {"gateway log": gw.log_text(), "broker front log": broker.log_text()}
        for f in audit.iterdir():
            outputs[f.name] = f.read_text()
        outputs["audit events"] = repr(read_audit(audit))
        for where, text in outputs.items():
            assert SECRET not in text, f"the broker password leaked into the {where}"
    finally:
        broker.stop()


def test_wrong_broker_password_fails_clearly_without_leaking(idp, tmp_path):
    broker = start_secured_tansu({"streamgate": ("SCRAM-SHA-512", SECRET)}, log_dir=tmp_path)
    wrong = "wrong-" + SECRET
    try:
        audit = tmp_path / "audit"
        audit.mkdir()
        cfg = write_identity_config(tmp_path / "gw.yaml", idp.extra["issuer"], audit)
        cfg.write_text(cfg.read_text().replace(
            "kafka:\n  advertised_host: 127.0.0.1\n",
            "kafka:\n  advertised_host: 127.0.0.1\n  upstream:\n    bootstrap: 127.0.0.1:1\n"
            f"    sasl: {{mechanism: SCRAM-SHA-512, username: streamgate, password: \"{wrong}\"}}\n"))
        gw = start_gateway(broker.address, tmp_path, workers=1, config=cfg)
        try:
            admin = AdminClient({**oidc_conf(gw, idp, "admin-svc"), "socket.timeout.ms": 5000})
            with pytest.raises(Exception):  # noqa: B017 - librdkafka surfaces it as a timeout/transport error
                admin.list_topics(timeout=6)
            gw.wait_for_log(r"could not authenticate to the broker: .*SCRAM-SHA-512.*streamgate")
        finally:
            gw.stop()
        assert wrong not in gw.log_text() and SECRET not in gw.log_text()
    finally:
        broker.stop()

"""TLS towards clients (termination at the gateway, optional mTLS) and TLS towards the broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from gateway.devstack.processes import free_port, start_tansu, start_tls_terminator
from tests.helpers.certs import make_pki
from tests.helpers.gateway import start_gateway
from tests.integration.kafka_helpers import unique_topic

pytestmark = pytest.mark.integration


def _tls_config(tmp_path, pki, *, client_ca: bool) -> object:
    cfg = tmp_path / "tls.yaml"
    cfg.write_text(
        "passthrough: true\n"
        "kafka:\n"
        "  advertised_host: 127.0.0.1\n"
        f"  tls: {{cert: {pki.cert}, key: {pki.key}{', client_ca: ' + str(pki.ca) if client_ca else ''}}}\n"
        "  upstream: {bootstrap: 127.0.0.1:1}\n")
    return cfg


def test_client_tls_termination(tansu, tmp_path):
    pki = make_pki(tmp_path / "pki")
    gw = start_gateway(tansu.address, tmp_path, workers=1, config=_tls_config(tmp_path, pki, client_ca=False))
    try:
        admin = AdminClient({"bootstrap.servers": gw.bootstrap, "security.protocol": "SSL",
                             "ssl.ca.location": str(pki.ca)})
        md = admin.list_topics(timeout=20)
        assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", gw.node_port_base + 111)]
        # a plaintext client on the TLS port gets no metadata
        plain = AdminClient({"bootstrap.servers": gw.bootstrap, "socket.timeout.ms": 3000})
        with pytest.raises(Exception):  # noqa: B017 - librdkafka raises KafkaException on timeout
            plain.list_topics(timeout=4)
    finally:
        assert gw.stop() == 0


def test_client_mtls_requires_a_client_certificate(tansu, tmp_path):
    pki = make_pki(tmp_path / "pki")
    gw = start_gateway(tansu.address, tmp_path, workers=1, config=_tls_config(tmp_path, pki, client_ca=True))
    try:
        good = AdminClient({"bootstrap.servers": gw.bootstrap, "security.protocol": "SSL",
                            "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(pki.client_cert),
                            "ssl.key.location": str(pki.client_key)})
        assert good.list_topics(timeout=20).brokers
        no_cert = AdminClient({"bootstrap.servers": gw.bootstrap, "security.protocol": "SSL",
                               "ssl.ca.location": str(pki.ca)})
        with pytest.raises(Exception):  # noqa: B017
            no_cert.list_topics(timeout=4)
    finally:
        assert gw.stop() == 0


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_upstream_tls_to_a_tls_broker(tmp_path, mutual):
    """The broker is reachable only over TLS (a socat TLS server in front of Tansu, which advertises it)."""
    pki = make_pki(tmp_path / "pki")
    tls_port = free_port()
    plain = start_tansu(log_path=tmp_path / "tansu-tls.log", advertised_port=tls_port)
    broker = start_tls_terminator(plain.address, pki.cert, pki.key, port=tls_port,
                                  client_ca=pki.ca if mutual else None)
    try:
        cfg = tmp_path / "up.yaml"
        client = f", cert: {pki.client_cert}, key: {pki.client_key}" if mutual else ""
        cfg.write_text("passthrough: true\nkafka:\n  advertised_host: 127.0.0.1\n"
                       f"  upstream:\n    bootstrap: 127.0.0.1:1\n    tls: {{ca: {pki.ca}{client}}}\n")
        gw = start_gateway(broker.address, tmp_path, workers=1, config=cfg)
        try:
            admin = AdminClient({"bootstrap.servers": gw.bootstrap})
            name = unique_topic("tlsup")
            from confluent_kafka.admin import NewTopic

            admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
            md = admin.list_topics(timeout=20)
            assert name in md.topics
            assert all(b.port != broker.port for b in md.brokers.values())
        finally:
            assert gw.stop() == 0
    finally:
        broker.stop()
        plain.stop()

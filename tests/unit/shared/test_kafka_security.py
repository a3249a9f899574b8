"""Kafka TLS/SASL settings: one reading of the environment, the same options for both client libraries, and
a clear error (never a password) for settings that cannot work."""
import pytest

from shared.kafka_security import KafkaSecurityError, from_environment


def test_plaintext_adds_nothing():
    sec = from_environment({})
    assert (sec.kafka_python(), sec.librdkafka()) == ({}, {})


def test_sasl_ssl_with_scram_for_both_libraries(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    sec = from_environment({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-512",
                            "KAFKA_SASL_USERNAME": "countypool", "KAFKA_SASL_PASSWORD": "pw", "KAFKA_SSL_CAFILE": str(ca)})
    assert sec.kafka_python() == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                  "sasl_plain_username": "countypool", "sasl_plain_password": "pw", "ssl_cafile": str(ca)}
    assert sec.librdkafka() == {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
                                "sasl.username": "countypool", "sasl.password": "pw", "ssl.ca.location": str(ca)}
    assert "pw" not in repr(sec)


def test_password_from_a_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    sec = from_environment({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u",
                            "KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert sec.mechanism == "PLAIN" and sec.password == "from-file"


def test_mutual_tls(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    sec = from_environment({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": str(cert), "KAFKA_SSL_KEYFILE": str(key)})
    assert sec.librdkafka() == {"security.protocol": "ssl", "ssl.certificate.location": str(cert),
                                "ssl.key.location": str(key)}
    assert sec.kafka_python() == {"security_protocol": "SSL", "ssl_certfile": str(cert), "ssl_keyfile": str(key)}


@pytest.mark.parametrize("env, says", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": "secret-pw"}, "KAFKA_SASL_USERNAME"),
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "secret-pw"}, "use SASL_SSL or SASL_PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no file /nonexistent/ca.pem"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SSL_CAFILE": "/etc/hostname"}, "use SSL or SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
     "KAFKA_SASL_PASSWORD_FILE"),
])
def test_settings_that_cannot_work_are_refused_by_name(env, says):
    with pytest.raises(KafkaSecurityError) as caught:
        from_environment(env)
    assert says in str(caught.value)
    assert "secret-pw" not in str(caught.value)


def test_a_service_with_unusable_settings_does_not_start(monkeypatch, tmp_path):
    from sqlalchemy import MetaData

    from shared.messaging_tables import add_messaging_tables
    from shared.runtime import ServiceRuntime
    from shared.settings import load_settings

    metadata = MetaData()
    add_messaging_tables(metadata)

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")  # and no user: it would never connect
    settings = load_settings("ledger", database_url=f"sqlite:///{tmp_path / 'l.db'}", kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(KafkaSecurityError, match="KAFKA_SASL_USERNAME"):
        ServiceRuntime(settings, metadata, tmp_path)

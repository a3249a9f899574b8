"""How every Kafka client of the platform authenticates: TLS and SASL, read once from the environment.

A county's own cluster rarely takes plaintext clients. One set of variables serves every client, whichever
library it is built on (kafka-python for the consumers, the CLI and the admin calls; librdkafka for the relay,
the readiness probe and the lag monitor), so a service, its relay and the operator CLI all connect alike:

    KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    KAFKA_SASL_MECHANISM      PLAIN (default with SASL) | SCRAM-SHA-256 | SCRAM-SHA-512
    KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE, e.g. a mounted secret)
    KAFKA_SSL_CAFILE          the CA bundle that signed the brokers' certificates (default: the system's)
    KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE   a client certificate, where the cluster asks for one (mTLS)

A setting that cannot work (an unknown protocol or mechanism, SASL without a user, a file that is not there)
is a ``KafkaSecurityError`` when a client is first made, with the variable's name, never a password.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(ValueError):
    """The Kafka security settings are unusable."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __repr__(self) -> str:  # what ends up in logs and tracebacks: never the password
        return (f"KafkaSecurity(protocol={self.protocol!r}, mechanism={self.mechanism!r}, "
                f"username={self.username!r}, cafile={self.cafile!r})")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def kafka_python(self) -> dict:
        """Keyword arguments for kafka-python's KafkaConsumer, KafkaProducer and KafkaAdminClient."""
        out: dict = {"security_protocol": self.protocol}
        if self.sasl:
            out.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password)
        if self.tls:
            out.update({k: v for k, v in (("ssl_cafile", self.cafile), ("ssl_certfile", self.certfile),
                                          ("ssl_keyfile", self.keyfile)) if v})
        return out if self.protocol != "PLAINTEXT" else {}

    def librdkafka(self) -> dict:
        """Configuration entries for confluent-kafka's Producer, Consumer and AdminClient."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict = {"security.protocol": self.protocol.lower()}
        if self.sasl:
            out.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                        "sasl.password": self.password})
        if self.tls:
            out.update({k: v for k, v in (("ssl.ca.location", self.cafile), ("ssl.certificate.location", self.certfile),
                                          ("ssl.key.location", self.keyfile)) if v})
        return out


def from_environment(env: Mapping[str, str]) -> KafkaSecurity:
    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL={protocol!r}: must be one of {', '.join(PROTOCOLS)}")
    mechanism = username = password = None
    if protocol.startswith("SASL_"):
        mechanism = (get("KAFKA_SASL_MECHANISM") or "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"KAFKA_SASL_MECHANISM={mechanism!r}: must be one of {', '.join(MECHANISMS)}")
        username = get("KAFKA_SASL_USERNAME")
        password = env.get("KAFKA_SASL_PASSWORD") or None
        if password is None and (path := get("KAFKA_SASL_PASSWORD_FILE")):
            try:
                password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise KafkaSecurityError(f"KAFKA_SASL_PASSWORD_FILE {path}: {exc.strerror}") from None
        if not username or not password:
            raise KafkaSecurityError(f"{protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                                     "(or KAFKA_SASL_PASSWORD_FILE)")
    elif get("KAFKA_SASL_USERNAME"):
        # credentials set for a protocol that never sends them: a typo that would connect unauthenticated
        raise KafkaSecurityError(f"KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL is {protocol}: "
                                 "use SASL_SSL or SASL_PLAINTEXT")
    files = {}
    for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        path = get(name)
        if path and not protocol.endswith("SSL"):
            raise KafkaSecurityError(f"{name} is set but KAFKA_SECURITY_PROTOCOL is {protocol}: use SSL or SASL_SSL")
        if path and not Path(path).is_file():
            raise KafkaSecurityError(f"{name}: no file {path}")
        files[name] = path
    if bool(files["KAFKA_SSL_CERTFILE"]) != bool(files["KAFKA_SSL_KEYFILE"]):
        raise KafkaSecurityError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (a client certificate and its key)")
    return KafkaSecurity(protocol, mechanism, username, password, files["KAFKA_SSL_CAFILE"],
                         files["KAFKA_SSL_CERTFILE"], files["KAFKA_SSL_KEYFILE"])


@lru_cache(maxsize=1)
def _current(snapshot: tuple) -> KafkaSecurity:
    return from_environment(dict(snapshot))


def kafka_security() -> KafkaSecurity:
    """The process's settings (read again only when the variables change, e.g. in tests)."""
    keys = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
            "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
    return _current(tuple((k, os.environ[k]) for k in keys if k in os.environ))


def kafka_python_options() -> dict:
    return kafka_security().kafka_python()


def librdkafka_options() -> dict:
    return kafka_security().librdkafka()

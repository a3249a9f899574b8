"""Signed intake (COUNTYPOOL_INTAKE_SIGNATURES=require) on real Kafka: a department's message counts only with the
signature of an API key of the principal that owns its declared source; one signed by another department, one
altered after signing, and an unsigned one are dead-lettered with their reason, and the signed one still counts."""
from __future__ import annotations


from kafka import KafkaProducer
from sqlalchemy import MetaData

from shared.auth import SIGNATURE_HEADER, Authenticator, Principal, signature_of
from shared.consumer import IdempotentConsumer
from shared.envelope import new_envelope
from shared.messaging_tables import add_messaging_tables
from shared.runtime import ServiceRuntime
from shared.settings import load_settings
from tests.support.machinery import WidgetAdded, count_widget, drain, make_db, messaging, read_all, widget_counts

ECO = Principal("ecology", frozenset({"publish:WidgetAdded"}), frozenset({"/departments/ecology"}))
NR = Principal("natural-resources", frozenset({"publish:WidgetAdded"}), frozenset({"/departments/natural-resources"}))
AUTH = Authenticator({"eco-key": ECO, "nr-key": NR}, intake_signatures="require")


def _env(widget: str, seq: int) -> bytes:
    return new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=widget, source="/departments/ecology").to_json()


def test_only_messages_signed_for_their_source_count(db_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(db_url)
    signed, by_other, altered, unsigned = _env("w1", 1), _env("w1", 2), _env("w1", 3), _env("w1", 4)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sends = [
        (signed, [(SIGNATURE_HEADER, signature_of("eco-key", signed).encode())]),
        (by_other, [(SIGNATURE_HEADER, signature_of("nr-key", by_other).encode())]),  # another department's key
        (altered.replace(b'"seq":3', b'"seq":30'), [(SIGNATURE_HEADER, signature_of("eco-key", altered).encode())]),
        (unsigned, []),
    ]
    for value, headers in sends:
        p.send(unique_topic, key=b"w1", value=value, headers=headers)
    p.flush()
    p.close()
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap, group_id=f"g-{unique_topic}",
                           topics=[unique_topic], handler=count_widget, signed_topics={unique_topic},
                           check_signature=AUTH.check_signature)
    try:
        drain(c, lambda: c.stats.applied + c.stats.dead_lettered >= 4)
    finally:
        c.stop()
    assert widget_counts(db) == {"w1": 1}
    letters = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=3)
    reasons = sorted(dict(r.headers)["dlq-reason"].decode() for r in letters)
    assert reasons == ["signature_invalid", "signature_invalid", "signature_missing"]


def test_a_service_checks_signatures_on_its_intake_topics_only_when_told(tmp_path):
    metadata = MetaData()
    add_messaging_tables(metadata)

    def runtime(mode: str) -> ServiceRuntime:
        settings = load_settings("quota", database_url=f"sqlite:///{tmp_path / f'{mode}.db'}",
                                 kafka_bootstrap_servers="127.0.0.1:1", intake_signatures=mode)
        return ServiceRuntime(settings, metadata, tmp_path, topics=["countypool.intake.quota", "countypool.ledger.events"],
                              handler=count_widget)

    required = runtime("require").consumer
    assert required.check_signature is not None and required.signed_topics == {"countypool.intake.quota"}
    assert runtime("off").consumer.check_signature is None

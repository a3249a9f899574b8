"""shared.envelope.EnvelopeText, the envelope writer of the batch paths (ledger outcomes, quota's poll, the
assessment's county evaluation): byte for byte what ``new_envelope(...).to_json()`` gives for the same event, id
and time."""
from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timezone

import pytest

from shared.contracts.ledger import AccountSpec, TransferPosted, TransfersRequested, TransferSpec
from shared.contracts.quota import LotCreated, QuotaRetired
from shared.envelope import EnvelopeText, new_envelope, new_event_id, new_event_ids

EVENTS = [
    LotCreated(lot_id='release:R-1"/\\', county_code="320612", asset="COD", amount="1.5000", retired="0",
               source_kind="release", source_ref="91320612MA0000001X", township_code="320612100",
               dated=date(2024, 2, 1), basis="free", buyback_price_per_unit=None),
    LotCreated(lot_id="release:R-2", county_code="320612", asset="ENERGY", amount="12.345", retired="2.469",
               source_kind="release", source_ref="通环收〔2024〕1号\n", township_code="320612100",
               dated=date(2024, 2, 1), basis="paid", buyback_price_per_unit="800.00"),
    QuotaRetired(lot_id="release:R-2", county_code="320612", asset="COD", amount="0.25"),
    TransfersRequested(
        transfers=[TransferSpec(transfer_id="quota/intake/release:R-2", debit_account="external:x/COD",
                                credit_account="county:320612/pool/COD", asset="COD", amount="1.5", code="quota_release_intake",
                                linked=True, refs=["release:R-2"], metadata={"county_code": "320612"})],
        open_accounts=[AccountSpec(account_id="county:320612/pool/COD", asset="COD", address="county:320612/pool")]),
    TransferPosted(transfer_id="t\u2028", debit_account="a", credit_account="b", asset="COD", amount="1.0000",
                   code="c", pending_id="", refs=[], metadata={"k": "v"}, at=datetime(2026, 1, 2, tzinfo=timezone.utc)),
]
TIMES = [datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc), datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("now", TIMES, ids=["micros", "whole-second"])
@pytest.mark.parametrize("correlation,causation", [(None, None), ("corr-1", "cause-1"), ("corr-2", None)])
def test_the_text_is_the_models_json(event, now, correlation, causation):
    eid = new_event_ids(1)[0]
    subject = "release:R-2/ü"
    model = new_envelope(event, subject=subject, source="/countypool/quota", producer="quota", event_id=eid,
                         correlation_id=correlation, causation_id=causation, time=now)
    expected = model.model_copy(update={"recordedat": now}).to_json().decode()
    text = EnvelopeText("/countypool/quota", "quota", now)
    got = text(type(event), subject, eid, event.model_dump_json(by_alias=True), correlation=correlation,
               causation=causation)
    assert got == expected


def test_a_subject_too_long_empty_or_with_a_control_character_is_refused_as_new_envelope_refuses_it():
    text = EnvelopeText("/s", "p", TIMES[0])
    for subject in ("", "x" * 201, "t-1\tpasted", "t-1\r\n", "a\x00b", "del\x7f"):
        with pytest.raises(ValueError):
            new_envelope(EVENTS[2], subject=subject, source="/s", producer="p", time=TIMES[0])
        with pytest.raises(ValueError):
            text(QuotaRetired, subject, "id", "{}")
    assert text(QuotaRetired, "许可-1 ok", "id", "{}")  # any printable text, Chinese included, is a subject


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        EnvelopeText("/s", "p", datetime(2026, 1, 2))


def test_new_event_ids_are_distinct_time_ordered_uuids():
    before = time.time_ns() // 1_000_000
    batches = [new_event_ids(2000) for _ in range(3)] + [[new_event_id()]]
    after = time.time_ns() // 1_000_000
    ids = [i for b in batches for i in b]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in ids)
    assert all(before <= uuid.UUID(i).int >> 80 <= after for i in ids), "the first 48 bits are the time in ms"
    assert all(b == sorted(b) for b in batches), "one call's ids count up"

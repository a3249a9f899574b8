"""The hot path's hand-written serializations say exactly what the slow, obvious ones say: outcome envelopes
(OutboxRows) against new_envelope(model).to_json(), a posted entry's payload JSON against the canonical
encoder, and the journal hash over a pre-encoded payload against entry_hash."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from services.ledger.domain import entry_hash
from services.ledger.domain.journal import GENESIS, _chain_trusted, _encode, chain_drafts, posted_payload_json
from services.ledger.outcomes import OutboxRows
from shared.envelope import new_event_ids as event_ids
from shared.contracts import topics
from shared.contracts.ledger import TransferExpired, TransferPending, TransferPosted, TransferRejected, TransferVoided
from shared.envelope import new_envelope
from shared.logs import correlation_id

NOW = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
# quotes, backslashes, control characters, non-ASCII, line separators: what an escaper can get wrong
TRICKY = ["plain", 'a"b', "back\\slash", "new\nline\ttab", "\x00\x1f\x7f", "县城 Ω é", "\u2028\u2029", "😀"]
text = st.lists(st.sampled_from(TRICKY + list("ab.:/- \x01")), max_size=4).map("".join) | st.text(max_size=8)


def _fields(tid: str, code: str, refs: list[str], meta: dict[str, str]) -> dict:
    return {"transfer_id": tid, "debit_account": f"county:320612/{code}/COD", "credit_account": "external:x/COD",
            "asset": "COD", "amount": "12.5000", "code": code, "pending_id": "", "refs": refs, "metadata": meta,
            "at": NOW}


def _expected(event, subject: str, event_id: str, causation: str | None, correlation: str | None) -> bytes:
    return new_envelope(event, subject=subject, source="/countypool/ledger", producer="ledger", event_id=event_id,
                        causation_id=causation, correlation_id=correlation, time=NOW).model_copy(
        update={"recordedat": NOW}).to_json()


# a transfer id is a subject (the Kafka key): the API's Identifier and the envelope refuse control characters in it
subject_text = text.filter(lambda s: s and not any(ord(c) < 32 or ord(c) == 127 for c in s))


@given(tid=subject_text, code=text, refs=st.lists(text, max_size=3),
       meta=st.dictionaries(text, text, max_size=3), causation=st.none() | text.filter(bool),
       correlation=st.none() | text.filter(bool))
def test_outcome_envelopes_are_the_bytes_new_envelope_gives(tid, code, refs, meta, causation, correlation):
    rows = OutboxRows("/countypool/ledger", "ledger", NOW, causation, correlation=correlation)
    eid = event_ids(1)[0]
    fields = _fields(tid, code, refs, meta)
    for cls, extra, subject in ((TransferPosted, {}, tid), (TransferVoided, {"pending_id": "p-1"}, "p-1"),
                                (TransferExpired, {"pending_id": tid}, tid),
                                (TransferPending, {"expires_at": NOW + timedelta(seconds=90)}, tid),
                                (TransferPending, {"expires_at": None}, tid),
                                (TransferRejected, {"reason": "exceeds_credits"}, tid)):
        event = cls(**{**fields, **extra})
        rows.rows.clear()
        rows.add(cls, event.model_dump(mode="json"), subject, eid)
        ((event_id, event_type, topic, key, envelope, created_at),) = rows.rows  # Outbox.ROW_COLUMNS
        assert envelope.encode() == _expected(event, subject, eid, causation, correlation)
        assert (event_id, event_type, key, topic, created_at) == (eid, cls.type_name(), subject, topics.LEDGER_EVENTS, NOW)


def test_events_take_the_callers_correlation_id_or_their_own():
    token = correlation_id.set("request-7")
    try:
        rows = OutboxRows("/countypool/ledger", "ledger", NOW, None)
    finally:
        correlation_id.reset(token)
    own = OutboxRows("/countypool/ledger", "ledger", NOW, None)
    data = TransferPosted(**_fields("t", "c", [], {})).model_dump(mode="json")
    rows.add(TransferPosted, data, "t", "e-1")
    rows.add(TransferPosted, data, "t", "e-2", correlation="request-8")  # a request merged by group commit
    own.add(TransferPosted, data, "t", "e-3")
    docs = [json.loads(r[4]) for r in rows.rows + own.rows]  # the envelope (Outbox.ROW_COLUMNS)
    assert [d["correlationid"] for d in docs] == ["request-7", "request-8", "e-3"]
    assert all("causationid" not in d for d in docs), "no causation: the attribute is left out, as exclude_none does"


@given(debit=text, credit=text, asset=text, code=text, amount=st.integers(min_value=1, max_value=2**63 - 1))
def test_posted_payload_json_is_the_canonical_encoding(debit, credit, asset, code, amount):
    payload = {"debit_account_id": debit, "credit_account_id": credit, "asset": asset, "amount": amount, "code": code,
               "delta.debits_pending": 0, "delta.debits_posted": amount, "delta.credits_pending": 0,
               "delta.credits_posted": amount}
    assert posted_payload_json(debit, credit, asset, amount, code) == _encode(payload) == \
        json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@given(tid=text, payload=st.dictionaries(text, text | st.integers(), max_size=6), seq=st.integers(1, 2**40))
def test_hash_over_the_encoded_payload_is_entry_hash(tid, payload, seq):
    at = NOW.isoformat(timespec="microseconds")
    e = _chain_trusted(GENESIS, seq, "transfer_posted", tid, payload, at)
    assert e.hash == entry_hash(seq, "transfer_posted", tid, payload, at, GENESIS)
    assert e.payload_json == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    changed = dataclasses.replace(e, payload={**payload, "x": 1})
    assert changed.payload_json == "", "a replaced payload never keeps the old one's JSON"


def test_a_draft_with_its_json_chains_as_one_without():
    payload = {"debit_account_id": "a", "credit_account_id": "b", "asset": "COD", "amount": 5, "code": "c",
               "delta.debits_pending": 0, "delta.debits_posted": 5, "delta.credits_pending": 0, "delta.credits_posted": 5}
    at = NOW.isoformat(timespec="microseconds")
    plain = chain_drafts(GENESIS, 7, [("transfer_posted", "t1", payload)] * 2, at)
    encoded = chain_drafts(GENESIS, 7, [("transfer_posted", "t1", payload, posted_payload_json("a", "b", "COD", 5, "c"))] * 2, at)
    assert [(e.seq, e.hash, e.prev_hash) for e in plain] == [(e.seq, e.hash, e.prev_hash) for e in encoded]


def test_the_hot_paths_payloads_are_the_models_dumps_field_for_field():
    """LedgerApp builds TransferPosted/Pending/Voided/Expired payloads as dicts: the same keys, values and
    order as the contract models dump (so the envelope's bytes are the model's)."""
    from services.ledger.domain import Transfer, TransferStatus
    from services.ledger.handlers import LedgerApp
    from services.ledger.outcomes import TimeText
    from shared.outbox import Outbox
    from services.ledger.storage.tables import messaging

    app = LedgerApp(Outbox(messaging["outbox"], "ledger"))
    times = TimeText()
    t = Transfer("p-1", "county:320612/pool/COD", 'ent"1/COD', "COD", 125_000, "quota.reserve", True, 90, "", "",
                 False, ("REL-1", "县"), {"lot": "a\nb"}, NOW, TransferStatus.pending, NOW + timedelta(seconds=90))
    pending = app._outcome_data(t, "", times(t.timestamp))
    pending["expires_at"] = times(t.expires_at)
    model = TransferPending(transfer_id=t.id, debit_account=t.debit_account_id, credit_account=t.credit_account_id,
                            asset="COD", amount="12.5000", code=t.code, refs=list(t.refs), metadata=dict(t.metadata),
                            at=NOW, expires_at=t.expires_at)
    assert list(pending.items()) == list(model.model_dump(mode="json").items())
    posted = app._outcome_data(t._replace(pending=False, status=TransferStatus.posted), "p-0", times(NOW))
    model = TransferPosted(transfer_id=t.id, debit_account=t.debit_account_id, credit_account=t.credit_account_id,
                           asset="COD", amount="12.5000", code=t.code, pending_id="p-0", refs=list(t.refs),
                           metadata=dict(t.metadata), at=NOW)
    assert list(posted.items()) == list(model.model_dump(mode="json").items())

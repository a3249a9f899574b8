"""The tamper-evident journal: each entry hashes its own canonical JSON together with the previous hash.

Canonical JSON = ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded as
UTF-8, where obj = {seq, kind, transfer_id, payload, recorded_at, prev_hash}; payload values are str or int
only (no floats, no bools, no nesting), so any language can recompute the hash.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from dataclasses import dataclass, field
from hashlib import sha256
from json.encoder import encode_basestring as _quote  # a JSON string as json quotes it (non-ASCII kept)
from typing import Iterable, Mapping

from .view import GENESIS_HASH

GENESIS = GENESIS_HASH

KINDS = frozenset(
    {"transfer_posted", "transfer_pending", "pending_posted", "pending_voided", "pending_expired", "account_created"}
)

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

try:  # the same encoding through json's C encoder built once (json.dumps rebuilds it per call): the
    # journal hash is on the hot path of every transfer
    from json.encoder import c_make_encoder

    if c_make_encoder is not None:
        _c_encode = c_make_encoder(None, None, _quote, None, ":", ",", True, False, False)
        _encode = lambda doc: "".join(_c_encode(doc, 0))  # noqa: E731
except ImportError:  # pragma: no cover - pure-Python json
    pass


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    kind: str
    transfer_id: str  # "" for account_created (the account id is in the payload)
    payload: dict  # str -> str | int, canonical
    recorded_at: str  # ISO-8601 UTC, microseconds
    prev_hash: str
    hash: str
    # the payload's canonical JSON when this entry was chained here (storage writes it without encoding the
    # payload again); not an init field, so dataclasses.replace(entry, payload=...) never keeps a stale one
    payload_json: str = field(default="", init=False, compare=False, repr=False)


def entry_hash(seq: int, kind: str, transfer_id: str, payload: Mapping, recorded_at: str, prev_hash: str) -> str:
    doc = {
        "seq": seq,
        "kind": kind,
        "transfer_id": transfer_id,
        "payload": payload,
        "recorded_at": recorded_at,
        "prev_hash": prev_hash,
    }
    return sha256(_encode(doc).encode("utf-8")).hexdigest()


def canonical_json(payload: Mapping) -> str:
    """The text a payload is stored and hashed as: sorted keys, no spaces, non-ASCII kept. A stored text other than
    this one (spaces, an escaped letter, a key given twice) reads back as the same payload but is not what was hashed:
    another reader may see another figure in it."""
    return _encode(payload)


def canonical_problem(payload: object) -> str | None:
    """Why a payload is not canonical (None when it is)."""
    if not isinstance(payload, dict):
        return "payload must be a dict"
    for k, v in payload.items():
        if not isinstance(k, str):
            return f"payload key {k!r} is not a str"
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            return f"payload value for {k!r} must be str or int, got {type(v).__name__}"
    return None


def chain(
    prev_hash: str, seq: int, kind: str, transfer_id: str, payload: dict, recorded_at: str
) -> JournalEntry:
    """A new entry linked to ``prev_hash``; validates everything that goes into the hash."""
    if kind not in KINDS:
        raise ValueError(f"unknown journal kind {kind!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError("seq must be a positive int")
    if not isinstance(prev_hash, str) or len(prev_hash) != 64:
        raise ValueError("prev_hash must be 64 hex characters")
    if not isinstance(transfer_id, str) or not isinstance(recorded_at, str):
        raise ValueError("transfer_id and recorded_at must be str")
    problem = canonical_problem(payload)
    if problem:
        raise ValueError(problem)
    return _chain_trusted(prev_hash, seq, kind, transfer_id, payload, recorded_at)


def _hash_doc(seq: int, kind: str, transfer_id: str, payload_json: str, recorded_at: str, prev_hash: str) -> str:
    """The canonical JSON that entry_hash hashes, around an already-encoded payload: the keys in sorted order
    (kind, payload, prev_hash, recorded_at, seq, transfer_id), strings quoted as the encoder quotes them."""
    return (f'{{"kind":{_quote(kind)},"payload":{payload_json},"prev_hash":{_quote(prev_hash)},'
            f'"recorded_at":{_quote(recorded_at)},"seq":{int(seq)},"transfer_id":{_quote(transfer_id)}}}')


def posted_payload_json(debit: str, credit: str, asset: str, amount: int, code: str) -> str:
    """The canonical JSON of a transfer_posted payload without refs or metadata (the common entry), written
    out in sorted key order instead of sorting a dict per entry: the same text as encoding the payload."""
    return (f'{{"amount":{int(amount)},"asset":{_quote(asset)},"code":{_quote(code)},'
            f'"credit_account_id":{_quote(credit)},"debit_account_id":{_quote(debit)},'
            f'"delta.credits_pending":0,"delta.credits_posted":{int(amount)},'
            f'"delta.debits_pending":0,"delta.debits_posted":{int(amount)}}}')


def _chain_trusted(prev_hash, seq, kind, transfer_id, payload, recorded_at, payload_json=None) -> JournalEntry:
    # the engine builds payloads itself, so it skips re-validation; the payload is encoded once, for the hash
    # and for storage (or was already, by the engine: ``payload_json``)
    pj = payload_json or _encode(payload)
    h = sha256(_hash_doc(seq, kind, transfer_id, pj, recorded_at, prev_hash).encode("utf-8")).hexdigest()
    e = JournalEntry(seq, kind, transfer_id, payload, recorded_at, prev_hash, h)
    object.__setattr__(e, "payload_json", pj)
    return e


def chain_drafts(prev_hash: str, last_seq: int, drafts: list[tuple], recorded_at: str) -> list[JournalEntry]:
    """Chain (kind, transfer_id, payload) drafts after the head (last_seq, prev_hash); a draft may carry the
    payload's canonical JSON as a fourth item."""
    out = []
    seq = last_seq
    for draft in drafts:
        seq += 1
        e = _chain_trusted(prev_hash, seq, draft[0], draft[1], draft[2], recorded_at, draft[3] if len(draft) > 3 else None)
        out.append(e)
        prev_hash = e.hash
    return out


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int  # entries that passed before the first break (all of them when ok)
    first_broken_seq: int | None
    reason: str  # "" when ok; seq_gap | prev_hash_mismatch | hash_mismatch | payload_not_canonical
    last_hash: str = GENESIS  # head hash after the last good entry (to continue verification later)


def verify(entries: Iterable[JournalEntry], start_prev_hash: str = GENESIS, start_seq: int = 1) -> VerifyResult:
    """Check seq continuity, the prev_hash link and each recomputed hash, stopping at the first break.

    A seq gap reports the seq that was expected. Note: someone who rewrites an entry *and* its hash moves
    the break to the next entry; anchoring the head hash elsewhere catches a full-suffix rewrite.
    """
    expected_seq = start_seq
    prev = start_prev_hash
    checked = 0
    for e in entries:
        if e.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, "seq_gap", prev)
        if e.prev_hash != prev:
            return VerifyResult(False, checked, e.seq, "prev_hash_mismatch", prev)
        if canonical_problem(e.payload):
            return VerifyResult(False, checked, e.seq, "payload_not_canonical", prev)
        if entry_hash(e.seq, e.kind, e.transfer_id, e.payload, e.recorded_at, e.prev_hash) != e.hash:
            return VerifyResult(False, checked, e.seq, "hash_mismatch", prev)
        prev = e.hash
        expected_seq += 1
        checked += 1
    return VerifyResult(True, checked, None, "", prev)


def iso_utc(moment: datetime) -> str:
    """The journal's time format; naive datetimes are refused (time is always passed in, with a zone)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("ledger times must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")

"""Many releases at once (the consumer's batch path): for each, what ``intake.submit_release`` does, in the same
order, with the same outcome, events and refusals, but one lock per county, one lookup per table and one bulk
insert per table for the whole run, and the lots' ledger moves in a few commands instead of one per lot.

Why the same: the steps of one release read only what earlier releases of the run may have written (release
ids, lots, transfer ids), and those are tracked in memory alongside the lookups. A refused release leaves no
trace, as its rolled-back savepoint would: not even the county row its lock would have created."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from services.quota.application.intake import (
    IdReused, ReleaseOutcome, _entitled_department, _released_event, body_digest, lock_enterprises, lot_events,
    release_differences, same_body,
)
from services.quota.application.ledger_commands import MoveSet, send_many
from services.quota.application.tx import BatchTx
from services.quota.domain.identifiers import county_code_problem
from services.quota.domain.ledger_moves import intake_moves
from services.quota.domain.lots import Lot, accept_release, lot_id_for_release
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.releases import EXIT_REASONS, QuotaRelease, ReleaseStatus, parse_release, verify_release
from services.quota.storage import intake_store
from services.quota.storage.counties import drop_unused, lock_counties
from shared.china_time import cst_date


@dataclass(frozen=True)
class ReleaseItem:
    """One QuotaReleaseSubmitted: its fields as JSON, and who sent it (see ``submit_release``)."""

    data: Mapping[str, Any]
    department: str | None
    submitted_by: str


Result = ReleaseOutcome | QuotaDomainError | IdReused


def submit_releases(btx: BatchTx, items: Sequence[ReleaseItem]) -> list[Result]:
    """One result per item, in order: its outcome, or the refusal ``submit_release`` would have raised (the
    refused item has no effect). Events go to ``btx`` with the item's position as their cause."""
    out: list[Result | None] = [None] * len(items)
    for i, it in enumerate(items):
        if (p := county_code_problem(it.data.get("county_code"))) is not None:
            out[i] = QuotaDomainError([p])
    live = [i for i in range(len(items)) if out[i] is None]
    if not live:
        return out  # type: ignore[return-value]
    policies, created = lock_counties(btx.session, {items[i].data["county_code"] for i in live}, btx.now)
    ids = {i: str(items[i].data.get("release_id")) for i in live}
    stored = intake_store.release_rows(btx.session, sorted(set(ids.values())))
    known: dict[str, tuple[str, int]] = {}  # release id -> (digest, item that took it) for this run
    fresh: list[tuple[int, QuotaRelease, str]] = []
    today = cst_date(btx.now)
    for i in live:
        it, rid = items[i], ids[i]
        digest = body_digest(it.data)
        if rid in known or rid in stored:
            prior = known[rid][0] if rid in known else stored[rid].digest
            # the differences are read from the whole stored row (release_rows reads four columns: the batch fell
            # back to one message at a time on every reused id)
            if same_body(prior, it.data):
                out[i] = _again(stored.get(rid), known.get(rid))
            elif rid not in stored:  # an earlier message of this poll, with another body
                out[i] = IdReused("release", rid)
            else:
                differ = release_differences(intake_store.release_row(btx.session, rid), it.data)
                out[i] = IdReused("release", rid, differ) if differ else _again(stored.get(rid), known.get(rid))
            continue
        policy = policies[it.data["county_code"]].policy
        department = it.department or _entitled_department(policy, it.data.get("asset"))
        try:
            rel = parse_release({**it.data, "department": department}, policy, today)
        except QuotaDomainError as exc:
            out[i] = exc
            continue
        known[rid] = (digest, i)
        fresh.append((i, rel, digest))
    # as submit_release: the enterprises' locks (after the counties') before their departures are read
    lock_enterprises(btx.session, [r.enterprise_credit_code for _, r, _ in fresh if r.reason in EXIT_REASONS])
    departed = intake_store.departed_among(btx.session, sorted({r.enterprise_credit_code for _, r, _ in fresh}))
    existing_lots = intake_store.lot_ids_among(btx.session, [lot_id_for_release(r.release_id) for _, r, _ in fresh])
    rows: list[dict] = []
    lots: list[Lot] = []
    moves: list[MoveSet] = []
    for i, rel, digest in fresh:
        policy = policies[rel.county_code].policy
        decision = verify_release(rel, departed, policy.verification)
        rows.append(intake_store.release_values(rel, status=decision.status, status_reason=decision.reason,
                                                digest=digest, submitted_by=items[i].submitted_by, now=btx.now))
        btx.emit(_released_event(rel, decision), rel.release_id, i)
        lot_id = None
        if decision.status is ReleaseStatus.ACCEPTED:
            lot, _ = accept_release(rel, policy)
            lot_id = lot.lot_id
            if lot.lot_id not in existing_lots:  # take_in: the same lot twice does nothing
                lots.append(lot)
                for event in lot_events(lot):
                    btx.emit(event, lot.lot_id, i)
                moves.append(MoveSet(intake_moves(lot), lot.county_code, lot_id=lot.lot_id, cause=i))
        out[i] = ReleaseOutcome(rel.release_id, decision.status.value, decision.reason, lot_id, True)
    for i in live:  # a repeat within the run answers what its first made of it
        if isinstance(out[i], _Pending):
            first = out[out[i].item]
            out[i] = ReleaseOutcome(first.release_id, first.status, first.status_reason, first.lot_id, False)
    intake_store.insert_releases(btx.session, rows)
    intake_store.insert_lots(btx.session, lots, btx.now)
    send_many(btx, moves)
    drop_unused(btx.session, created - {items[i].data["county_code"] for i in live if isinstance(out[i], ReleaseOutcome)})
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class _Pending:
    item: int  # the earlier item of the run with the same release id and body


def _again(row, earlier: tuple[str, int] | None) -> ReleaseOutcome | _Pending:
    """The same release again: nothing new (``submit_release``'s answer from the stored row)."""
    if earlier is not None:
        return _Pending(earlier[1])
    lot_id = f"release:{row.release_id}" if row.status == ReleaseStatus.ACCEPTED.value else None
    return ReleaseOutcome(row.release_id, row.status, row.status_reason, lot_id, False)

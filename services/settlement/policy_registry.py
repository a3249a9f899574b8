"""Recording versions of a county's settlement policy (compensation share and proceeds weights).

Versions are append-only, numbered 1, 2, ... by the service, and each applies from its ``effective_from`` (the 1st
of a month) to the allocations made from then on, until the next version takes over (``domain.PolicyBook``, the
same model as agreement amendments). Left out, ``effective_from`` is "from the beginning" for the county's first
version and the current month (China time) for a later one: a change made today never reaches back into the
allocations of months before. A version may take effect before versions recorded earlier (it applies until the
next later-dated one: ``PolicyBook``), but not in or before a finalized period (``effective_in_closed_period``),
whose statements split that period's allocations by the versions in force then — finalized periods are
immutable, so the change must start in the first open month — unless it takes effect before the earliest version:
it then splits only months no version did, whose late allocations no statement could settle. Re-sending the terms
of the version in force from a month (by default the current one) changes nothing. The county lock
(``storage.locks``) serializes this with the county's drafts and finalizations, so a period cannot close between
the check and the commit.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from services.settlement.domain import PolicyBook, ProceedsError, SettlementPolicy
from services.settlement.domain.periods import month_from_index, month_index
from services.settlement.storage.inputs import InputsRepository, policy_from_row
from services.settlement.storage.locks import hold_county
from services.settlement.storage.statements import StatementsRepository
from shared.china_time import cst_date


def record_policy(session: Session, county: str, *, policy_id: str, compensation_bp: int, township_weight: int,
                  park_weight: int, fund_weight: int, effective_from: date | None, by: str,
                  now: datetime) -> tuple[SettlementPolicy, bool]:
    """Store a new version unless it changes nothing; returns (the version, whether it was stored).

    Re-sending the terms of the version in force from ``effective_from`` (left out: this month), without it or with
    that version's own, changes nothing."""
    hold_county(session, county)
    inputs = InputsRepository(session)
    known = [policy_from_row(r) for r in inputs.policy_rows(county)]
    latest = known[-1] if known else None
    book = PolicyBook(known) if known else None
    policy = SettlementPolicy(
        policy_id=policy_id, version=latest.version + 1 if latest else 1, county=county,
        compensation_bp=compensation_bp, township_weight=township_weight, park_weight=park_weight,
        fund_weight=fund_weight,
        effective_from=effective_from if effective_from is not None or latest is None else cst_date(now).replace(day=1))
    changes_from = policy.effective_from or date.min
    # compared with the version in force from then, not the last recorded: that one may be back-dated and
    # superseded, and its terms sent "from this month" would have changed nothing
    current = book.version_in_force(changes_from) if book else None
    if current is not None and policy.same_terms(current) and effective_from in (None, current.effective_from):
        return current, False

    closed = StatementsRepository(session).finalized_headers(county)
    if closed:
        last_end = closed[-1].period_end
        # before the earliest version it only fills months no version split: no finalized statement could hold an
        # allocation there, and a late one of such a month could be settled no other way (policy_missing for ever)
        fills_gap = book is not None and book.first_effective is not None and changes_from < book.first_effective
        if changes_from <= last_end and not fills_gap:
            first_open = month_from_index(month_index(last_end) + 1).start
            raise ProceedsError(
                "effective_in_closed_period",
                f"policy version {policy.version} would split allocations from "
                f"{policy.effective_from or 'the beginning'}, but {closed[-1].period} (to {last_end}) is finalized; "
                f"let it take effect in the first open month ({first_open}) or later")
    PolicyBook([*known, policy])
    inputs.add_policy(policy, by, now)
    return policy, True

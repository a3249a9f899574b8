"""QuotaAllocated lists every lot an allocation consumes, and nothing bounds how many: measured here on the real
events, wrapped in the real envelope and checked by the real outbox (shared.outbox), with ids of every length the
contracts let in. A line whose event could not be written is refused (too_many_lots) in the round, or, at
allocation, its reservation is cancelled instead of the transaction failing (application/allocations.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from services.quota.application.allocations import (
    ALLOCATED_EVENT_BYTES, event_bytes, most_that_fits, plan_allocation,
)
from services.quota.application.request_events import requested, transition_event
from services.quota.application.rounds import _inputs, replay_round
from services.quota.domain.allocation import Outcome, Shortfall, apply_decision, run_allocation_round
from services.quota.domain.assets import ASSETS, ApprovalKind
from services.quota.domain.lots import Basis, SourceKind, new_lot
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.requests import (
    TOO_MANY_LOTS, RequestEvent, RequestState, begin_reserving, on_approval, on_ledger_reserved, open_request,
    unallocatable,
)
from services.quota.storage import tables as T
from shared.envelope import new_envelope
from shared.outbox import MAX_EVENT_BYTES, EventTooLarge, Outbox

LONGEST_RELEASE_ID = 150  # shared.contracts.types.SourceIdentifier
AT = datetime(2024, 6, 1, tzinfo=timezone.utc)


def lots_of(policy: PoolPolicy, n: int, *, width: int = 8, char: str = "R", kind: SourceKind = SourceKind.ENTERPRISE,
            amount: int = 1_000, day: date = date(2024, 1, 1)):
    """``n`` lots of COD, ``amount`` smallest units each (the policy retires none), origin ids ``width`` characters."""
    out = []
    for i in range(n):
        origin = f"{i:07d}".rjust(width, char)
        ref = origin if kind is SourceKind.RECLAMATION else "91320612MA00000011"
        prefix = "reclamation" if kind is SourceKind.RECLAMATION else "release"
        out.append(new_lot(lot_id=f"{prefix}:{origin}", county_code=policy.county_code, asset="COD", amount=amount,
                           source_kind=kind, source_ref=ref, township_code=f"{policy.county_code}100123",
                           dated=day, basis=Basis.FREE, buyback_price_fen_per_unit=None, origin_id=origin,
                           policy=policy))
    return out


@pytest.fixture
def pool_policy(county) -> PoolPolicy:
    return PoolPolicy(county_code=county, retire_share_bp={"COD": 0}, price_fen_per_unit={"COD": 1_234_567})


def request_for(county, projects, policy, units: int, rid: str = "R1", pid: str = "P-A", t0=AT):
    return open_request(rid, pid, county, [{"asset": "COD", "amount": f"{units / 10**ASSETS['COD'].scale:.4f}"}],
                        t0, projects, policy)


def allocated(req, policy, t0=AT):
    req = begin_reserving(req, t0, policy).request
    req = on_ledger_reserved(req, f"quota/reserve/{req.request_id}/COD", t0).request
    return on_approval(req, ApprovalKind.ENVIRONMENTAL_IMPACT, t0).request


def outbox_takes(event, subject: str) -> bool:
    """What the service's outbox says of the event in an envelope with the longest correlation and causation ids."""
    env = new_envelope(event, subject=subject, source="/countypool/quota", producer="quota",
                       correlation_id="\U0001F600" * 200, causation_id="\U0001F600" * 200)
    try:
        Outbox(T.messaging["outbox"], "quota").check_rows(
            [(env.id, env.type, event.topic, subject, env.to_json().decode(), env.time)])
    except EventTooLarge:
        return False
    return True


def per_lot(policy, county, projects, **lot_kw) -> float:
    sizes = []
    for n in (1, 101):
        req = allocated(request_for(county, projects, policy, n * 1_000), policy)
        planned = plan_allocation(req, lots_of(policy, n, **lot_kw), policy, "park-1", AT.date())
        sizes.append(event_bytes(planned.events[0]))
    return (sizes[1] - sizes[0]) / 100


def test_bytes_per_lot_and_how_many_lots_one_event_can_carry(pool_policy, county, projects):
    usual = per_lot(pool_policy, county, projects)  # "release:REL-2024-000123"-like ids
    longest = per_lot(pool_policy, county, projects, width=LONGEST_RELEASE_ID)
    reclamation = per_lot(pool_policy, county, projects, width=LONGEST_RELEASE_ID, kind=SourceKind.RECLAMATION)
    widest = per_lot(pool_policy, county, projects, width=LONGEST_RELEASE_ID, char="\U0001F600",
                     kind=SourceKind.RECLAMATION)
    assert MAX_EVENT_BYTES - 4 * 1024 <= ALLOCATED_EVENT_BYTES < MAX_EVENT_BYTES  # room for the envelope
    assert 130 < usual < 200 and 280 < longest < 360 and 420 < reclamation < 500 and 1_250 < widest < 1_400
    # so one event carries thousands of lots of usual ids, but only ~700 of the widest
    assert 4_500 < ALLOCATED_EVENT_BYTES / usual and ALLOCATED_EVENT_BYTES / widest < 750


def test_an_allocation_of_too_many_lots_is_one_the_outbox_would_refuse(pool_policy, county, projects):
    """The limit the service checks is the outbox's, less what the envelope may add (ENVELOPE_ALLOWANCE, 4 KiB): the
    most that fits is written, a few lots more are refused by the service, some more by the outbox too."""
    lots = lots_of(pool_policy, 3_200, width=LONGEST_RELEASE_ID)
    whole = plan_allocation(allocated(request_for(county, projects, pool_policy, 3_200 * 1_000), pool_policy),
                            lots, pool_policy, "park-1", AT.date())
    assert whole.too_large() == whole.events and not outbox_takes(whole.events[0], "R1")

    most = most_that_fits(whole.events[0])
    assert 2_500 * 1_000 < most < 3_200 * 1_000 and most % 1_000 == 0  # whole lots of 0.1 t
    fits = plan_allocation(allocated(request_for(county, projects, pool_policy, most), pool_policy), lots,
                           pool_policy, "park-1", AT.date())
    assert fits.too_large() == () and outbox_takes(fits.events[0], "R1")
    assert event_bytes(fits.events[0]) > ALLOCATED_EVENT_BYTES - 1_000, "the most that fits is close to the limit"
    more = plan_allocation(allocated(request_for(county, projects, pool_policy, most + 1_000), pool_policy), lots,
                           pool_policy, "park-1", AT.date())
    assert more.too_large() == more.events, "one lot more"
    more = plan_allocation(allocated(request_for(county, projects, pool_policy, most + 20_000), pool_policy), lots,
                           pool_policy, "park-1", AT.date())
    assert not outbox_takes(more.events[0], "R1"), "20 lots more (~6.4 kB)"


def test_request_events_are_small_whatever_their_lines(pool_policy, county, projects):
    """One line per asset (a second line of an asset is refused), 7 assets: QuotaRequested / QuotaReserved stay
    around 2 kB even with the largest amounts and ids."""
    lines = [{"asset": a, "amount": "99999999999999.999"} for a in ASSETS]  # near the books' limit (2**63 units)
    registry = {"P" * 100: replace(projects["P-A"], project_id="P" * 100)}
    req = open_request("R" * 100, "P" * 100, county, lines, AT, registry, pool_policy)
    assert len(req.lines) == len(ASSETS) == 7
    reserved = begin_reserving(req, AT, pool_policy).request
    for event in (requested(req), transition_event(RequestEvent.RESERVED, reserved)):
        assert event_bytes(event) < 2_500
    with pytest.raises(QuotaDomainError) as exc:
        open_request("R1", "P-A", county, lines + lines[:1], AT, projects, pool_policy)
    assert [p.reason for p in exc.value.problems] == ["duplicate_asset_line"]


def test_an_allocation_that_cannot_be_written_becomes_the_reservations_cancellation(pool_policy, county, projects):
    req = request_for(county, projects, pool_policy, 5_000)
    req = begin_reserving(req, AT, pool_policy).request
    req = on_approval(req, ApprovalKind.ENVIRONMENTAL_IMPACT, AT).request  # the approval came first
    tr = on_ledger_reserved(req, "quota/reserve/R1/COD", AT + timedelta(seconds=1))
    assert tr.allocated_now

    refused = unallocatable(tr, AT + timedelta(seconds=1))
    assert refused.changed and refused.reason == TOO_MANY_LOTS
    assert (refused.request.state, refused.request.reason) == (RequestState.CANCELLED, TOO_MANY_LOTS)
    assert refused.events == (RequestEvent.RESERVED, RequestEvent.CANCELLED), "reserved, then cancelled: not allocated"
    assert [(m.transfer_id, m.void_pending_id) for m in refused.moves] == [("quota/void/R1/COD", "quota/reserve/R1/COD")]
    assert refused.request.approvals == {ApprovalKind.ENVIRONMENTAL_IMPACT}, "the approval is kept"
    with pytest.raises(ValueError):
        unallocatable(refused, AT)


def test_a_round_refuses_a_request_it_cannot_allocate_and_grants_the_next_one(pool_policy, county, projects):
    reqs = [request_for(county, projects, pool_policy, 50_000, "R1", "P-A"),  # class A: first
            request_for(county, projects, pool_policy, 40_000, "R2", "P-B")]
    asked = []

    def fits(r):
        asked.append(r.request_id)
        return (Shortfall("COD", 50_000, 30_000),) if r.request_id == "R1" else ()

    result = run_allocation_round({"COD": 60_000}, reqs, pool_policy.priority, fits)
    assert [(d.request_id, d.outcome, d.reason, d.shortfalls) for d in result.decisions] == [
        ("R1", Outcome.REFUSED, TOO_MANY_LOTS, (Shortfall("COD", 50_000, 30_000),)),
        ("R2", Outcome.GRANTED, "granted", ())]
    assert asked == ["R1", "R2"] and result.available_after["COD"] == 20_000, "R1 took nothing"
    tr = apply_decision(reqs[0], result.decisions[0], AT, pool_policy)
    assert (tr.request.state, tr.request.reason, tr.moves) == (RequestState.REJECTED, TOO_MANY_LOTS, ())

    inputs = _inputs({"COD": 60_000}, reqs, pool_policy.priority)
    inputs["too_many_lots"] = {"R1": [["COD", 50_000, 30_000]]}  # what run_round stores
    again = replay_round(county, inputs)
    assert [(d.request_id, d.outcome, d.reason, d.shortfalls) for d in again.decisions] == \
        [(d.request_id, d.outcome, d.reason, d.shortfalls) for d in result.decisions]
    old = replay_round(county, _inputs({"COD": 60_000}, reqs, pool_policy.priority))  # a round stored before
    assert [d.outcome for d in old.decisions] == [Outcome.GRANTED, Outcome.INSUFFICIENT]

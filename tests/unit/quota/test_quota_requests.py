from datetime import timedelta

import pytest

from services.quota.domain.assets import ApprovalKind
from services.quota.domain.ledger_moves import TransferCode
from services.quota.domain.policy import LEDGER_EXPIRY_GRACE_SECONDS
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.requests import (
    RequestEvent, RequestState, begin_reserving, cancel, expire_if_due, on_approval, on_ledger_expired,
    on_ledger_refused, on_ledger_reserved, on_ledger_voided, open_request, reject, withdraw,
)

EIA, ENERGY_REVIEW = ApprovalKind.ENVIRONMENTAL_IMPACT, ApprovalKind.ENERGY_REVIEW
H = timedelta(hours=1)


@pytest.fixture
def new_request(county, t0, projects, policy):
    def build(lines=({"asset": "COD", "amount": "1.5"},), request_id="R1", project_id="P-A"):
        return open_request(request_id, project_id, county, list(lines), t0, projects, policy)

    return build


@pytest.fixture
def reserving(new_request, t0, policy):
    return begin_reserving(new_request(), t0 + H, policy).request


def test_reserve_then_allocate(new_request, t0, policy):
    r = new_request()
    assert (r.state, r.line_amounts, r.needed_approvals) == (RequestState.REQUESTED, (("COD", 15000),), {EIA})
    assert r.deadline == t0 + timedelta(seconds=policy.request_wait_seconds)

    t = begin_reserving(r, t0 + H, policy)
    assert t.changed and t.request.state is RequestState.RESERVING
    assert t.request.deadline == t0 + H + timedelta(seconds=policy.reservation_timeout_seconds)
    (pending,) = t.moves
    assert (pending.transfer_id, pending.debit_account, pending.credit_account, pending.amount) == (
        "quota/reserve/R1/COD", "county:320612/pool/COD", "project:P-A/COD", 15000)
    # the ledger holds it a grace longer than our deadline, so a post sent just before the deadline still finds it
    assert pending.pending and pending.timeout_seconds == policy.reservation_timeout_seconds + LEDGER_EXPIRY_GRACE_SECONDS

    t = on_ledger_reserved(t.request, "quota/reserve/R1/COD", t0 + 2 * H)
    assert t.request.state is RequestState.RESERVED and t.events == (RequestEvent.RESERVED,) and not t.moves

    t = on_approval(t.request, EIA, t0 + 3 * H)
    assert t.request.state is RequestState.ALLOCATED and t.allocated_now
    (post,) = t.moves
    assert (post.transfer_id, post.post_pending_id, post.code) == ("quota/post/R1/COD", "quota/reserve/R1/COD",
                                                                    TransferCode.ALLOCATE)


def test_a_two_line_request_needs_every_line_reserved_and_every_approval(new_request, t0, policy):
    r = new_request([{"asset": "COD", "amount": "1"}, {"asset": "ENERGY", "amount": "200", "approval_kind":
                                                       "energy_review"}])
    t = begin_reserving(r, t0, policy)
    assert [m.linked for m in t.moves] == [True, False]  # one linked chain: reserved whole or not at all
    t = on_ledger_reserved(t.request, "quota/reserve/R1/ENERGY", t0)
    assert t.changed and t.request.state is RequestState.RESERVING and t.reason == "line_reserved"
    t = on_ledger_reserved(t.request, "quota/reserve/R1/COD", t0)
    assert t.request.state is RequestState.RESERVED
    t = on_approval(t.request, EIA, t0)
    assert t.request.state is RequestState.RESERVED and t.reason == "approval_remembered"
    t = on_approval(t.request, ENERGY_REVIEW, t0)
    assert t.request.state is RequestState.ALLOCATED and len(t.moves) == 2


def test_approval_before_the_reservation_answer_allocates_as_soon_as_reserved(reserving, t0):
    t = on_approval(reserving, EIA, t0 + 2 * H)
    assert t.changed and t.request.state is RequestState.RESERVING and t.request.approvals == {EIA}
    assert not t.moves and not t.events
    t = on_ledger_reserved(t.request, "quota/reserve/R1/COD", t0 + 3 * H)
    assert t.request.state is RequestState.ALLOCATED
    assert t.events == (RequestEvent.RESERVED, RequestEvent.ALLOCATED)
    assert [m.transfer_id for m in t.moves] == ["quota/post/R1/COD"]


def test_approval_even_before_the_round_is_remembered(new_request, t0, policy):
    t = on_approval(new_request(), EIA, t0)
    assert t.changed and t.request.state is RequestState.REQUESTED
    t = begin_reserving(t.request, t0, policy)
    assert on_ledger_reserved(t.request, "quota/reserve/R1/COD", t0).allocated_now


def test_duplicate_events_change_nothing(reserving, t0):
    first = on_ledger_reserved(reserving, "quota/reserve/R1/COD", t0 + 2 * H)
    again = on_ledger_reserved(first.request, "quota/reserve/R1/COD", t0 + 3 * H)
    assert (again.changed, again.reason, again.moves, again.request) == (False, "duplicate", (), first.request)

    approved = on_approval(first.request, EIA, t0 + 3 * H)
    for event in (lambda r: on_approval(r, EIA, t0 + 4 * H),
                  lambda r: on_ledger_reserved(r, "quota/reserve/R1/COD", t0 + 4 * H),
                  lambda r: cancel(r, t0 + 4 * H)):
        t = event(approved.request)
        assert not t.changed and not t.moves and t.request == approved.request


def test_approvals_of_no_concern_are_ignored(reserving, t0):
    assert on_approval(reserving, "land_use", t0).reason == "approval_not_needed"
    assert on_approval(reserving, "blessing", t0).reason == "approval_kind_unknown"
    assert on_ledger_reserved(reserving, "quota/reserve/OTHER/COD", t0).reason == "unknown_transfer"


def test_ledger_refusal_rejects(reserving, t0):
    t = on_ledger_refused(reserving, "quota/reserve/R1/COD", "exceeds_credits", t0 + 2 * H)
    assert t.request.state is RequestState.REJECTED and t.request.reason == "ledger_refused:exceeds_credits"
    assert t.events == (RequestEvent.REJECTED,)
    assert not on_ledger_refused(t.request, "quota/reserve/R1/COD", "exceeds_credits", t0).changed


def test_insufficient_round_rejects_a_requested_request(new_request, t0):
    t = reject(new_request(), "insufficient_quota", t0)
    assert (t.request.state, t.request.reason, t.moves) == (RequestState.REJECTED, "insufficient_quota", ())


def test_cancel_voids_whatever_the_ledger_holds(reserving, t0):
    t = cancel(on_ledger_reserved(reserving, "quota/reserve/R1/COD", t0).request, t0 + 2 * H, "project_withdrawn")
    assert t.request.state is RequestState.CANCELLED and t.events == (RequestEvent.CANCELLED,)
    (void,) = t.moves
    assert (void.transfer_id, void.void_pending_id, void.code) == ("quota/void/R1/COD", "quota/reserve/R1/COD",
                                                                    TransferCode.VOID_RESERVATION)
    assert not cancel(t.request, t0 + 3 * H).changed
    assert on_approval(t.request, EIA, t0 + 3 * H).reason == "request_closed"


def test_cancel_before_reservation_needs_no_ledger_move(new_request, t0):
    t = cancel(new_request(), t0)
    assert t.request.state is RequestState.CANCELLED and t.moves == ()


def test_a_project_no_longer_admitted_gets_nothing_waiting_or_reserved(new_request, reserving, t0):
    t = withdraw(new_request(), t0)
    assert (t.request.state, t.request.reason, t.moves, t.events) == (
        RequestState.REJECTED, "project_not_admitted", (), (RequestEvent.REJECTED,))
    for holding in (reserving, on_ledger_reserved(reserving, "quota/reserve/R1/COD", t0).request):
        t = withdraw(holding, t0 + 2 * H)
        assert (t.request.state, t.request.reason, t.events) == (
            RequestState.CANCELLED, "project_not_admitted", (RequestEvent.CANCELLED,))
        assert [(m.transfer_id, m.void_pending_id) for m in t.moves] == [("quota/void/R1/COD", "quota/reserve/R1/COD")]
        assert withdraw(t.request, t0 + 3 * H).reason == "request_closed" and not withdraw(t.request, t0).changed


def test_a_reservation_confirmed_after_cancel_is_voided_again_under_a_late_id(reserving, t0):
    cancelled = cancel(reserving, t0 + 2 * H).request
    t = on_ledger_reserved(cancelled, "quota/reserve/R1/COD", t0 + 3 * H)
    assert not t.changed and t.request == cancelled
    assert [m.transfer_id for m in t.moves] == ["quota/void-late/R1/COD"]


def test_a_request_never_waits_forever(new_request, reserving, t0, policy):
    waiting = new_request()
    assert not expire_if_due(waiting, waiting.deadline - timedelta(seconds=1)).changed
    t = expire_if_due(waiting, waiting.deadline)
    assert t.request.state is RequestState.EXPIRED and t.events == (RequestEvent.REQUEST_EXPIRED,) and not t.moves
    assert begin_reserving(waiting, waiting.deadline, policy).request.state is RequestState.EXPIRED

    reserved = on_ledger_reserved(reserving, "quota/reserve/R1/COD", t0 + 2 * H).request
    t = expire_if_due(reserved, reserved.deadline)
    assert t.request.state is RequestState.EXPIRED and t.request.reason == "deadline_passed"
    assert t.events == (RequestEvent.RESERVATION_EXPIRED,) and [m.transfer_id for m in t.moves] == ["quota/void/R1/COD"]
    # an approval arriving after the deadline does not allocate
    late = on_approval(reserved, EIA, reserved.deadline + H)
    assert late.request.state is RequestState.EXPIRED and not late.allocated_now


def test_the_ledger_expiring_a_reservation_expires_the_request(reserving, t0):
    reserved = on_ledger_reserved(reserving, "quota/reserve/R1/COD", t0).request
    t = on_ledger_expired(reserved, "quota/reserve/R1/COD", t0 + 2 * H)
    assert t.request.state is RequestState.EXPIRED and t.request.reason == "ledger_expired"
    assert not on_ledger_expired(t.request, "quota/reserve/R1/COD", t0 + 3 * H).changed


def test_a_reservation_voided_on_the_ledger_by_someone_else_is_cancelled_and_holds_nothing(reserving, t0):
    reserved = on_ledger_reserved(reserving, "quota/reserve/R1/COD", t0).request
    t = on_ledger_voided(reserved, "quota/reserve/R1/COD", t0 + 2 * H)
    assert (t.request.state, t.request.reason, t.events) == (
        RequestState.CANCELLED, "ledger_voided", (RequestEvent.CANCELLED,))
    assert t.request.held() == {} and [m.transfer_id for m in t.moves] == ["quota/void/R1/COD"]
    assert not on_ledger_voided(t.request, "quota/reserve/R1/COD", t0 + 3 * H).changed
    assert not on_ledger_voided(reserved, "quota/reserve/R9/COD", t0 + 3 * H).changed  # not this request's
    # an approval after it allocates nothing
    assert not on_approval(t.request, EIA, t0 + 3 * H).allocated_now


def test_a_policy_beyond_what_the_ledger_or_a_date_can_carry_names_its_limits(county):
    from services.quota.domain.policy import MAX_REQUEST_WAIT_SECONDS, MAX_RESERVATION_TIMEOUT_SECONDS, PoolPolicy

    assert PoolPolicy(county).limit_problems() == []
    assert PoolPolicy(county, reservation_timeout_seconds=MAX_RESERVATION_TIMEOUT_SECONDS,
                      request_wait_seconds=MAX_REQUEST_WAIT_SECONDS).limit_problems() == []
    assert len(PoolPolicy(county, reservation_timeout_seconds=MAX_RESERVATION_TIMEOUT_SECONDS + 1,
                          request_wait_seconds=MAX_REQUEST_WAIT_SECONDS + 1).limit_problems()) == 2


@pytest.mark.parametrize(
    "project_id, lines, reasons",
    [
        ("P-NO", [{"asset": "COD", "amount": "1"}], {"project_not_admitted"}),
        ("P-UNSEEN", [{"asset": "COD", "amount": "1"}], {"project_unknown"}),
        ("P-ELSEWHERE", [{"asset": "COD", "amount": "1"}], {"project_in_other_county"}),
        ("P-A", [], {"no_lines"}),
        ("P-A", [{"asset": "COD", "amount": "1"}, {"asset": "COD", "amount": "2"}], {"duplicate_asset_line"}),
        ("P-A", [{"asset": "COD", "amount": "1", "approval_kind": "land_use"}, {"asset": "GOLD", "amount": "1"},
                 {"asset": "SO2", "amount": "-1"}],
         {"approval_kind_does_not_confirm_asset", "unknown_asset", "amount_must_not_be_negative"}),
    ],
)
def test_only_valid_requests_of_admitted_projects_open(county, t0, projects, policy, project_id, lines, reasons):
    with pytest.raises(QuotaDomainError) as e:
        open_request("R9", project_id, county, lines, t0, projects, policy)
    assert set(e.value.reasons) == reasons

"""The quota service's pure glue: policy documents, intake scopes, ledger command shapes, round replay."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.quota.application.ledger_commands import account_spec, transfer_spec
from services.quota.application.policy_codec import policy_from_doc, policy_to_doc
from services.quota.application.rounds import _inputs, replay_round
from services.quota.domain.allocation import run_allocation_round
from services.quota.domain.ledger_moves import intake_moves, reserve_moves, allocate_moves, void_moves
from services.quota.domain.lots import accept_release
from services.quota.domain.policy import PoolPolicy, PriorityKey, PriorityPolicy
from services.quota.domain.releases import parse_release
from services.quota.domain.requests import open_request
from services.quota.intake_scopes import approval_scope, department_of, intake_scope


def test_a_policy_document_round_trips_and_missing_keys_take_the_defaults(county):
    policy = PoolPolicy(county, retire_share_bp={"COD": 1500}, price_fen_per_unit={"LAND": 12_345_600},
                        reservation_timeout_seconds=120, consumption_order="township_order",
                        township_order=(f"{county}101",), verification="accept",
                        priority=PriorityPolicy((PriorityKey.ARRIVAL,), ("B", "A"), frozenset({"C39"})))
    assert policy_from_doc(county, policy_to_doc(policy)) == policy
    assert policy_from_doc(county, {}) == PoolPolicy(county)
    with pytest.raises(ValueError):
        policy_from_doc(county, {"retire_share_bp": {"GOLD": 1}})


def test_intake_scopes_and_departments():
    assert intake_scope("QuotaReleaseSubmitted", {"asset": "COD"}) == "publish:QuotaReleaseSubmitted:COD"
    assert intake_scope("ApprovalGranted", {"kind": "energy_review"}) == "publish:ApprovalGranted:energy"
    assert intake_scope("ReclamationAccepted", {}) == "publish:ReclamationAccepted"
    assert approval_scope("environmental_impact") == "publish:ApprovalGranted:environmental"
    assert approval_scope("land_use") == "publish:ApprovalGranted:land"
    assert department_of(["/departments/development-reform"]) == "development_reform"
    assert department_of(["/countypool/quota"]) is None
    assert department_of([]) is None


def test_ledger_commands_carry_exact_decimal_strings_accounts_and_chains(policy, release_payload):
    lot, _ = accept_release(parse_release(release_payload(amount="12.3457"), policy), policy)
    moves = intake_moves(lot)
    specs = [transfer_spec(m, policy.county_code, lot.lot_id) for m in moves]
    assert [(s.amount, s.linked, s.code) for s in specs] == [
        ("12.3457", True, "quota_release_intake"), ("2.4692", False, "quota_retire")]
    assert specs[0].debit_account == "external:rights-register/COD"
    assert account_spec("external:rights-register/COD", "COD").address == "external:rights-register"
    assert account_spec(f"county:{policy.county_code}/pool/COD", "COD").address == f"county:{policy.county_code}/pool"
    assert account_spec("project:P-A/LAND", "LAND").address == "project:P-A"

    lines = [("COD", 35_000), ("ENERGY", 1_500)]
    reserve = [transfer_spec(m, "320612", "R1") for m in reserve_moves("R1", "P-A", "320612", lines, 600)]
    assert [(s.pending, s.timeout_seconds, s.linked, s.amount) for s in reserve] == [
        (True, 600, True, "3.5000"), (True, 600, False, "1.500")]
    post = [transfer_spec(m, "320612", "R1") for m in allocate_moves("R1", "P-A", "320612", lines)]
    assert [s.post_pending_id for s in post] == ["quota/reserve/R1/COD", "quota/reserve/R1/ENERGY"]
    voids = [transfer_spec(m, "320612", "R1") for m in void_moves("R1", "P-A", "320612", lines)]
    assert [(s.void_pending_id, s.linked, s.timeout_seconds) for s in voids] == [
        ("quota/reserve/R1/COD", False, 0), ("quota/reserve/R1/ENERGY", False, 0)]


def test_a_round_replays_from_its_stored_inputs(policy, projects, t0):
    requests = [open_request(f"R{i}", pid, policy.county_code, [{"asset": "COD", "amount": amount}],
                             t0 + timedelta(minutes=i), projects, policy)
                for i, (pid, amount) in enumerate([("P-B", "4"), ("P-A", "5"), ("P-A", "2"), ("P-B", "1")])]
    available = {"COD": 80_000, "LAND": 0}
    live = run_allocation_round(available, requests, policy.priority)
    again = replay_round(policy.county_code, _inputs(available, requests, policy.priority))
    assert [(d.request_id, d.outcome, d.reason, d.ordered_by) for d in again.decisions] == \
        [(d.request_id, d.outcome, d.reason, d.ordered_by) for d in live.decisions]
    assert [d.outcome.value for d in live.decisions].count("insufficient") == 1


def test_reconciliation_compares_reserved_when_the_ledger_pending_is_given():
    from services.quota.domain.pool_view import PoolFigures
    from services.quota.domain.reconciliation import Difference, LedgerFigures, reconcile

    ours = {"COD": PoolFigures("COD", released=10, retired=2, allocated=3, reserved=1, available=4)}
    assert reconcile(ours, {"COD": LedgerFigures(pool=5, allocated=3, retired=2, reserved=1)}) == []
    assert reconcile(ours, {"COD": LedgerFigures(pool=5, allocated=3, retired=2, reserved=0)}) == [
        Difference("COD", "reserved", 1, 0)]
    assert reconcile(ours, {"COD": LedgerFigures(pool=5, allocated=3, retired=2)}) == [], "not compared when unknown"


def test_the_intake_check_knows_publishers_and_topic_owners():
    from shared.auth import Authenticator
    from shared.contracts import topics
    from shared.envelope import EnvelopeError, new_envelope
    from shared.contracts.quota import ApprovalGranted
    from shared.contracts.ledger import TransferPosted
    from services.quota.handlers import authorize
    from tests.support.services import TOKENS

    auth = Authenticator.from_settings(TOKENS, None)
    approval = ApprovalGranted(project_id="P1", kind="energy_review", granted_on="2024-01-01")
    ok = new_envelope(approval, subject="P1", source="/departments/development-reform")
    authorize(auth, ok, topics.INTAKE_QUOTA)
    wrong = new_envelope(approval, subject="P1", source="/departments/ecology")
    with pytest.raises(EnvelopeError) as e:
        authorize(auth, wrong, topics.INTAKE_QUOTA)
    assert e.value.reason == "source_not_allowed"
    posted = TransferPosted(transfer_id="t", debit_account="a", credit_account="b", asset="COD", amount="1",
                            code="c", at="2024-01-01T00:00:00+00:00")
    authorize(auth, new_envelope(posted, subject="t", source="/countypool/ledger"), topics.LEDGER_EVENTS)
    with pytest.raises(EnvelopeError) as e:
        authorize(auth, new_envelope(posted, subject="t", source="/countypool/quota"), topics.LEDGER_EVENTS)
    assert e.value.reason == "unexpected_source"

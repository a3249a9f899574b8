from datetime import date

import pytest

from services.quota.domain.identifiers import credit_code_problem
from services.quota.domain.policy import VerificationMode
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.releases import (
    Basis, ReleaseReason, ReleaseStatus, parse_release, releases_verified_by, verify_release,
)


def test_a_valid_release_parses_to_exact_units(release_payload, policy):
    r = parse_release(release_payload(), policy)
    assert r.amount == 123457  # 12.3457 t at scale 4
    assert r.reason is ReleaseReason.CLOSURE and r.basis is Basis.FREE
    assert r.buyback_price_fen_per_unit is None
    assert r.released_on == date(2024, 2, 15)


def test_paid_release_carries_its_buyback_price_in_fen(release_payload, policy):
    r = parse_release(release_payload(basis="paid", buyback_price_per_unit="12000.50"), policy)
    assert r.buyback_price_fen_per_unit == 1_200_050


@pytest.mark.parametrize(
    "department, asset",
    [("ecology", "ENERGY"), ("ecology", "LAND"), ("development_reform", "COD"), ("natural_resources", "SO2")],
)
def test_a_department_without_the_right_for_an_asset_is_rejected(release_payload, policy, department, asset):
    with pytest.raises(QuotaDomainError) as e:
        parse_release(release_payload(department=department, asset=asset, amount="1.000"), policy)
    assert e.value.reasons == ("department_not_entitled",)


@pytest.mark.parametrize(
    "department, asset", [("ecology", "VOCS"), ("development_reform", "ENERGY"), ("natural_resources", "LAND")]
)
def test_each_department_may_publish_its_own_assets(release_payload, policy, department, asset):
    assert parse_release(release_payload(department=department, asset=asset, amount="1.000"), policy).asset == asset


def test_every_problem_is_reported_at_once(release_payload, policy):
    bad = release_payload(
        department="tax", enterprise_credit_code="91320612MA0000000X", township_code="320699100",
        amount="1.00001", reason="moved", basis="paid", released_on="2024-13-01", document_ref="",
    )
    with pytest.raises(QuotaDomainError) as e:
        parse_release(bad, policy)
    assert set(e.value.reasons) == {
        "unknown_department", "credit_code_check_failed", "township_not_in_county", "amount_exceeds_scale",
        "unknown_release_reason", "buyback_price_missing", "released_on_malformed", "document_ref_missing",
    }


def test_price_on_a_free_release_and_other_county_are_refused(release_payload, policy):
    with pytest.raises(QuotaDomainError) as e:
        parse_release(release_payload(buyback_price_per_unit="1.00", county_code="320623",
                                      township_code="320623100"), policy)
    assert set(e.value.reasons) == {"buyback_price_on_free_release", "county_not_served"}


def test_float_amounts_are_refused(release_payload, policy):
    with pytest.raises(QuotaDomainError) as e:
        parse_release(release_payload(amount=1.5), policy)
    assert e.value.reasons == ("amount_not_a_decimal_string",)


def test_credit_code_check_character_follows_gb32100():
    assert credit_code_problem("91350100M000100Y43") is None  # a published valid code
    assert credit_code_problem("91350100M000100Y44").reason == "credit_code_check_failed"
    assert credit_code_problem("91350100M000100Y4").reason == "credit_code_malformed"


def test_release_for_an_enterprise_not_known_to_have_left_is_held_then_verified(release_payload, policy, credit_code):
    r1 = parse_release(release_payload(release_id="R1"), policy)
    r2 = parse_release(release_payload(release_id="R2", asset="SO2", amount="2"), policy)
    other = parse_release(release_payload(release_id="R3", enterprise_credit_code=credit_code(2)), policy)
    departed: set[str] = set()
    decisions = [verify_release(r, departed, policy.verification) for r in (r1, r2, other)]
    assert all(d.status is ReleaseStatus.PENDING_VERIFICATION and d.reason == "exit_not_known" for d in decisions)

    # EnterpriseExited arrives for credit_code(1): exactly its held releases are let in.
    assert releases_verified_by(credit_code(1), [other, r2, r1]) == (r1, r2)
    departed.add(credit_code(1))
    assert verify_release(r1, departed, VerificationMode.HOLD).status is ReleaseStatus.ACCEPTED


def test_verification_mode_accept_and_reject(release_payload, policy):
    r = parse_release(release_payload(), policy)
    assert verify_release(r, set(), VerificationMode.ACCEPT).reason == "accepted_unverified"
    rejected = verify_release(r, set(), VerificationMode.REJECT)
    assert (rejected.status, rejected.reason) == (ReleaseStatus.REJECTED, "exit_not_known")


def test_upgrade_savings_need_no_exit(release_payload, policy):
    r = parse_release(release_payload(reason="upgrade_savings"), policy)
    assert verify_release(r, set(), VerificationMode.REJECT).status is ReleaseStatus.ACCEPTED
    assert releases_verified_by(r.enterprise_credit_code, [r]) == ()


def test_a_body_compares_by_value_and_digests_stored_before_still_match():
    """Bodies stored before digests were of values keep matching the same text; new ones match any text of the same
    values (amounts, areas, prices); another value never matches."""
    import hashlib
    import json

    from services.quota.application.intake import body_digest, same_body

    body = {"release_id": "H1", "asset": "COD", "amount": "2.5", "buyback_price_per_unit": "800",
            "lines": [{"asset": "LAND", "amount": "3"}], "area": "1.5"}
    legacy = hashlib.sha256(json.dumps(body, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()
    assert same_body(legacy, body)
    stored = body_digest(body)
    same = {**body, "amount": "2.5000", "buyback_price_per_unit": "800.00", "lines": [{"asset": "LAND", "amount": "3.0"}],
            "area": "1.50"}
    assert same_body(stored, same)
    for other in ({**body, "amount": "2.5001"}, {**body, "buyback_price_per_unit": "800.01"},
                  {**body, "lines": [{"asset": "LAND", "amount": "3.0001"}]}, {**body, "area": "1.51"},
                  {**body, "asset": "NOX"}):
        assert not same_body(stored, other), other
    assert not same_body(stored, {**body, "amount": "2,5"})  # unreadable: compared as text, refused later

"""Admission thresholds, exact to the fen and to 0.0001 亩.

Defaults: investment >= 250 万元 = 250,000,000 fen per 亩; tax >= 15 万元 = 15,000,000 fen per 亩.
"""
import pytest
from pydantic import ValidationError

from services.assessment.domain.admission import AdmissionPolicy, IndustryThresholds, ProjectApplication, check_admission

from .factories import MU, TONNE, code

POLICY = AdmissionPolicy()


def app(land=10 * MU, investment=2_500_000_000, tax=150_000_000, **kw):
    args = dict(
        id="PRJ-1", applicant_credit_code=code(1), park_id="P1", in_park_or_cluster=True, land=land,
        investment=investment, expected_yearly_tax=tax, energy_need=1000, industry_code="C3311",
        emission_needs={"COD": TONNE},
    )
    args.update(kw)
    return ProjectApplication(**args)


def codes(result):
    return [f.code for f in result.failures]


def test_exactly_at_both_thresholds_is_admitted():
    # 10 亩: 2,500 万元 = 2,500,000,000 fen and 150 万元 = 150,000,000 fen
    r = check_admission(app(), POLICY)
    assert r.admitted and r.failures == ()
    assert (r.investment_per_mu, r.investment_threshold_per_mu) == ("2500000.00", "2500000.00")
    assert (r.tax_per_mu, r.tax_threshold_per_mu) == ("150000.00", "150000.00")
    assert r.policy_hash == POLICY.content_hash()


def test_one_fen_below_investment():
    r = check_admission(app(investment=2_499_999_999), POLICY)
    assert not r.admitted and codes(r) == ["investment_per_mu_below_threshold"]
    f = r.failures[0]
    # 2,499,999,999 fen / 10 亩 = 249,999,999.9 fen per 亩 -> floored to 2,499,999.99 元
    assert (f.figure, f.threshold, f.unit) == ("2499999.99", "2500000.00", "元/亩")


def test_one_fen_above_is_admitted():
    assert check_admission(app(investment=2_500_000_001, tax=150_000_001), POLICY).admitted


def test_one_fen_below_tax():
    r = check_admission(app(tax=149_999_999), POLICY)
    assert codes(r) == ["tax_per_mu_below_threshold"]
    assert (r.failures[0].figure, r.failures[0].threshold) == ("149999.99", "150000.00")


def test_land_exact_to_a_ten_thousandth_of_a_mu():
    # 10.0001 亩 needs 250,000,000 x 10.0001 = 2,500,025,000 fen and 15,000,000 x 10.0001 = 150,001,500 fen
    land = 10 * MU + 1
    assert check_admission(app(land=land, investment=2_500_025_000, tax=150_001_500), POLICY).admitted
    r = check_admission(app(land=land, investment=2_500_024_999, tax=150_001_499), POLICY)
    assert codes(r) == ["investment_per_mu_below_threshold", "tax_per_mu_below_threshold"]
    # one unit of land less (10 亩) and the old money is enough again
    assert check_admission(app(land=land - 1, investment=2_500_000_000, tax=150_000_000), POLICY).admitted


def test_non_terminating_figure_is_floored_never_shown_as_reaching():
    # 3 亩, 749,999,999 fen -> 249,999,999.666.. fen per 亩 -> 2,499,999.99 元 (not rounded up to 2,500,000.00)
    r = check_admission(app(land=3 * MU, investment=749_999_999, tax=45_000_000), POLICY)
    assert codes(r) == ["investment_per_mu_below_threshold"]
    assert r.failures[0].figure == "2499999.99"
    assert check_admission(app(land=3 * MU, investment=750_000_000, tax=45_000_000), POLICY).admitted


def test_every_failed_rule_is_returned():
    r = check_admission(
        app(in_park_or_cluster=False, park_id=None, two_high=True, on_safety_or_env_list=True, investment=0, tax=0),
        POLICY,
    )
    assert codes(r) == [
        "not_in_park_or_cluster",
        "two_high_project",
        "applicant_on_safety_or_env_list",
        "investment_per_mu_below_threshold",
        "tax_per_mu_below_threshold",
    ]
    assert all(f.message for f in r.failures)


def test_industry_override_longest_prefix_wins():
    p = AdmissionPolicy(
        industry_overrides={
            "C26": IndustryThresholds(investment_fen_per_mu=400_000_000, tax_fen_per_mu=30_000_000),
            "C2614": IndustryThresholds(investment_fen_per_mu=300_000_000, tax_fen_per_mu=20_000_000),
        },
        refused_industry_prefixes=("C25",),
    )
    at_c2614 = app(industry_code="C2614", investment=3_000_000_000, tax=200_000_000)
    r = check_admission(at_c2614, p)
    assert r.admitted and r.override_prefix == "C2614"
    r = check_admission(app(industry_code="C2611", investment=3_000_000_000, tax=200_000_000), p)
    assert r.override_prefix == "C26" and codes(r) == ["investment_per_mu_below_threshold", "tax_per_mu_below_threshold"]
    assert r.investment_threshold_per_mu == "4000000.00"
    assert check_admission(app(), p).override_prefix is None
    assert codes(check_admission(app(industry_code="C2511"), p)) == ["industry_refused"]
    assert p.content_hash() != POLICY.content_hash()


def test_policy_switches():
    p = AdmissionPolicy(require_park_or_cluster=False, refuse_two_high=False, refuse_listed=False)
    r = check_admission(app(in_park_or_cluster=False, two_high=True, on_safety_or_env_list=True), p)
    assert r.admitted


@pytest.mark.parametrize(
    "kw", [{"land": 0}, {"land": -1}, {"investment": -1}, {"investment": 1.5}, {"two_high": 1}, {"id": ""},
           {"emission_needs": {"COD": -1}}, {"applicant_credit_code": "x"}],
)
def test_application_rejects(kw):
    with pytest.raises(ValueError):
        app(**kw)


def test_policy_rejects_bad_override_keys():
    with pytest.raises(ValidationError):
        AdmissionPolicy(industry_overrides={"c26x": IndustryThresholds(investment_fen_per_mu=1, tax_fen_per_mu=1)})

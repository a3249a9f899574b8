"""Industry thresholds and refused industries are looked up by GB/T 4754 prefix, whichever way the code and the
prefix are written: with the door letter ('C2614') or without it ('2614'), as the register takes both.

Override for C26 (chemicals): investment >= 400 万元 = 400,000,000 fen per 亩, tax >= 30 万元 = 30,000,000 fen.
"""
import pytest

from services.assessment.domain.admission import AdmissionPolicy, IndustryThresholds, ProjectApplication, check_admission

from .factories import MU, code

C26 = IndustryThresholds(investment_fen_per_mu=400_000_000, tax_fen_per_mu=30_000_000)


def app(industry_code: str, investment: int, tax: int = 300_000_000, land: int = 10 * MU) -> ProjectApplication:
    return ProjectApplication(id="PRJ-1", applicant_credit_code=code(1), park_id="P1", in_park_or_cluster=True,
                              land=land, investment=investment, expected_yearly_tax=tax, energy_need=0,
                              industry_code=industry_code)


def codes(result):
    return [f.code for f in result.failures]


@pytest.mark.parametrize("prefix", ["C26", "26"])
@pytest.mark.parametrize("industry_code", ["C2614", "2614"])
def test_the_industry_threshold_applies_whichever_way_the_code_is_written(prefix, industry_code):
    policy = AdmissionPolicy(industry_overrides={prefix: C26})
    at = check_admission(app(industry_code, 4_000_000_000), policy)  # 10 亩 x 400 万元 exactly
    assert (at.admitted, at.override_prefix, at.investment_threshold_per_mu) == (True, prefix, "4000000.00")
    below = check_admission(app(industry_code, 3_999_999_999), policy)  # one fen short
    assert codes(below) == ["investment_per_mu_below_threshold"]
    # what passes the county default (250 万元) is not enough for its industry
    default_ok = check_admission(app(industry_code, 2_500_000_000), policy)
    assert not default_ok.admitted and default_ok.override_prefix == prefix
    above = check_admission(app(industry_code, 4_000_000_001), policy)
    assert above.admitted


@pytest.mark.parametrize("industry_code", ["C2511", "2511"])
def test_a_refused_industry_is_refused_without_its_door_letter_too(industry_code):
    policy = AdmissionPolicy(refused_industry_prefixes=("C25",))
    assert codes(check_admission(app(industry_code, 4_000_000_000), policy)) == ["industry_refused"]
    letterless = AdmissionPolicy(refused_industry_prefixes=("25",))
    assert codes(check_admission(app(industry_code, 4_000_000_000), letterless)) == ["industry_refused"]


@pytest.mark.parametrize("industry_code, prefix, matches", [
    ("2614", "C", True),  # door C covers divisions 13-43
    ("2614", "B", False),
    ("C2614", "C25", False),
    ("2614", "C2615", False),
    ("C", "C26", False),  # a door alone is not one of its divisions
    ("4411", "C44", False),  # 44 is door D's
    ("D4411", "44", True),
])
def test_prefixes_of_other_industries_do_not_match(industry_code, prefix, matches):
    policy = AdmissionPolicy(industry_overrides={prefix: C26}, refused_industry_prefixes=(prefix,))
    r = check_admission(app(industry_code, 2_500_000_000, tax=150_000_000), policy)
    assert (r.override_prefix == prefix, "industry_refused" in codes(r)) == (matches, matches)


def test_the_most_specific_prefix_wins_whichever_way_written():
    finer = IndustryThresholds(investment_fen_per_mu=300_000_000, tax_fen_per_mu=20_000_000)
    policy = AdmissionPolicy(industry_overrides={"C26": C26, "2614": finer})
    assert check_admission(app("C2614", 3_000_000_000, tax=200_000_000), policy).override_prefix == "2614"
    assert check_admission(app("C2611", 3_000_000_000, tax=200_000_000), policy).override_prefix == "C26"


@pytest.mark.parametrize("bad", ["C 2614", "C26-14", "化工", "Z2614", "C２６１４"])
def test_an_application_with_no_industry_code_the_register_would_take_is_refused(bad):
    with pytest.raises(ValueError, match="GB/T 4754"):
        app(bad, 4_000_000_000)

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.assessment.domain.policy import (
    AssessmentPolicy,
    BenchmarkUnavailable,
    ClassBand,
    ClassRule,
    GroupPolicy,
    RelativeBenchmark,
    WeightedTerm,
    default_policy,
    resolve_benchmarks,
)

from .factories import COUNTY, YEAR


def _with_group(policy: AssessmentPolicy, name: str, **changes) -> AssessmentPolicy:
    groups = tuple(g.model_copy(update=changes) if g.name == name else g for g in policy.groups)
    return AssessmentPolicy.model_validate({**policy.model_dump(), "groups": [g.model_dump() for g in groups]})


def test_default_weights():
    p = default_policy(COUNTY, YEAR)
    above = {t.indicator: t.weight for t in p.group("规上").terms}
    below = {t.indicator: t.weight for t in p.group("规下").terms}
    assert above == {
        "tax_per_mu": 40, "revenue_per_mu": 25, "value_added_per_energy": 15,
        "value_added_per_emission": 10, "labour_productivity": 5, "rnd_ratio": 5,
    }
    assert below == {"tax_per_mu": 60, "tax_per_electricity": 40}
    assert p.indicator("rnd_ratio").unit == "%"
    assert p.indicator("tax_per_mu").unit == "万元/亩"
    assert p.indicator("tax_per_electricity").unit == "万元/万kWh"


def test_weights_must_sum_to_100():
    p = default_policy(COUNTY, YEAR)
    terms = list(p.group("规下").terms)
    terms[0] = terms[0].model_copy(update={"weight": Decimal("59.99")})
    with pytest.raises(ValidationError, match="not 100"):
        GroupPolicy(name="规下", terms=tuple(terms))


def test_floats_are_refused():
    with pytest.raises(ValidationError, match="floats"):
        WeightedTerm(indicator="tax_per_mu", weight=0.5, benchmark={"kind": "fixed", "value": "1"})


@pytest.mark.parametrize(
    "bands",
    [
        [("A", "0.2"), ("B", "0.6"), ("D", "0.95")],  # does not reach 1
        [("A", "0.6"), ("B", "0.2"), ("D", "1")],  # falls
        [("A", "0"), ("D", "1")],  # empty first band
        [("A", "0.5"), ("A", "1")],  # repeated label
    ],
)
def test_bad_rank_rules(bands):
    with pytest.raises(ValidationError):
        ClassRule(mode="rank", bands=tuple(ClassBand(label=l, cumulative_share=Decimal(s)) for l, s in bands))


def test_threshold_rule_needs_open_last_band():
    ok = ClassRule(mode="threshold", bands=(ClassBand(label="A", min_score=Decimal(90)), ClassBand(label="B")))
    assert ok.labels == ("A", "B")
    with pytest.raises(ValidationError):
        ClassRule(mode="threshold", bands=(ClassBand(label="A", min_score=Decimal(90)), ClassBand(label="B", min_score=Decimal(1))))
    with pytest.raises(ValidationError):
        ClassRule(mode="threshold", bands=(ClassBand(label="A", min_score=Decimal(50)), ClassBand(label="B", min_score=Decimal(60)), ClassBand(label="C")))


def test_policy_cross_checks():
    data = default_policy(COUNTY, YEAR).model_dump()
    with pytest.raises(ValidationError, match="exclusion label"):
        AssessmentPolicy.model_validate({**data, "exclusions": [{"flag": "utility", "label": "A"}]})
    with pytest.raises(ValidationError, match="unknown classes"):
        AssessmentPolicy.model_validate({**data, "treatments": {"E": {}}})
    with pytest.raises(ValidationError, match="groups"):
        AssessmentPolicy.model_validate({**data, "groups": data["groups"][:1]})


def test_hash_names_the_exact_version():
    p1 = default_policy(COUNTY, YEAR)
    assert p1.content_hash() == default_policy(COUNTY, YEAR).content_hash()
    assert len(p1.content_hash()) == 64
    assert default_policy(COUNTY, YEAR, version=2).content_hash() != p1.content_hash()
    assert default_policy(COUNTY, YEAR + 1).content_hash() != p1.content_hash()
    assert default_policy("320681", YEAR).content_hash() != p1.content_hash()
    capped = _with_group(p1, "规上", cap_factor=Decimal("1.5"))
    assert capped.content_hash() != p1.content_hash()


def test_hash_ignores_decimal_spelling_and_survives_json():
    p1 = default_policy(COUNTY, YEAR)
    spelled = _with_group(p1, "规上", cap_factor=Decimal("1.20"))  # same number as 1.2
    assert spelled.content_hash() == p1.content_hash()
    again = AssessmentPolicy.model_validate_json(p1.model_dump_json())
    assert again == p1 and again.content_hash() == p1.content_hash()


def test_resolve_fixed_and_relative_benchmarks():
    p = default_policy(COUNTY, YEAR)
    terms = tuple(
        t.model_copy(update={"benchmark": RelativeBenchmark(factor=Decimal(2))}) if t.indicator == "tax_per_mu" else t
        for t in p.group("规下").terms
    )
    p2 = _with_group(p, "规下", terms=terms)
    # 2 x last year's 规下 average of 4.12345 万元/亩 = 8.2469
    b = resolve_benchmarks(p2, {"规下": {"tax_per_mu": Decimal("4.12345")}})
    assert b["规下"]["tax_per_mu"] == Decimal("8.2469")
    assert b["规下"]["tax_per_electricity"] == Decimal("0.3")
    assert b["规上"]["tax_per_mu"] == Decimal("30")
    with pytest.raises(BenchmarkUnavailable) as e:
        resolve_benchmarks(p2, {"规上": {"tax_per_mu": Decimal(5)}})
    assert (e.value.group, e.value.indicator) == ("规下", "tax_per_mu")
    with pytest.raises(BenchmarkUnavailable):
        resolve_benchmarks(p2, {"规下": {"tax_per_mu": Decimal(0)}})


def test_edge_units():
    from shared.amounts import AmountError

    from services.assessment.domain import units

    assert units.wan_yuan_to_fen("12.345678") == 12_345_678
    assert units.fen_to_wan_yuan(12_345_678) == "12.345678"
    assert units.yuan_to_fen("2500000") == 250_000_000
    assert units.fen_to_yuan(250_000_001) == "2500000.01"
    assert units.wan_kwh_to_kwh("3.5") == 35_000 and units.kwh_to_wan_kwh(35_000) == "3.5000"
    assert units.mu_to_units("10.0001") == 100_001 and units.units_to_mu(100_001) == "10.0001"
    assert units.tce_to_units("1.5") == 1500 and units.tonnes_to_units("0.0001") == 1
    with pytest.raises(AmountError):
        units.wan_yuan_to_fen("1.0000001")  # below a fen: never rounded
    assert units.yuan_to_fen("-3", allow_negative=True) == -300


def test_points_have_at_most_four_decimals():
    """The score is the 4-decimal terms plus the points, exactly: a point figure finer than that is refused."""
    from services.assessment.domain.policy import BonusPenaltyItem

    assert BonusPenaltyItem(code="x", flag="x", points=Decimal("-1.23450")).points == Decimal("-1.2345")
    with pytest.raises(ValidationError, match="at most 4 decimals"):
        BonusPenaltyItem(code="x", flag="x", points=Decimal("0.00005"))

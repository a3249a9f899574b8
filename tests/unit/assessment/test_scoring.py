"""Scores under the default policy, computed by hand.

Default 规上 terms (weight, benchmark): tax_per_mu (40, 30 万元/亩), revenue_per_mu (25, 600 万元/亩),
value_added_per_energy (15, 3 万元/tce), value_added_per_emission (10, 200 万元/t, missing -> group
average, zero emissions -> full term), labour_productivity (5, 30 万元/人), rnd_ratio (5, 3 %); cap 1.2 x
weight. 规下: tax_per_mu (60, 10), tax_per_electricity (40, 0.3 万元/万kWh).
"""
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.exact import quantize
from services.assessment.domain.policy import AssessmentPolicy, default_policy, resolve_benchmarks
from services.assessment.domain.scoring import (
    MISSING_GROUP_AVERAGE,
    MISSING_GROUP_EMPTY,
    MISSING_ZERO,
    ZERO_DENOMINATOR_FULL,
    group_of,
    score,
)

from .factories import COUNTY, MU, TONNE, WAN, WAN_KWH, YEAR, big_figures, enterprise, figures

POLICY = default_policy(COUNTY, YEAR)
BENCH = resolve_benchmarks(POLICY)


def terms(result):
    return {t.indicator: t.capped_term for t in result.terms}


def test_worked_example_above_scale():
    r = score(enterprise(1), big_figures(1), POLICY, BENCH, group_average_terms={})
    assert r.group == "规上"
    # tax/亩 = 600 万元 / 50 亩 = 12          -> 40 x 12 / 30      = 16
    # revenue/亩 = 30000 / 50 = 600          -> 25 x 600 / 600    = 25
    # VA/energy = 6000 万元 / 2000 tce = 3   -> 15 x 3 / 3        = 15
    # VA/emission = 6000 / (10+1+5+4 t) = 300 -> 10 x 300 / 200   = 15, capped at 1.2 x 10 = 12
    # labour = 6000 / 250 persons = 24       -> 5 x 24 / 30       = 4
    # R&D = 900 / 30000 x 100 = 3 %          -> 5 x 3 / 3         = 5
    # total = 16 + 25 + 15 + 12 + 4 + 5 = 77
    assert terms(r) == {
        "tax_per_mu": Decimal(16), "revenue_per_mu": Decimal(25), "value_added_per_energy": Decimal(15),
        "value_added_per_emission": Decimal(12), "labour_productivity": Decimal(4), "rnd_ratio": Decimal(5),
    }
    em = r.term("value_added_per_emission")
    assert (em.value, em.raw_term, em.capped_term, em.benchmark, em.weight) == (
        Decimal(300), Decimal(15), Decimal(12), Decimal(200), Decimal(10)
    )
    assert r.total == Decimal("77.0000")
    assert str(r.total) == "77.0000"


def test_worked_example_below_scale_with_thirds():
    f = figures(2, land=2 * MU, tax=5 * WAN, electricity=25 * WAN_KWH, revenue=100 * WAN)
    r = score(enterprise(2), f, POLICY, BENCH)
    assert r.group == "规下"  # 100 万元 < 2000 万元
    # tax/亩 = 5 / 2 = 2.5 -> 60 x 2.5 / 10 = 15
    # tax/万kWh = 5 / 25 = 0.2 -> 40 x 0.2 / 0.3 = 80/3 = 26.6666.. -> 26.6667
    # total = 15 + 80/3 = 125/3 = 41.6666.. -> 41.6667
    assert terms(r) == {"tax_per_mu": Decimal(15), "tax_per_electricity": Decimal("26.6667")}
    assert r.total == Decimal("41.6667")
    assert r.exact_total == Fraction(125, 3)


def test_total_is_the_sum_of_the_published_terms_not_the_exact_sum_rounded():
    # tax/亩 = 1 万元 / 4 亩 = 0.25 -> 40 x 0.25 / 30 = 1/3 (published 0.3333)
    # labour = 2 万元 / 1 person = 2 -> 5 x 2 / 30 = 1/3 (published 0.3333)
    # VA/emission missing, no group value -> 0; others missing -> 0
    # total 0.3333 + 0.3333 = 0.6666, what the breakdown adds up to (the exact sum 2/3 would round to 0.6667)
    f = figures(3, land=4 * MU, tax=1 * WAN, value_added=2 * WAN, employees=1)
    r = score(enterprise(3, scale="规上"), f, POLICY, BENCH, group_average_terms={})
    assert r.term("tax_per_mu").capped_term == Decimal("0.3333")
    assert r.term("labour_productivity").capped_term == Decimal("0.3333")
    assert r.total == Decimal("0.6666") == sum(t.capped_term for t in r.terms)
    assert r.exact_total == Fraction(2, 3)


def test_half_up_rounding_of_the_total():
    # 规下, the smallest figures there are:
    # tax = 1 fen = 0.000001 万元, land = 0.0001 亩 (1 unit) -> 0.01 万元/亩 -> 60 x 0.01 / 10 = 0.06
    # plus tax/万kWh = 0.000001 / (1 kWh = 0.0001 万kWh) = 0.01 -> 40 x 0.01 / 0.3 = 4/3 = 1.3333..
    # total = 0.06 + 1.33333.. = 1.39333.. -> 1.3933
    f = figures(4, land=1, tax=1, electricity=1)
    r = score(enterprise(4), f, POLICY, BENCH)
    assert r.total == Decimal("1.3933")
    assert quantize(Fraction(1, 20000)) == Decimal("0.0001")  # exactly half -> up
    assert quantize(Fraction(-1, 20000)) == Decimal("-0.0001")  # halves away from zero


def test_bonus_and_penalty_lines():
    e = enterprise(5, safety_hazard=True, extra_flags={"high_tech"})
    r = score(e, big_figures(5), POLICY, BENCH, group_average_terms={})
    # 77 - 5 (safety_hazard) + 3 (high_tech) = 75
    assert {(a.code, a.points) for a in r.adjustments} == {("safety_hazard", Decimal(-5)), ("high_tech", Decimal(3))}
    assert r.total == Decimal(75)


def test_negative_value_added_scores_zero_not_below():
    r = score(enterprise(6), big_figures(6, value_added=-600 * WAN), POLICY, BENCH, group_average_terms={})
    for ind in ("value_added_per_energy", "value_added_per_emission", "labour_productivity"):
        t = r.term(ind)
        assert t.raw_term < 0 and t.capped_term == 0
    # 16 + 25 + 0 + 0 + 0 + 5 = 46
    assert r.total == Decimal(46)


def test_zero_emissions_earn_the_full_term():
    f = big_figures(7, emissions={"COD": 0, "SO2": 0})
    r = score(enterprise(7), f, POLICY, BENCH, group_average_terms={})
    t = r.term("value_added_per_emission")
    assert (t.status, t.value, t.capped_term) == (ZERO_DENOMINATOR_FULL, None, Decimal(12))


def test_a_loss_without_emissions_scores_zero_not_the_group_average():
    # value added -600 万元 over zero emissions under 'full_term': a measured loss, floored at 0 like the same loss
    # with emissions (test above), not the missing rule's group average (it used to get the 7 offered here)
    f = big_figures(7, emissions={"COD": 0}, value_added=-600 * WAN)
    r = score(enterprise(7), f, POLICY, BENCH, group_average_terms={"value_added_per_emission": Fraction(7)})
    t = r.term("value_added_per_emission")
    assert (t.status, t.value, t.raw_term, t.capped_term) == ("zero_denominator_negative", None, 0, 0)
    assert r.total == Decimal(46)  # as test_negative_value_added_scores_zero_not_below


def test_zero_over_zero_is_missing():
    f = big_figures(7, emissions={"COD": 0}, value_added=0)
    r = score(enterprise(7), f, POLICY, BENCH, group_average_terms={})
    assert r.term("value_added_per_emission").status == MISSING_GROUP_EMPTY


def test_only_weighted_pollutants_count():
    # VOCs is not in the default emission weights: the figure is missing, not zero
    f = big_figures(8, emissions={"VOCs": 5 * TONNE})
    r = score(enterprise(8), f, POLICY, BENCH, group_average_terms={"value_added_per_emission": Fraction(7)})
    t = r.term("value_added_per_emission")
    assert (t.status, t.capped_term) == (MISSING_GROUP_AVERAGE, Decimal(7))
    # 77 - 12 + 7 = 72
    assert r.total == Decimal(72)


def test_missing_values_zero_or_group_average():
    f = big_figures(9, energy=None, emissions=None)
    with pytest.raises(ValueError, match="group_average_terms"):
        score(enterprise(9), f, POLICY, BENCH)
    r = score(enterprise(9), f, POLICY, BENCH, group_average_terms={"value_added_per_emission": Fraction(20, 3)})
    assert r.term("value_added_per_energy").status == MISSING_ZERO
    assert r.term("value_added_per_emission").capped_term == Decimal("6.6667")
    # 16 + 25 + 0 + 20/3 + 4 + 5 = 56.6666.. -> 56.6667
    assert r.total == Decimal("56.6667")


def test_land_zero_is_missing():
    f = figures(10, land=0, tax=5 * WAN, electricity=25 * WAN_KWH)
    r = score(enterprise(10), f, POLICY, BENCH)
    assert r.term("tax_per_mu").status == MISSING_ZERO
    assert r.total == Decimal("26.6667")


def test_no_figures_at_all():
    r = score(enterprise(11), None, POLICY, BENCH)
    assert r.group == "规下" and r.total == 0


def test_group_rule():
    e = enterprise(12)
    assert group_of(e, figures(12, revenue=2000 * WAN), POLICY) == "规上"  # at the threshold
    assert group_of(e, figures(12, revenue=2000 * WAN - 1), POLICY) == "规下"  # one fen below
    assert group_of(e, figures(12), POLICY) == "规下"  # no revenue figure
    assert group_of(enterprise(12, scale="规上"), figures(12), POLICY) == "规上"  # the bureau's word wins


def test_uncapped_policy():
    data = POLICY.model_dump()
    for g in data["groups"]:
        g["cap_factor"] = None
    p = AssessmentPolicy.model_validate(data)
    r = score(enterprise(1), big_figures(1), p, resolve_benchmarks(p), group_average_terms={})
    assert r.term("value_added_per_emission").capped_term == Decimal(15)
    assert r.total == Decimal(80)


def test_indicators_of_another_enterprise_are_refused():
    with pytest.raises(ValueError):
        score(enterprise(1), big_figures(2), POLICY, BENCH, group_average_terms={})


_amount = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12))


@settings(max_examples=300, deadline=None)
@given(
    land=_amount, tax=st.integers(min_value=0, max_value=10**12), extra=st.integers(min_value=1, max_value=10**12),
    revenue=_amount, value_added=st.one_of(st.none(), st.integers(min_value=-10**12, max_value=10**12)),
    energy=_amount, electricity=_amount, employees=st.one_of(st.none(), st.integers(0, 10**5)), rnd=_amount,
    cod=_amount, flags=st.sets(st.sampled_from(["safety_hazard", "high_tech"])),
)
def test_more_tax_per_mu_never_lowers_the_score(land, tax, extra, revenue, value_added, energy, electricity, employees, rnd, cod, flags):
    e = enterprise(20, safety_hazard="safety_hazard" in flags, extra_flags=flags - {"safety_hazard"})
    common = dict(land=land, revenue=revenue, value_added=value_added, energy=energy, electricity=electricity,
                  employees=employees, rnd=rnd, emissions=None if cod is None else {"COD": cod})
    avg = {"value_added_per_emission": Fraction(5)}
    lower = score(e, figures(20, tax=tax, **common), POLICY, BENCH, group_average_terms=avg)
    higher = score(e, figures(20, tax=tax + extra, **common), POLICY, BENCH, group_average_terms=avg)
    assert higher.group == lower.group
    assert higher.exact_total >= lower.exact_total
    assert higher.total >= lower.total


@settings(max_examples=300, deadline=None)
@given(
    land=_amount, tax=_amount, revenue=_amount,
    value_added=st.one_of(st.none(), st.integers(min_value=-10**12, max_value=10**12)), energy=_amount,
    electricity=_amount, employees=st.one_of(st.none(), st.integers(0, 10**5)), rnd=_amount, cod=_amount,
    flags=st.sets(st.sampled_from(["safety_hazard", "high_tech"])),
)
def test_a_breakdown_recomputes_from_what_it_shows(land, tax, revenue, value_added, energy, electricity, employees,
                                                   rnd, cod, flags):
    """Each term from the value, weight and benchmark shown (value 8 decimals, term 4), and the score as the sum
    of the terms shown plus the points, whichever path scored it."""
    e = enterprise(21, safety_hazard="safety_hazard" in flags, extra_flags=flags - {"safety_hazard"})
    f = figures(21, land=land, tax=tax, revenue=revenue, value_added=value_added, energy=energy,
                electricity=electricity, employees=employees, rnd=rnd, emissions=None if cod is None else {"COD": cod})
    r = score(e, f, POLICY, BENCH, group_average_terms={"value_added_per_emission": Fraction(5)})
    for t in r.terms:
        if t.value is not None:
            assert t.value == quantize(t.value, 8)
            assert t.raw_term == quantize(t.weight * t.value / t.benchmark)
    assert r.total == sum((t.capped_term for t in r.terms), Decimal(0)) + sum((a.points for a in r.adjustments), Decimal(0))


def test_a_value_is_shown_to_8_decimals_and_its_term_taken_from_it():
    """2,000,007 元 of tax on 50 亩 is 4.000014 万元/亩, shown so: 40 x 4.000014 / 30 = 5.3333520 -> 5.3334.
    1 万元 on 9 亩 is 0.11111111 (8 decimals) -> 60 x 0.11111111 / 10 = 0.66666666 -> 0.6667."""
    r = score(enterprise(22), big_figures(22, tax=2_000_007 * 100), POLICY, BENCH, group_average_terms={})
    t = r.term("tax_per_mu")
    assert (t.value, t.raw_term, t.capped_term) == (Decimal("4.000014"), Decimal("5.3334"), Decimal("5.3334"))
    f = figures(22, land=9 * MU, tax=1 * WAN, electricity=200 * WAN_KWH, revenue=50 * WAN)
    r = score(enterprise(22, extra_flags={"high_tech"}), f, POLICY, BENCH)
    t = r.term("tax_per_mu")
    assert (t.value, t.raw_term, t.capped_term) == (Decimal("0.11111111"), Decimal("0.6667"), Decimal("0.6667"))
    assert r.term("tax_per_electricity").capped_term == Decimal("0.6667")
    assert r.total == Decimal("4.3334")  # 0.6667 + 0.6667 + 3 (high_tech); the exact sum would give 4.3333

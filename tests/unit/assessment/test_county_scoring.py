"""The integer scoring of a county run (county_scoring) against the exact Fraction reference (scoring.py, what
run_evaluation(reference=True) uses): random policies (weights, benchmarks, caps, multipliers, emission
weights, missing-value and zero-denominator rules, bonus items, rank or threshold classes) and random
counties (missing fields, zero and negative figures, enterprises without figures, exclusions) must give the
same run: every published figure, the breakdown JSON, class, rank, averages and content hash."""
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.assessment.domain.canonical import canonical_json, decimal_text, to_plain
from services.assessment.domain.county_scoring import GroupAverage, PackedScore, Undecided, round_half_up, text4
from services.assessment.domain.enterprise import Enterprise
from services.assessment.domain.evaluation import enterprise_plain, result_canonical_json, run_evaluation
from services.assessment.domain.exact import quantize
from services.assessment.domain.policy import AssessmentPolicy, default_policy

from .factories import COUNTY, TOWNSHIP, YEAR, code, enterprise, figures

BASE = default_policy(COUNTY, YEAR).model_dump()
POLLUTANTS = ("COD", "NH3-N", "SO2", "NOx", "VOCs")
decimals = st.builds(lambda n, places: Decimal(n).scaleb(-places), st.integers(1, 10**6), st.integers(0, 4))


@st.composite
def policies(draw) -> AssessmentPolicy:
    data = AssessmentPolicy.model_validate(BASE).model_dump()  # a fresh copy to vary
    for ind in data["indicators"]:
        ind["multiplier"] = draw(st.sampled_from([Decimal(1), Decimal(100), Decimal("0.5"), Decimal("3")]))
        ind["on_zero_denominator"] = draw(st.sampled_from(["missing", "full_term"]))
    for g in data["groups"]:
        cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=len(g["terms"]) - 1, max_size=len(g["terms"]) - 1,
                                    unique=True)))
        weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100])]
        for t, w in zip(g["terms"], weights):
            t["weight"] = Decimal(w)
            t["benchmark"] = {"kind": "fixed", "value": draw(decimals)}
            t["missing"] = draw(st.sampled_from(["zero", "group_average"]))
        g["cap_factor"] = draw(st.sampled_from([None, Decimal(1), Decimal("1.2"), Decimal("1.3333"), Decimal(2)]))
    chosen = draw(st.lists(st.sampled_from(POLLUTANTS), min_size=1, max_size=4, unique=True))
    data["emission_weights"] = {p: draw(st.sampled_from([Decimal(1), Decimal("0.5"), Decimal("2.25"), Decimal("1.3333")]))
                                for p in chosen}
    data["bonus_penalty"] = [*data["bonus_penalty"], {"code": "odd", "flag": "high_tech", "points": Decimal("-1.2345")}]
    if draw(st.booleans()):
        data["class_rule"] = {"mode": "threshold", "bands": [{"label": "A", "min_score": Decimal(80)},
                                                               {"label": "B", "min_score": Decimal("60.5")},
                                                               {"label": "C", "min_score": Decimal(30)}, {"label": "D"}]}
    return AssessmentPolicy.model_validate(data)


figure = st.one_of(st.none(), st.just(0), st.integers(0, 10**4), st.integers(0, 10**12))


@st.composite
def counties(draw):
    n = draw(st.integers(1, 25))
    enterprises, indicators = [], []
    for i in range(1, n + 1):
        flags = draw(st.sets(st.sampled_from(["safety_hazard", "utility", "ecological_control_zone", "in_park"])))
        extra = draw(st.sets(st.sampled_from(["high_tech", "specialized_sme"])))
        name = draw(st.sampled_from([f"企业{i}", f'"quoted" \\ {i}', f"tab\t{i}", f"\x01{i}\u2028", f"😀{i}"]))
        enterprises.append(enterprise(i, name=name, in_park="in_park" in flags, safety_hazard="safety_hazard" in flags,
                                      utility="utility" in flags, ecological_control_zone="ecological_control_zone" in flags,
                                      extra_flags=frozenset(extra), scale=draw(st.sampled_from([None, None, "规上", "规下"]))))
        if draw(st.integers(0, 9)) == 0:
            continue  # no figures this year
        em = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(POLLUTANTS), st.integers(0, 10**6), max_size=3)))
        indicators.append(figures(
            i, land=draw(figure), tax=draw(figure), revenue=draw(st.one_of(figure, st.just(3 * 10**9))),
            value_added=draw(st.one_of(figure, st.integers(-10**9, 0))), energy=draw(figure),
            electricity=draw(figure), emissions=em, rnd=draw(figure), employees=draw(st.one_of(st.none(), st.integers(0, 500)))))
    return enterprises, indicators


def assert_same_run(fast, ref):
    assert fast.result_json == ref.result_json
    assert (fast.content_hash, fast.inputs_hash, fast.averages) == (ref.content_hash, ref.inputs_hash, ref.averages)
    for f, r in zip(fast.results, ref.results):
        assert (f.class_label, f.rank, f.score_rank, f.recommendation) == (r.class_label, r.rank, r.score_rank, r.recommendation)
        if r.score is None:
            assert f.score is None
            continue
        assert isinstance(f.score, PackedScore)
        assert f.score.result() == r.score  # every published figure of every term, adjustments, total
        assert f.score.exact_total == r.score.exact_total
        assert [t.exact_term for t in f.score.terms] == [t.exact_term for t in r.score.terms]
        assert f.score.to_plain() == r.score.to_plain()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), counties())
def test_integer_run_equals_the_fraction_reference(policy, county):
    enterprises, indicators = county
    fast = run_evaluation(COUNTY, YEAR, enterprises, indicators, policy)
    ref = run_evaluation(COUNTY, YEAR, enterprises, indicators, policy, reference=True)
    assert_same_run(fast, ref)
    for r in fast.results:  # the breakdown as stored is canonical_json of the result, whichever way it was made
        assert result_canonical_json(r) == canonical_json(r.to_plain())


def test_a_group_average_is_taken_and_published_like_the_reference():
    policy = default_policy(COUNTY, YEAR)
    enterprises = [enterprise(i) for i in range(1, 5)]
    indicators = [figures(i, land=10**4 * i, tax=10**6 * (i + 2), revenue=3 * 10**9, value_added=10**8 + i,
                          energy=3000 * i, employees=7 * i, rnd=10**5 * i,
                          emissions=None if i == 2 else {"COD": 10**3 * (i + 5)}) for i in range(1, 5)]
    fast = run_evaluation(COUNTY, YEAR, enterprises, indicators, policy)
    assert fast.result(code(2)).score.term("value_added_per_emission").status == "missing_group_average"
    assert_same_run(fast, run_evaluation(COUNTY, YEAR, enterprises, indicators, policy, reference=True))


def test_a_loss_without_emissions_is_floored_in_both_paths_and_counts_toward_the_average():
    """Two loss-making 规上 enterprises, one with 1 t of COD and one with none: both score 0 on value added per
    emission (the second used to take the group average, 6, under the default 'full_term' and 'group_average'
    rules); a third without emission figures takes the average of the three measured terms, (12 + 0 + 0) / 3."""
    policy = default_policy(COUNTY, YEAR)
    big = dict(land=50 * 10**4, tax=600 * 10**6, revenue=30000 * 10**6, value_added=6000 * 10**6, energy=2000 * 10**3,
               employees=250, rnd=900 * 10**6)
    enterprises = [enterprise(i) for i in range(1, 5)]
    indicators = [figures(1, emissions={"COD": 10 * 10**4}, **big),
                  figures(2, emissions={"COD": 0}, **(big | {"value_added": -100 * 10**6})),
                  figures(3, emissions={"COD": 10**4}, **(big | {"value_added": -100 * 10**6})),
                  figures(4, **big)]
    fast = run_evaluation(COUNTY, YEAR, enterprises, indicators, policy)
    assert_same_run(fast, run_evaluation(COUNTY, YEAR, enterprises, indicators, policy, reference=True))
    terms = {n: fast.result(code(n)).score.term("value_added_per_emission") for n in range(1, 5)}
    assert (terms[2].status, terms[2].capped_term) == ("zero_denominator_negative", 0)
    assert terms[2].capped_term == terms[3].capped_term == 0
    assert fast.result(code(2)).score.total == fast.result(code(3)).score.total == Decimal(46)
    assert (terms[4].status, terms[4].capped_term) == ("missing_group_average", Decimal(4))


def test_a_group_average_too_close_to_a_boundary_is_undecided():
    # 0.00005 - 10^-40: the fixed scale of 10^-30 cannot tell whether it rounds to 0 or 0.0001
    with pytest.raises(Undecided):
        GroupAverage.of([(5 * 10**35 - 1, 10**40)])
    exact_half = GroupAverage.of([(5 * 10**35, 10**40)])  # exactly 0.00005: half up, decided
    assert exact_half.published == 1 and exact_half.exact == Fraction(1, 20000)


def test_an_undecided_run_is_scored_by_the_reference(monkeypatch):
    enterprises = [enterprise(1), enterprise(2)]
    indicators = [figures(1, land=10**4, tax=10**6), figures(2, land=10**4, tax=3 * 10**6)]
    policy = default_policy(COUNTY, YEAR)
    expected = run_evaluation(COUNTY, YEAR, enterprises, indicators, policy, reference=True)

    def undecided(*_a, **_k):
        raise Undecided("test")

    monkeypatch.setattr("services.assessment.domain.evaluation.score_county", undecided)
    run = run_evaluation(COUNTY, YEAR, enterprises, indicators, policy)
    assert run.content_hash == expected.content_hash
    assert not any(isinstance(r.score, PackedScore) for r in run.results)


@given(st.integers(-10**40, 10**40))
def test_text4_is_the_canonical_text_of_a_published_figure(q):
    assert text4(q) == decimal_text(Decimal(q).scaleb(-4))


@given(st.integers(-10**30, 10**30), st.integers(1, 10**30))
def test_round_half_up_is_quantize(n, d):
    assert Decimal(round_half_up(n, d)).scaleb(-4) == quantize(Fraction(n, d))


def test_enterprise_plain_is_to_plain():
    """... but for the flag added after runs were first hashed (large_environmental_impact), written only when set:
    an enterprise without it hashes as it did before the flag existed."""
    def hashed(e: Enterprise) -> dict:
        d = to_plain(e)
        if not d["large_environmental_impact"]:
            del d["large_environmental_impact"]
        return d

    e = Enterprise(credit_code=code(3), name="某 \"厂\"", township_code=TOWNSHIP, in_park=True, industry_code="C3311",
                   park_id="P-1", safety_hazard=True, extra_flags=frozenset({"zeta", "alpha"}), scale="规下")
    assert enterprise_plain(e) == hashed(e) and enterprise_plain(enterprise(4)) == hashed(enterprise(4))
    assert "large_environmental_impact" not in enterprise_plain(e)
    flagged = enterprise(5, large_environmental_impact=True)
    assert enterprise_plain(flagged) == to_plain(flagged) and enterprise_plain(flagged)["large_environmental_impact"]


@settings(max_examples=500)
@given(st.one_of(st.integers(-10**14, 10**14), st.integers(-10**32, 10**32), st.sampled_from([0, 1, -1, 10**28, -10**28])))
def test_plain4_is_the_decimal_total_as_published(q):
    from services.assessment.domain.county_scoring import _decimal4, plain4

    assert plain4(q) == format(_decimal4(q), "f")  # evaluations.plain_decimal of PackedScore.total


@given(st.integers(-10**40, 10**40))
def test_text8_is_the_canonical_text_of_a_shown_value(q):
    from services.assessment.domain.county_scoring import text8

    assert text8(q) == decimal_text(Decimal(q).scaleb(-8))

import random
from decimal import Decimal

import pytest

from services.assessment.domain.disposition import Disposition
from services.assessment.domain.policy import AssessmentPolicy, BenchmarkUnavailable, RelativeBenchmark, default_policy
from services.assessment.domain.scoring import MISSING_GROUP_AVERAGE

from .factories import COUNTY, MU, TONNE, WAN, WAN_KWH, YEAR, big_figures, code, enterprise, figures

POLICY = default_policy(COUNTY, YEAR)


def scenario():
    enterprises = [
        enterprise(1),
        enterprise(2),
        enterprise(3),
        enterprise(4, utility=True),
        enterprise(5),
        enterprise(6, under_two_years=True, ecological_control_zone=True),
    ]
    indicators = [
        big_figures(1),  # 77, see test_scoring
        big_figures(2, emissions=None),  # emissions missing -> group average term
        # tax 300 万元 -> tax/亩 6 -> 40 x 6 / 30 = 8; emissions 40 t -> VA/t 150 -> 10 x 150 / 200 = 7.5
        # total 8 + 25 + 15 + 7.5 + 4 + 5 = 64.5
        big_figures(3, tax=300 * WAN, emissions={"COD": 40 * TONNE}),
        big_figures(4, tax=10**6 * WAN),  # a utility: not ranked, whatever it pays
        figures(5, land=2 * MU, tax=5 * WAN, electricity=25 * WAN_KWH),  # 规下, 41.6667 (test_scoring)
    ]
    return enterprises, indicators


def run(policy=POLICY, last_year=None, shuffle_seed=None):
    from services.assessment.domain.evaluation import run_evaluation

    enterprises, indicators = scenario()
    if shuffle_seed is not None:
        rnd = random.Random(shuffle_seed)
        rnd.shuffle(enterprises)
        rnd.shuffle(indicators)
    return run_evaluation(COUNTY, YEAR, enterprises, indicators, policy, last_year)


def test_scores_classes_and_ranks():
    r = run()
    assert [x.credit_code for x in r.results] == sorted(code(i) for i in range(1, 7))
    e1, e2, e3, e4, e5, e6 = (r.result(code(i)) for i in range(1, 7))
    # group average of VA/emission among 规上 members that measured it: (12 + 7.5) / 2 = 9.75
    # e2 = 77 - 12 + 9.75 = 74.75
    t = e2.score.term("value_added_per_emission")
    assert (t.status, t.capped_term) == (MISSING_GROUP_AVERAGE, Decimal("9.75"))
    assert [e.score.total for e in (e1, e2, e3)] == [Decimal(77), Decimal("74.75"), Decimal("64.5")]
    # 3 in 规上: A to ceil(0.6)=1, B to ceil(1.8)=2, C to ceil(2.85)=3
    assert [(e.class_label, e.rank, e.group_size) for e in (e1, e2, e3)] == [("A", 1, 3), ("B", 2, 3), ("C", 3, 3)]
    assert (e5.group, e5.class_label, e5.rank, e5.score.total) == ("规下", "A", 1, Decimal("41.6667"))
    assert r.class_counts() == {"规上": {"A": 1, "B": 1, "C": 1, "T": 1}, "规下": {"A": 1, "T": 1}}


def test_t_is_excluded_from_ranking():
    r = run()
    e4, e6 = r.result(code(4)), r.result(code(6))
    assert (e4.class_label, e4.excluded_by, e4.score, e4.rank, e4.group_size) == ("T", "utility", None, None, None)
    assert (e6.class_label, e6.excluded_by, e6.group) == ("T", "under_two_years", "规下")
    assert e4.recommendation.disposition == Disposition.NONE
    assert e6.recommendation.disposition == Disposition.CLOSE  # ecological control zone applies even to T
    # the utility's huge tax is not in this year's averages: (600 + 600 + 300) 万元 / 150 亩 = 10
    assert r.averages["规上"]["tax_per_mu"] == Decimal(10)


def test_dispositions_and_treatments():
    r = run()
    assert r.result(code(1)).recommendation.disposition == Disposition.UPGRADE
    assert r.result(code(3)).recommendation.disposition == Disposition.RELOCATE
    assert r.result(code(3)).treatment.new_construction_land_allowed is False
    assert r.result(code(1)).treatment.land_priority is True
    assert r.result(code(4)).treatment is None


def test_same_inputs_same_hash_whatever_the_order():
    a, b, c = run(), run(shuffle_seed=1), run(shuffle_seed=7)
    assert a.content_hash == b.content_hash == c.content_hash
    assert a.inputs_hash == b.inputs_hash
    assert a.to_plain() == b.to_plain()
    assert len(a.content_hash) == 64


def test_policy_version_changes_the_hash():
    a = run()
    b = run(policy=default_policy(COUNTY, YEAR, version=2))
    assert a.policy_hash != b.policy_hash and a.content_hash != b.content_hash
    assert a.inputs_hash == b.inputs_hash
    assert b.policy_version == 2


def test_an_input_change_changes_the_hash():
    from services.assessment.domain.evaluation import run_evaluation

    enterprises, indicators = scenario()
    indicators[0] = big_figures(1, employees=251)
    changed = run_evaluation(COUNTY, YEAR, enterprises, indicators, POLICY)
    assert changed.inputs_hash != run().inputs_hash


def _relative_policy():
    data = POLICY.model_dump()
    for t in data["groups"][0]["terms"]:
        if t["indicator"] == "tax_per_mu":
            t["benchmark"] = RelativeBenchmark(factor=Decimal(2)).model_dump()
    return AssessmentPolicy.model_validate(data)


def test_relative_benchmark_from_last_year():
    p = _relative_policy()
    with pytest.raises(BenchmarkUnavailable):
        run(policy=p)
    r = run(policy=p, last_year={"规上": {"tax_per_mu": Decimal("7.5")}})
    # benchmark 2 x 7.5 = 15; e1 tax/亩 12 -> 40 x 12 / 15 = 32 (cap 48); total 77 - 16 + 32 = 93
    assert r.benchmarks["规上"]["tax_per_mu"] == Decimal(15)
    assert r.result(code(1)).score.total == Decimal(93)
    assert run(policy=p, last_year={"规上": {"tax_per_mu": Decimal("7.6")}}).inputs_hash != r.inputs_hash


def test_inputs_are_checked():
    from services.assessment.domain.evaluation import run_evaluation

    enterprises, indicators = scenario()
    with pytest.raises(ValueError, match="policy is for"):
        run_evaluation("320681", YEAR, enterprises, indicators, POLICY)
    with pytest.raises(ValueError, match="twice"):
        run_evaluation(COUNTY, YEAR, enterprises + [enterprise(1)], indicators, POLICY)
    with pytest.raises(ValueError, match="merge"):
        run_evaluation(COUNTY, YEAR, enterprises, indicators + [figures(1)], POLICY)
    with pytest.raises(ValueError, match="unknown enterprise"):
        run_evaluation(COUNTY, YEAR, enterprises, indicators + [figures(99)], POLICY)
    with pytest.raises(ValueError, match="not 2023"):
        run_evaluation(COUNTY, YEAR, enterprises, [figures(1, year=2022)], POLICY)
    with pytest.raises(ValueError, match="county"):
        run_evaluation(COUNTY, YEAR, [enterprise(1, township_code="320681101")], [], POLICY)


def test_enterprise_without_figures_is_scored_at_zero():
    from services.assessment.domain.evaluation import run_evaluation

    r = run_evaluation(COUNTY, YEAR, [enterprise(1), enterprise(2)], [figures(2, land=MU, tax=WAN)], POLICY)
    # e2: tax/亩 = 1 -> 60 x 1 / 10 = 6; e1 has nothing -> 0
    assert [x.score.total for x in r.results] == [Decimal(0), Decimal(6)]
    assert [x.class_label for x in r.results] == ["B", "A"]  # n=2: A to ceil(0.4)=1, B to ceil(1.2)=2

"""A review as a disputing enterprise and as the county's auditor (Dec 01): the county average that becomes next
year's relative benchmark, and the whole run recomputed by an oracle written from the policy text alone.

Defect guarded (fails while it exists): an enterprise whose indicator is undefined for its own score (land 0 -> its
亩均税收 is 'missing'; energy 0 -> its 单位能耗增加值 is 'missing') still has its numerator summed into the group's
county average (scoring.aggregate_inputs / county_scoring._indicator_averages), which the run publishes as
``averages`` and next year's relative benchmark (factor x last year's county average) is made of. The average is
inflated by figures that measured nothing, and every enterprise's term next year shrinks with it.
"""
from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest

from services.assessment.domain.evaluation import run_evaluation
from services.assessment.domain.policy import AssessmentPolicy, RelativeBenchmark, default_policy
from services.assessment.domain.scoring import MISSING_ZERO

from .factories import COUNTY, MU, TCE, WAN, YEAR, big_figures, code, enterprise, figures

POLICY = default_policy(COUNTY, YEAR)


# -- the county average of an indicator counts only the enterprises that measured it --------------------------------

@pytest.mark.parametrize("field, indicator, expected", [
    # e1 alone measures tax per 亩: 600 万元 / 50 亩 = 12. e2 (land 0, tax 600 万元) has no 亩均税收 (its own term
    # is missing_zero), so it adds nothing; the code sums its tax over e1's land: 1200 / 50 = 24
    ("land", "tax_per_mu", Decimal(12)),
    # e1 alone measures VA per tce: 6000 万元 / 2000 tce = 3. e2 (energy 0) is missing for its own score; the code
    # sums its 6000 万元 over e1's 2000 tce: 12000 / 2000 = 6
    ("energy", "value_added_per_energy", Decimal(3)),
])
def test_an_enterprise_whose_indicator_is_missing_does_not_count_in_the_county_average(field, indicator, expected):
    run = run_evaluation(COUNTY, YEAR, [enterprise(1), enterprise(2)],
                         [big_figures(1), big_figures(2, **{field: 0})], POLICY)
    assert run.result(code(2)).score.term(indicator).status == MISSING_ZERO  # its own score: nothing measured
    assert run.averages["规上"][indicator] == expected
    # the exact Fraction path publishes the same (it has the same rule)
    ref = run_evaluation(COUNTY, YEAR, [enterprise(1), enterprise(2)],
                         [big_figures(1), big_figures(2, **{field: 0})], POLICY, reference=True)
    assert ref.averages["规上"][indicator] == expected


def _relative_tax_policy(year: int) -> AssessmentPolicy:
    data = default_policy(COUNTY, year).model_dump()
    for g in data["groups"]:
        for t in g["terms"]:
            if g["name"] == "规上" and t["indicator"] == "tax_per_mu":
                t["benchmark"] = RelativeBenchmark(factor=Decimal(2)).model_dump()
    return AssessmentPolicy.model_validate(data)


def test_next_years_benchmark_is_not_raised_by_last_years_enterprise_without_land():
    # last year: e1 50 亩 / 600 万元, e2 land 0 / 600 万元 (its tax per 亩 undefined, scored missing)
    last = run_evaluation(COUNTY, YEAR - 1, [enterprise(1), enterprise(2)],
                          [big_figures(1, year=YEAR - 1), big_figures(2, year=YEAR - 1, land=0)],
                          default_policy(COUNTY, YEAR - 1))
    this = run_evaluation(COUNTY, YEAR, [enterprise(1)], [big_figures(1)], _relative_tax_policy(YEAR), last.averages)
    # benchmark = 2 x last year's average 12 = 24; e1 tax/亩 12 -> 40 x 12 / 24 = 20 (not 40 x 12 / 48 = 10);
    # total = 77 - 16 (its term under the fixed 30) + 20 = 81
    assert this.benchmarks["规上"]["tax_per_mu"] == Decimal(24)
    assert this.result(code(1)).score.total == Decimal(81)


# -- guard: the whole run against an oracle written from the policy text --------------------------------------------

_DIV = {"land": 10**4, "tax": 10**6, "revenue": 10**6, "value_added": 10**6, "energy": 10**3, "electricity": 10**4,
        "rnd": 10**6, "employees": 1}


def _half_up(x: Fraction, places: int) -> Fraction:
    sign, a = (-1 if x < 0 else 1), abs(x) * 10**places
    n = math.floor(a)
    if a - n >= Fraction(1, 2):
        n += 1
    return Fraction(sign * n, 10**places)


def _field(ind, name, policy):
    if ind is None:
        return None
    if name == "emissions":
        if ind.emissions is None:
            return None
        counted = [p for p in policy.emission_weights if p in ind.emissions]
        if not counted:
            return None
        return sum(Fraction(policy.emission_weights[p]) * Fraction(ind.emissions[p], 10**4) for p in counted)
    v = getattr(ind, name)
    return None if v is None else Fraction(v, _DIV[name])


def _oracle(ents, inds, policy):
    """(credit code -> score, credit code -> class) for the ranked enterprises, from README/exact.py/classification.py
    read as text: value shown to 8 decimals, term = weight x value / benchmark floored at 0 and capped, each term
    published to 4 decimals half up, missing -> 0 or the group's mean measured term, score = published terms + points;
    classes by display rank (score desc, code asc) up to ceil(n x share), ties take the best-placed one's class."""
    fig = {i.credit_code: i for i in inds}
    group, excluded = {}, set()
    for e in ents:
        ind = fig.get(e.credit_code)
        revenue = None if ind is None else ind.revenue
        group[e.credit_code] = e.scale or (
            "规上" if revenue is not None and revenue >= policy.group_rule.revenue_threshold_fen else "规下")
        if any(e.has_flag(x.flag) for x in policy.exclusions):
            excluded.add(e.credit_code)
    ranked = [e for e in ents if e.credit_code not in excluded]
    terms = {}
    for e in ranked:
        gp, ind = policy.group(group[e.credit_code]), fig.get(e.credit_code)
        row = {}
        for t in gp.terms:
            d = policy.indicator(t.indicator)
            num, den = _field(ind, d.numerator, policy), _field(ind, d.denominator, policy)
            w = Fraction(t.weight)
            cap = None if gp.cap_factor is None else w * Fraction(gp.cap_factor)
            if num is not None and den is not None and den != 0:
                term = max(w * _half_up(num / den * Fraction(d.multiplier), 8) / Fraction(t.benchmark.value), 0)
                row[t.indicator] = ("measured", term if cap is None else min(term, cap))
            elif num is not None and den is not None and num != 0 and d.on_zero_denominator == "full_term":
                row[t.indicator] = ("measured", Fraction(0) if num < 0 else (cap if cap is not None else w))
            else:
                row[t.indicator] = ("missing", t.missing)
        terms[e.credit_code] = row
    scores = {}
    for e in ranked:
        c, total = e.credit_code, Fraction(0)
        for k, (status, v) in terms[c].items():
            if status == "measured":
                total += _half_up(v, 4)
            elif v == "group_average":
                got = [terms[o][k][1] for o in terms if group[o] == group[c] and terms[o][k][0] == "measured"]
                if got:
                    total += _half_up(sum(got) / len(got), 4)
        total += sum((Fraction(b.points) for b in policy.bonus_penalty if e.has_flag(b.flag)), Fraction(0))
        scores[c] = total
    classes = {}
    for g in ("规上", "规下"):
        members = sorted((c for c in scores if group[c] == g), key=lambda c: (-scores[c], c))
        n = len(members)
        for c in members:
            best = 1 + sum(1 for o in members if scores[o] > scores[c])  # best-placed of its tie
            classes[c] = next(b.label for b in policy.class_rule.bands
                              if best <= math.ceil(n * Fraction(b.cumulative_share)))
    return scores, classes


def _county(rnd: random.Random):
    n = rnd.randint(1, 26)
    ents, inds = [], []
    shared = None  # copies of one enterprise's figures make ties, at boundaries too
    for i in range(1, n + 1):
        flags = {f: rnd.random() < 0.08 for f in ("utility", "under_two_years", "safety_hazard", "environmental_hazard")}
        extra = frozenset(x for x in ("high_tech", "specialized_sme") if rnd.random() < 0.2)
        ents.append(enterprise(i, scale=rnd.choice([None, None, "规上", "规下"]), extra_flags=extra, **flags))
        if rnd.random() < 0.08:
            continue  # no figures
        if shared is not None and rnd.random() < 0.3:
            inds.append(figures(i, **shared))
            continue

        def pick(hi):
            return rnd.choice([None, 0, rnd.randint(0, hi), rnd.choice([MU, 2 * MU, 5 * MU])])

        values = dict(land=pick(10**6), tax=pick(10**9), revenue=rnd.choice([None, 3 * 10**9, 10**8, 2 * 10**9]),
                      value_added=rnd.choice([None, 0, -10**6, rnd.randint(0, 10**10)]), energy=pick(10**7),
                      electricity=pick(10**7), rnd=pick(10**8), employees=rnd.choice([None, 0, rnd.randint(1, 500)]),
                      emissions=rnd.choice([None, {"COD": rnd.randint(0, 10**6)}, {"VOCs": 5}, {"COD": 0, "SO2": 3}]))
        shared = shared or values
        inds.append(figures(i, **values))
    return ents, inds


@pytest.mark.parametrize("seed", range(8))
def test_scores_and_classes_equal_an_oracle_written_from_the_policy_text(seed):
    rnd = random.Random(seed)
    for _ in range(25):
        ents, inds = _county(rnd)
        run = run_evaluation(COUNTY, YEAR, ents, inds, POLICY)
        scores, classes = _oracle(ents, inds, POLICY)
        for r in run.results:
            if r.excluded_by is not None:
                assert (r.class_label, r.score, r.rank) == ("T", None, None)
                continue
            assert Fraction(r.score.total) == scores[r.credit_code], r.credit_code
            assert r.class_label == classes[r.credit_code], r.credit_code


def test_more_tax_never_lowers_a_class_in_the_run():
    # a disputing enterprise: paying more tax (all else equal) never moves it to a worse class, in a group of 20 with
    # ties and T members around it
    ents = [enterprise(i, utility=(i % 7 == 0)) for i in range(1, 22)]
    base = [big_figures(i, tax=(100 + 25 * (i % 9)) * WAN, energy=(1500 + i) * TCE) for i in range(1, 22)]
    order = {"A": 0, "B": 1, "C": 2, "D": 3}
    before = run_evaluation(COUNTY, YEAR, ents, base, POLICY).result(code(5))
    for extra in (1, 50, 500, 5000):
        more = [f if f.credit_code != code(5) else big_figures(5, tax=f.tax + extra * WAN, energy=f.energy) for f in base]
        after = run_evaluation(COUNTY, YEAR, ents, more, POLICY).result(code(5))
        assert after.score.total >= before.score.total
        assert order[after.class_label] <= order[before.class_label]

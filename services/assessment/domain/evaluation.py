"""One county's yearly evaluation run: score, class, rank and disposition for every enterprise.

Deterministic: results are ordered by credit code, inputs are hashed in a canonical order, so the same
inputs and policy give the same ``content_hash`` whatever order they were passed in.
Missing values with the 'group_average' rule take the mean capped term of the group members that
measured the indicator in this run (pass 1 measures, pass 2 scores).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping

import orjson

from .canonical import by_identity, canonical_json, plain_json, to_plain
from .classification import Placement, classify
from .county_scoring import PackedScore, Undecided, score_county
from .disposition import Recommendation, recommend
from .enterprise import Enterprise, YearlyIndicators
from .policy import AssessmentPolicy, Benchmarks, ExclusionRule, Treatment, resolve_benchmarks
from .scoring import (
    MISSING_GROUP_EMPTY,
    ScoreResult,
    aggregate_inputs,
    average_terms,
    average_values,
    enterprise_inputs,
    group_of,
    plan_terms,
    score_inputs,
)


@dataclass(frozen=True)
class EnterpriseResult:
    credit_code: str
    name: str
    township_code: str
    group: str  # 规上 / 规下 (also for excluded ones, for the record)
    class_label: str  # a band label, or the exclusion label (T)
    excluded_by: str | None  # flag that excluded it from the ranking
    score: ScoreResult | PackedScore | None  # None when excluded
    rank: int | None  # display rank inside county and group; None when excluded
    score_rank: int | None
    group_size: int | None
    recommendation: Recommendation
    treatment: Treatment | None  # the class's differentiated treatment, if the policy has one

    def to_plain(self) -> dict:
        d = {k: getattr(self, k) for k in _RESULT_FIELDS}
        d["recommendation"] = _recommendation_plain(self.recommendation)
        d["treatment"] = None if self.treatment is None else _treatment_plain(self.treatment)
        d["score"] = self.score.to_plain() if self.score else None
        return d


@by_identity  # a policy has a handful of treatments, shared by thousands of results
def _treatment_plain(treatment: Treatment) -> dict:
    return to_plain(treatment)


@by_identity  # and a few dozen distinct recommendations (see _Recommendations)
def _recommendation_plain(recommendation: Recommendation) -> dict:
    return to_plain(recommendation)


@dataclass(frozen=True)
class EvaluationRun:
    county: str
    year: int
    policy_version: int
    policy_hash: str
    inputs_hash: str
    benchmarks: dict[str, dict[str, Decimal]]  # resolved, group -> indicator
    results: tuple[EnterpriseResult, ...]  # by credit code
    averages: dict[str, dict[str, Decimal]]  # this year's group averages: next year's relative benchmarks
    content_hash: str
    # canonical JSON of results[i].to_plain(), computed once for the hash; storage keeps it as the breakdown
    result_json: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def result(self, credit_code: str) -> EnterpriseResult:
        for r in self.results:
            if r.credit_code == credit_code:
                return r
        raise KeyError(credit_code)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """group -> class label -> how many."""
        out: dict[str, dict[str, int]] = {}
        for r in self.results:
            g = out.setdefault(r.group, {})
            g[r.class_label] = g.get(r.class_label, 0) + 1
        return out

    def to_plain(self) -> dict:
        return {
            "county": self.county,
            "year": self.year,
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "inputs_hash": self.inputs_hash,
            "benchmarks": to_plain(self.benchmarks),
            "results": [r.to_plain() for r in self.results],
            "averages": to_plain(self.averages),
            "content_hash": self.content_hash,
        }


def exclusion_of(enterprise: Enterprise, policy: AssessmentPolicy) -> ExclusionRule | None:
    """The first exclusion rule (policy order) whose flag is set."""
    return next((e for e in policy.exclusions if enterprise.has_flag(e.flag)), None)


def index_inputs(county: str, year: int, enterprises: Iterable[Enterprise], indicators: Iterable[YearlyIndicators]):
    by_code: dict[str, Enterprise] = {}
    for e in enterprises:
        if e.credit_code in by_code:
            raise ValueError(f"enterprise {e.credit_code} appears twice")
        if e.county_code != county:
            raise ValueError(f"enterprise {e.credit_code} is in county {e.county_code}, not {county}")
        by_code[e.credit_code] = e
    figures: dict[str, YearlyIndicators] = {}
    for ind in indicators:
        if ind.year != year:
            raise ValueError(f"indicators of {ind.credit_code} are for {ind.year}, not {year}")
        if ind.credit_code not in by_code:
            raise ValueError(f"indicators for unknown enterprise {ind.credit_code}")
        if ind.credit_code in figures:
            raise ValueError(f"indicators of {ind.credit_code} appear twice; merge the parts first")
        figures[ind.credit_code] = ind
    return dict(sorted(by_code.items())), figures


def run_evaluation(
    county: str,
    year: int,
    enterprises: Iterable[Enterprise],
    indicators: Iterable[YearlyIndicators],
    policy: AssessmentPolicy,
    last_year_averages: Benchmarks | None = None,
    *,
    reference: bool = False,
) -> EvaluationRun:
    """``reference``: score with the exact Fraction path (scoring.score_inputs) instead of county_scoring's
    integers; both give the same run (tests/unit/assessment/test_county_scoring.py)."""
    if (policy.county, policy.year) != (county, year):
        raise ValueError(f"policy is for {policy.county}/{policy.year}, not {county}/{year}")
    by_code, figures = index_inputs(county, year, enterprises, indicators)
    benchmarks = resolve_benchmarks(policy, last_year_averages)

    excluded: dict[str, ExclusionRule] = {}
    groups: dict[str, str] = {}
    for code, e in by_code.items():
        groups[code] = group_of(e, figures.get(code), policy)
        rule = exclusion_of(e, policy)
        if rule is not None:
            excluded[code] = rule
    ranked_codes = [c for c in by_code if c not in excluded]

    scores: Mapping[str, ScoreResult | PackedScore] | None = None
    if not reference:
        try:
            scores, averages = score_county(policy, benchmarks, ((by_code[c], groups[c]) for c in ranked_codes), figures)
        except Undecided:
            scores = None  # a group average too close to a rounding boundary for the fixed scale
    if scores is None:
        scores, averages = _reference_scores(policy, benchmarks, by_code, figures, groups, ranked_codes)

    placements: dict[str, Placement] = {}
    for g in policy.groups:
        members = {c: scores[c].total for c in ranked_codes if groups[c] == g.name}
        for p in classify(members, policy.class_rule):
            placements[p.subject] = p

    recommendations = _Recommendations(policy)
    results = []
    for code, e in by_code.items():
        rule = excluded.get(code)
        p = placements.get(code)
        label = rule.label if rule else p.class_label  # type: ignore[union-attr]
        results.append(
            EnterpriseResult(
                credit_code=code,
                name=e.name,
                township_code=e.township_code,
                group=groups[code],
                class_label=label,
                excluded_by=rule.flag if rule else None,
                score=scores.get(code),  # type: ignore[arg-type]
                rank=p.rank if p else None,
                score_rank=p.score_rank if p else None,
                group_size=p.group_size if p else None,
                recommendation=recommendations.of(e, label, rule is not None),
                treatment=policy.treatments.get(label),
            )
        )

    policy_hash = policy.content_hash()
    inputs_hash = inputs_digest(county, year, by_code, figures, last_year_averages)
    # canonical JSON of each result, made once: it is hashed here and stored as the breakdown
    result_json = tuple(map(result_canonical_json, results))
    head = canonical_json({"policy_hash": policy_hash, "inputs_hash": inputs_hash, "benchmarks": benchmarks,
                           "averages": averages})
    # the sha256 of canonical_json of the whole body ("results" sorts last among its keys), fed piece by piece
    digest = hashlib.sha256((head[:-1] + ',"results":[').encode("utf-8"))
    for i in range(0, len(result_json), 1000):  # in blocks: one encode and update per thousand results
        digest.update(("," if i else "").encode() + ",".join(result_json[i : i + 1000]).encode("utf-8"))
    digest.update(b"]}")
    return EvaluationRun(
        county=county,
        year=year,
        policy_version=policy.version,
        policy_hash=policy_hash,
        inputs_hash=inputs_hash,
        benchmarks=benchmarks,
        results=tuple(results),
        averages=averages,
        content_hash=digest.hexdigest(),
        result_json=result_json,
    )


def _reference_scores(policy, benchmarks, by_code, figures, groups, ranked_codes):
    """The exact Fraction path: pass 1 measures; pass 2 re-scores only those whose missing values take the
    group average."""
    inputs = {c: enterprise_inputs(figures.get(c), policy) for c in ranked_codes}
    plans = {g.name: (g, plan_terms(g, policy, benchmarks)) for g in policy.groups}

    def score_one(c: str, averages: dict) -> ScoreResult:
        g, plan = plans[groups[c]]
        return score_inputs(c, g, inputs[c], policy, benchmarks, flags=by_code[c].flags(),
                            group_average_terms=averages, plan=plan)

    first = {c: score_one(c, {}) for c in ranked_codes}
    group_avgs = {
        g.name: average_terms(r for c, r in first.items() if groups[c] == g.name) for g in policy.groups
    }
    scores = {
        c: score_one(c, group_avgs[groups[c]]) if any(t.status == MISSING_GROUP_EMPTY for t in r.terms) else r
        for c, r in first.items()
    }
    averages = {
        g.name: average_values(
            aggregate_inputs((inputs[c] for c in ranked_codes if groups[c] == g.name), policy),
            policy,
        )
        for g in policy.groups
    }
    return scores, averages


class _Recommendations:
    """recommend() depends on the class, the park and a few flags only: a county has a handful of distinct
    answers, each made (and its plain form cached) once."""

    def __init__(self, policy: AssessmentPolicy):
        self.rules = policy.disposition
        self.flags = frozenset(self.rules.close_flags) | frozenset(self.rules.hazard_flags)
        self.known: dict[tuple, Recommendation] = {}

    def of(self, e: Enterprise, label: str, excluded: bool) -> Recommendation:
        key = (label, excluded, e.in_park, e.flags() & self.flags)
        found = self.known.get(key)
        if found is None:
            found = self.known[key] = recommend(e, label, self.rules, excluded=excluded)
        return found


def inputs_digest(county: str, year: int, by_code: Mapping[str, Enterprise], figures: Mapping[str, YearlyIndicators],
                  last_year_averages: Benchmarks | None) -> str:
    """sha256 of what a county-year is judged on (index_inputs' enterprises and figures, last year's averages): a
    run's inputs_hash, and what its cluster ranking's hash names instead of those inputs again. Not which department
    gave a figure: a figure taken back and given again by another, the same, found the run it had made."""
    return hashlib.sha256(plain_json({
        "county": county,
        "year": year,
        "enterprises": [enterprise_plain(e) for e in by_code.values()],
        "indicators": [figures[c].figures_plain() for c in sorted(figures)],
        "last_year_averages": to_plain({g: dict(v) for g, v in (last_year_averages or {}).items()}),
    }).encode("utf-8")).hexdigest()


def result_canonical_json(r: EnterpriseResult) -> str:
    """canonical_json(r.to_plain()) written out, keys in their sorted order: the parts shared by many results
    (recommendations, treatments, labels) and a packed score come as canonical JSON text already (a run
    writes 100,000 of these)."""
    score = r.score
    if score and not isinstance(score, PackedScore):
        return canonical_json(r.to_plain())
    try:
        return (f'{{"class_label":{_shared_json(r.class_label)},"credit_code":{_text_json(r.credit_code)},'
                f'"excluded_by":{_shared_json(r.excluded_by)},"group":{_shared_json(r.group)},'
                f'"group_size":{_int_json(r.group_size)},"name":{_text_json(r.name)},"rank":{_int_json(r.rank)},'
                f'"recommendation":{_recommendation_json(r.recommendation)},'
                f'"score":{score.canonical_json() if score else "null"},"score_rank":{_int_json(r.score_rank)},'
                f'"township_code":{_shared_json(r.township_code)},'
                f'"treatment":{"null" if r.treatment is None else _treatment_json(r.treatment)}}}')
    except TypeError:  # what orjson refuses (e.g. a lone surrogate in a name): the json module, as before
        return canonical_json(r.to_plain())


def _text_json(value: str | None) -> str:
    return "null" if value is None else orjson.dumps(value).decode()


_SHARED_JSON: dict[str | None, str] = {}


def _shared_json(value: str | None) -> str:
    """_text_json of the values many results share (labels, groups, township codes), each written once."""
    found = _SHARED_JSON.get(value)
    if found is None:
        found = _text_json(value)
        if len(_SHARED_JSON) < 4096:
            _SHARED_JSON[value] = found
    return found


def _int_json(value: int | None) -> str:
    return "null" if value is None else str(value)


_RESULT_FIELDS = ("credit_code", "name", "township_code", "group", "class_label", "excluded_by", "rank", "score_rank",
                  "group_size")


@by_identity
def _recommendation_json(recommendation: Recommendation) -> str:
    return plain_json(_recommendation_plain(recommendation))


@by_identity
def _treatment_json(treatment: Treatment) -> str:
    return plain_json(_treatment_plain(treatment))


def enterprise_plain(e: Enterprise) -> dict:
    """to_plain(e), written out (a run hashes 100,000 enterprises)."""
    return {"credit_code": e.credit_code, "name": e.name, "township_code": e.township_code, "in_park": e.in_park,
            "industry_code": e.industry_code, "park_id": e.park_id,
            "ecological_control_zone": e.ecological_control_zone, "safety_hazard": e.safety_hazard,
            "environmental_hazard": e.environmental_hazard, "under_two_years": e.under_two_years,
            "utility": e.utility, "backward_equipment": e.backward_equipment,
            "extra_flags": sorted(e.extra_flags), "scale": e.scale,
            # a flag added since runs were first hashed is written only when set: the runs of every enterprise
            # without it hash as they did, so re-running an old county-year over the same data finds its run
            **({"large_environmental_impact": True} if e.large_environmental_impact else {})}

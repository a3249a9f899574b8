"""One county's yearly evaluation run: score, class, rank and disposition for every enterprise.

Deterministic: results are ordered by credit code, inputs are hashed in a canonical order, so the same
inputs and policy give the same ``content_hash`` whatever order they were passed in.
Missing values with the 'group_average' rule take the mean capped term of the group members that
measured the indicator in this run (pass 1 measures, pass 2 scores).
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from .canonical import canonical_json, content_hash, to_plain
from .classification import Placement, classify
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
    score: ScoreResult | None  # None when excluded
    rank: int | None  # display rank inside county and group; None when excluded
    score_rank: int | None
    group_size: int | None
    recommendation: Recommendation
    treatment: Treatment | None  # the class's differentiated treatment, if the policy has one

    def to_plain(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "credit_code", "name", "township_code", "group", "class_label", "excluded_by",
            "rank", "score_rank", "group_size")}
        d["recommendation"] = to_plain(self.recommendation)
        d["treatment"] = None if self.treatment is None else _treatment_plain(self.treatment)
        d["score"] = self.score.to_plain() if self.score else None
        return d


@functools.lru_cache(maxsize=64)  # a policy has a handful of treatments, shared by thousands of results
def _treatment_plain(treatment: Treatment) -> dict:
    return to_plain(treatment)


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
) -> EvaluationRun:
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

    # pass 1 measures; pass 2 re-scores only those whose missing values take the group average
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

    placements: dict[str, Placement] = {}
    for g in policy.groups:
        members = {c: scores[c].total for c in ranked_codes if groups[c] == g.name}
        for p in classify(members, policy.class_rule):
            placements[p.subject] = p

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
                score=scores.get(code),
                rank=p.rank if p else None,
                score_rank=p.score_rank if p else None,
                group_size=p.group_size if p else None,
                recommendation=recommend(e, label, policy.disposition, excluded=rule is not None),
                treatment=policy.treatments.get(label),
            )
        )

    averages = {
        g.name: average_values(
            aggregate_inputs(inputs[c] for c in ranked_codes if groups[c] == g.name),
            policy,
        )
        for g in policy.groups
    }
    policy_hash = policy.content_hash()
    inputs_hash = content_hash(
        {
            "county": county,
            "year": year,
            "enterprises": list(by_code.values()),
            "indicators": [figures[c] for c in sorted(figures)],
            "last_year_averages": {g: dict(v) for g, v in (last_year_averages or {}).items()},
        }
    )
    # canonical JSON of each result, made once: it is hashed here and stored as the breakdown
    result_json = tuple(canonical_json(r.to_plain()) for r in results)
    head = canonical_json({"policy_hash": policy_hash, "inputs_hash": inputs_hash, "benchmarks": benchmarks,
                           "averages": averages})
    # == canonical_json of the whole body: "results" sorts last among its keys
    body = head[:-1] + ',"results":[' + ",".join(result_json) + "]}"
    return EvaluationRun(
        county=county,
        year=year,
        policy_version=policy.version,
        policy_hash=policy_hash,
        inputs_hash=inputs_hash,
        benchmarks=benchmarks,
        results=tuple(results),
        averages=averages,
        content_hash=hashlib.sha256(body.encode("utf-8")).hexdigest(),
        result_json=result_json,
    )

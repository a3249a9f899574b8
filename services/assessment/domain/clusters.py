"""Ranking of parks and clusters (集聚区) from the enterprises in them.

A cluster's indicator is sum(numerators) / sum(denominators) over its members that have both figures
(not a mean of ratios: a big enterprise weighs by its size). Members are enterprises in a park (in_park) with that
park_id, excluded (T) ones left out. Then the policy's ``cluster_group`` weights and benchmarks, the same caps,
missing-value rules (group average = average over clusters) and class rule apply; no bonus/penalty items,
which are enterprise flags. Scored by scoring.score_inputs like an enterprise: each term from its value as
shown, the total the sum of the terms as shown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .canonical import content_hash, to_plain
from .classification import classify
from .enterprise import Enterprise, YearlyIndicators
from .evaluation import index_inputs, exclusion_of
from .policy import AssessmentPolicy, Benchmarks, resolve_benchmarks
from .scoring import ScoreResult, aggregate_inputs, average_terms, enterprise_inputs, score_inputs


@dataclass(frozen=True)
class ClusterResult:
    cluster_id: str
    members: tuple[str, ...]  # credit codes aggregated, sorted
    score: ScoreResult
    class_label: str
    rank: int
    score_rank: int
    group_size: int

    def to_plain(self) -> dict:
        d = {k: to_plain(getattr(self, k)) for k in ("cluster_id", "members", "class_label", "rank", "score_rank", "group_size")}
        d["score"] = self.score.to_plain()
        return d


@dataclass(frozen=True)
class ClusterRanking:
    county: str
    year: int
    policy_hash: str
    group: str  # whose weights and benchmarks were used
    results: tuple[ClusterResult, ...]  # by display rank
    content_hash: str


def rank_clusters(
    county: str,
    year: int,
    enterprises: Iterable[Enterprise],
    indicators: Iterable[YearlyIndicators],
    policy: AssessmentPolicy,
    last_year_averages: Benchmarks | None = None,
) -> ClusterRanking:
    if (policy.county, policy.year) != (county, year):
        raise ValueError(f"policy is for {policy.county}/{policy.year}, not {county}/{year}")
    by_code, figures = index_inputs(county, year, enterprises, indicators)
    benchmarks = resolve_benchmarks(policy, last_year_averages)
    group = policy.group(policy.cluster_group)

    members: dict[str, list[str]] = {}
    for code, e in by_code.items():
        # in_park as the run reads it: one the run judges outside every park (and may recommend moving into a
        # cluster) counted in the cluster its park_id named, though a register file saying so would clear it
        if e.in_park and e.park_id is not None and exclusion_of(e, policy) is None:
            members.setdefault(e.park_id, []).append(code)
    inputs = {
        cid: aggregate_inputs(enterprise_inputs(figures.get(c), policy) for c in codes)
        for cid, codes in sorted(members.items())
    }
    first = [score_inputs(cid, group, inp, policy, benchmarks, group_average_terms={}) for cid, inp in inputs.items()]
    avgs = average_terms(first)
    scores = {cid: score_inputs(cid, group, inp, policy, benchmarks, group_average_terms=avgs) for cid, inp in inputs.items()}
    results = tuple(
        ClusterResult(
            cluster_id=p.subject,
            members=tuple(sorted(members[p.subject])),
            score=scores[p.subject],
            class_label=p.class_label,
            rank=p.rank,
            score_rank=p.score_rank,
            group_size=p.group_size,
        )
        for p in classify({cid: s.total for cid, s in scores.items()}, policy.class_rule)
    )
    policy_hash = policy.content_hash()
    body = {
        "county": county,
        "year": year,
        "policy_hash": policy_hash,
        "inputs": {
            "enterprises": list(by_code.values()),
            "indicators": [figures[c] for c in sorted(figures)],
            "last_year_averages": {g: dict(v) for g, v in (last_year_averages or {}).items()},
        },
        "results": [r.to_plain() for r in results],
    }
    return ClusterRanking(county, year, policy_hash, group.name, results, content_hash(body))

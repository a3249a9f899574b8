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
from fractions import Fraction
from typing import Iterable, Mapping

from .canonical import content_hash, to_plain
from .classification import classify
from .enterprise import EMISSIONS_DIVISOR, SCALAR_FIELDS, Enterprise, YearlyIndicators
from .evaluation import exclusion_of, index_inputs, inputs_digest
from .policy import AssessmentPolicy, Benchmarks, resolve_benchmarks
from .exact import to_fraction
from .scoring import Inputs, ScoreResult, average_terms, counted_in_sums, score_inputs


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
    policy_version: int = 0


def rank_clusters(
    county: str,
    year: int,
    enterprises: Iterable[Enterprise],
    indicators: Iterable[YearlyIndicators],
    policy: AssessmentPolicy,
    last_year_averages: Benchmarks | None = None,
    inputs_hash: str | None = None,
) -> ClusterRanking:
    """``inputs_hash``: the evaluation run's over the same inputs, when the caller has it (else computed here)."""
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
    inputs = {cid: member_sums([figures.get(c) for c in codes], policy) for cid, codes in sorted(members.items())}
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
    if inputs_hash is None:
        inputs_hash = inputs_digest(county, year, by_code, figures, last_year_averages)
    body = {"county": county, "year": year, "policy_hash": policy_hash, "inputs_hash": inputs_hash,
            "results": [r.to_plain() for r in results]}
    return ClusterRanking(county, year, policy_hash, group.name, results, content_hash(body), policy.version)


def member_sums(members: list[YearlyIndicators | None], policy: AssessmentPolicy) -> Inputs:
    """Per indicator, (sum of numerators, sum of denominators) over the members whose own figure is measured, exactly
    (scoring.aggregate_inputs of their scoring.enterprise_inputs), but summed as integers and divided once: a
    plain field's sum(v_i / s) is sum(v_i) / s, and weighted emissions sum per pollutant before the weights, since
    sum_i sum_p w_p e_ip = sum_p w_p sum_i e_ip. A county's parks hold tens of thousands of members."""
    weights = policy.emission_weights
    zero_counts = counted_in_sums(policy)
    out: dict[str, tuple[Fraction | None, Fraction | None]] = {}
    for d in sorted(policy.indicators, key=lambda d: d.code):
        num, den = _FieldSum(d.numerator), _FieldSum(d.denominator)
        zero_ok = d.code in zero_counts
        for ind in members:
            if ind is None:
                continue
            a, b = _raw(ind, d.numerator, weights), _raw(ind, d.denominator, weights)
            if a is not None and b is not None and (zero_ok or not _is_zero(b)):
                num.add(a)
                den.add(b)
        out[d.code] = (num.value(weights), den.value(weights)) if num.seen else (None, None)
    return out


def _raw(ind: YearlyIndicators, name: str, weights: Mapping) -> int | dict[str, int] | None:
    """A plain field's stored integer, or the counted pollutants of the emissions (None: missing, as
    scoring.field_amount says: no emissions, or none the policy weighs)."""
    if name in SCALAR_FIELDS:
        return getattr(ind, name)
    if ind.emissions is None:
        return None
    counted = {p: ind.emissions[p] for p in weights if p in ind.emissions}
    return counted or None


def _is_zero(raw: int | dict[str, int]) -> bool:
    # emissions: their weights are positive, so the weighted sum is zero only when every counted pollutant is
    return not any(raw.values()) if isinstance(raw, dict) else raw == 0


class _FieldSum:
    __slots__ = ("name", "total", "by_pollutant", "seen")

    def __init__(self, name: str) -> None:
        self.name, self.total, self.by_pollutant, self.seen = name, 0, {}, False

    def add(self, raw: int | dict[str, int]) -> None:
        self.seen = True
        if type(raw) is dict:
            for p, v in raw.items():
                self.by_pollutant[p] = self.by_pollutant.get(p, 0) + v
        else:
            self.total += raw

    def value(self, weights: Mapping) -> Fraction:
        if self.name in SCALAR_FIELDS:
            return Fraction(self.total, SCALAR_FIELDS[self.name][1])
        return sum((to_fraction(weights[p]) * Fraction(n, EMISSIONS_DIVISOR) for p, n in self.by_pollutant.items()),
                   Fraction(0))

"""Comprehensive score of one enterprise (or one cluster): score = sum of terms + bonus/penalty points.

term = weight x value / benchmark, floored at 0 (a negative value never subtracts) and capped at
cap_factor x weight, computed from the value as the breakdown shows it (8 decimals); the score is the sum of
the terms as published (4 decimals) plus the points, so a breakdown adds up to its score. Exact (Fraction)
otherwise; the rounding rule is in exact.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Mapping

from .canonical import decimal_text, to_plain
from .enterprise import EMISSIONS_DIVISOR, GROUP_ABOVE, GROUP_BELOW, SCALAR_FIELDS, Enterprise, YearlyIndicators
from .exact import PLACES, VALUE_PLACES, quantize, to_fraction
from .policy import AssessmentPolicy, Benchmarks, GroupPolicy, IndicatorDefinition

# how a term was obtained
FROM_VALUE = "value"
ZERO_DENOMINATOR_FULL = "zero_denominator_full_term"
MISSING_ZERO = "missing_zero"
MISSING_GROUP_AVERAGE = "missing_group_average"
MISSING_GROUP_EMPTY = "missing_group_has_no_values"  # group_average asked, but nobody had the value
# a negative numerator over a zero denominator under 'full_term' (a loss-making year without emissions): the
# value is measured and below zero, so the term is floored at 0 like any negative value. It used to fall through
# to the missing rule and, under 'group_average', gave the loss-maker the group's average term, more than an
# identical loss-maker with some emissions got (0)
ZERO_DENOMINATOR_NEGATIVE = "zero_denominator_negative"
MEASURED = (FROM_VALUE, ZERO_DENOMINATOR_FULL, ZERO_DENOMINATOR_NEGATIVE)  # terms that count toward a group average

Inputs = Mapping[str, tuple[Fraction | None, Fraction | None]]  # indicator -> (numerator, denominator)


@dataclass(frozen=True)
class TermLine:
    indicator: str
    name: str
    unit: str
    value: Decimal | None  # 8 decimals (the term is computed from it); None when missing or undefined (denominator 0)
    benchmark: Decimal
    weight: Decimal
    raw_term: Decimal  # before floor and cap (the substituted term when missing)
    capped_term: Decimal
    status: str  # FROM_VALUE, ZERO_DENOMINATOR_FULL, MISSING_*
    exact_term: Fraction = field(repr=False, compare=False)  # capped, unrounded (what group averages take)

    def to_plain(self) -> dict:
        return {"indicator": self.indicator, "name": self.name, "unit": self.unit,
                "value": None if self.value is None else decimal_text(self.value),
                "benchmark": decimal_text(self.benchmark), "weight": decimal_text(self.weight),
                "raw_term": decimal_text(self.raw_term), "capped_term": decimal_text(self.capped_term),
                "status": self.status}


@dataclass(frozen=True)
class AdjustmentLine:
    code: str
    flag: str
    points: Decimal
    description: str


@dataclass(frozen=True)
class ScoreResult:
    subject: str  # credit code, or cluster id
    group: str
    terms: tuple[TermLine, ...]
    adjustments: tuple[AdjustmentLine, ...]
    total: Decimal  # the published capped terms plus the points, 4 decimals (exact.py)
    exact_total: Fraction = field(repr=False, compare=False)  # the exact capped terms plus the points

    def term(self, indicator: str) -> TermLine:
        for t in self.terms:
            if t.indicator == indicator:
                return t
        raise KeyError(indicator)

    def to_plain(self) -> dict:
        return {
            "subject": self.subject,
            "group": self.group,
            "terms": [t.to_plain() for t in self.terms],
            "adjustments": to_plain(list(self.adjustments)),
            "total": total_text(self.total),
        }


def total_text(total: Decimal) -> str:
    """A total as the listing and EnterpriseAssessed write it: 4 fixed decimals ('77.0000')."""
    return format(total, "f")


def group_of(enterprise: Enterprise, indicators: YearlyIndicators | None, policy: AssessmentPolicy) -> str:
    if enterprise.scale is not None:
        return enterprise.scale
    revenue = indicators.revenue if indicators is not None else None
    if revenue is not None and revenue >= policy.group_rule.revenue_threshold_fen:
        return GROUP_ABOVE
    return GROUP_BELOW


def field_amount(ind: YearlyIndicators, name: str, emission_weights: Mapping[str, Decimal]) -> Fraction | None:
    """A field in the unit indicators are quoted in (亩, 万元, tce, 万kWh, t, persons); None if missing."""
    if name == "emissions":
        if ind.emissions is None:
            return None
        counted = [p for p in emission_weights if p in ind.emissions]
        if not counted:
            return None
        return sum(
            (to_fraction(emission_weights[p]) * Fraction(ind.emissions[p], EMISSIONS_DIVISOR) for p in counted),
            Fraction(0),
        )
    v = getattr(ind, name)
    return None if v is None else Fraction(v, SCALAR_FIELDS[name][1])


def enterprise_inputs(ind: YearlyIndicators | None, policy: AssessmentPolicy) -> dict[str, tuple[Fraction | None, Fraction | None]]:
    out: dict[str, tuple[Fraction | None, Fraction | None]] = {}
    for d in policy.indicators:
        if ind is None:
            out[d.code] = (None, None)
        else:
            out[d.code] = (
                field_amount(ind, d.numerator, policy.emission_weights),
                field_amount(ind, d.denominator, policy.emission_weights),
            )
    return out


def indicator_value(defn: IndicatorDefinition, num: Fraction | None, den: Fraction | None) -> Fraction | str | None:
    """The exact value; 'zero_denominator' when den is 0 and num > 0; None when missing, 0/0 or negative/0."""
    if num is None or den is None:
        return None
    if den == 0:
        return "zero_denominator" if num > 0 else None
    return num / den * to_fraction(defn.multiplier)


def _line(defn, weight, benchmark, value, raw, capped, status) -> TermLine:
    return TermLine(
        indicator=defn.code,
        name=defn.name,
        unit=defn.unit,
        value=None if value is None else quantize(value),
        benchmark=benchmark,
        weight=weight,
        raw_term=quantize(raw),
        capped_term=quantize(capped),
        status=status,
        exact_term=capped,
    )


@dataclass(frozen=True)
class TermPlan:
    """What one weighted term needs, resolved once per run: scoring 100,000 enterprises must not redo it."""

    defn: IndicatorDefinition
    weight: Decimal
    benchmark: Decimal
    missing: str
    weight_exact: Fraction
    cap: Fraction | None
    rate: Fraction  # weight / benchmark: term = value (as shown, 8 decimals) x rate
    multiplier: Fraction
    unit: str
    cap_published: Decimal | None


def plan_terms(group: GroupPolicy, policy: AssessmentPolicy, benchmarks: Benchmarks) -> tuple[TermPlan, ...]:
    plans = []
    for t in group.terms:
        defn = policy.indicator(t.indicator)
        try:
            benchmark = benchmarks[group.name][t.indicator]
        except KeyError:
            raise KeyError(f"no benchmark for {t.indicator} in {group.name}") from None
        if benchmark <= 0:
            raise ValueError(f"benchmark of {t.indicator} in {group.name} must be positive")
        weight = to_fraction(t.weight)
        cap = None if group.cap_factor is None else weight * to_fraction(group.cap_factor)
        rate = weight / to_fraction(benchmark)
        plans.append(TermPlan(defn, t.weight, benchmark, t.missing, weight, cap, rate, to_fraction(defn.multiplier),
                              defn.unit, None if cap is None else quantize(cap)))
    return tuple(plans)


def _round_ratio(n: int, d: int, places: int = PLACES) -> int:
    """n / d (d > 0) in units of 10^-places, halves away from zero (exact.quantize on integers)."""
    q, r = divmod(abs(n) * 10**places, d)
    if 2 * r >= d:
        q += 1
    return -q if n < 0 else q


def _quantize_ratio(n: int, d: int) -> Decimal:
    """quantize(Fraction(n, d)) for d > 0 without building the Fraction (same half-up rule)."""
    return Decimal(_round_ratio(n, d)).scaleb(-PLACES)


def _measured_line(p: TermPlan, num: Fraction, den: Fraction) -> TermLine:
    # value = num / den x multiplier, shown to 8 decimals; term = shown value x weight / benchmark; kept as
    # integer ratios (exactly what the Fraction arithmetic gives, several times faster)
    a, b = num.numerator * den.denominator, num.denominator * den.numerator
    if b < 0:
        a, b = -a, -b
    m, f = p.multiplier, p.rate
    v = _round_ratio(a * m.numerator, b * m.denominator, VALUE_PLACES)
    rn, rd = v * f.numerator, f.denominator * 10**VALUE_PLACES
    if rn <= 0:
        exact, capped = _ZERO, _ZERO_PUBLISHED
    elif p.cap is not None and rn * p.cap.denominator > p.cap.numerator * rd:
        exact, capped = p.cap, p.cap_published
    else:
        exact, capped = Fraction(rn, rd), _quantize_ratio(rn, rd)
    d = p.defn
    return TermLine(d.code, d.name, p.unit, Decimal(v).scaleb(-VALUE_PLACES), p.benchmark,
                    p.weight, _quantize_ratio(rn, rd), capped, FROM_VALUE, exact)


_ZERO = Fraction(0)
_ZERO_PUBLISHED = quantize(0)


def score_inputs(
    subject: str,
    group: GroupPolicy,
    inputs: Inputs,
    policy: AssessmentPolicy,
    benchmarks: Benchmarks,
    *,
    flags: Iterable[str] = (),
    group_average_terms: Mapping[str, Fraction] | None = None,
    plan: tuple[TermPlan, ...] | None = None,
) -> ScoreResult:
    """Score from (numerator, denominator) pairs; shared by enterprises and clusters. ``plan`` (from
    plan_terms for this group, policy and benchmarks) saves resolving the terms again for each subject."""
    flags = frozenset(flags)
    lines: list[TermLine] = []
    for p in plan if plan is not None else plan_terms(group, policy, benchmarks):
        defn = p.defn
        num, den = inputs.get(defn.code, (None, None))
        if num is not None and den is not None and den != 0:
            lines.append(_measured_line(p, num, den))
            continue
        if num is not None and den is not None and num > 0 and defn.on_zero_denominator == "full_term":
            full = p.cap if p.cap is not None else p.weight_exact
            lines.append(_line(defn, p.weight, p.benchmark, None, full, full, ZERO_DENOMINATOR_FULL))
            continue
        if num is not None and den is not None and num < 0 and defn.on_zero_denominator == "full_term":
            lines.append(_line(defn, p.weight, p.benchmark, None, Fraction(0), Fraction(0), ZERO_DENOMINATOR_NEGATIVE))
            continue
        if p.missing == "zero":
            lines.append(_line(defn, p.weight, p.benchmark, None, Fraction(0), Fraction(0), MISSING_ZERO))
            continue
        if group_average_terms is None:
            raise ValueError(
                f"{subject}: {defn.code} is missing and the policy takes the group average; pass group_average_terms"
            )
        avg = group_average_terms.get(defn.code)
        if avg is None:
            lines.append(_line(defn, p.weight, p.benchmark, None, Fraction(0), Fraction(0), MISSING_GROUP_EMPTY))
        else:
            lines.append(_line(defn, p.weight, p.benchmark, None, avg, avg, MISSING_GROUP_AVERAGE))
    adjustments = tuple(
        AdjustmentLine(code=b.code, flag=b.flag, points=b.points, description=b.description)
        for b in policy.bonus_penalty
        if b.flag in flags
    )
    points = [to_fraction(a.points) for a in adjustments]
    # the score: the published terms plus the points (each at most 4 decimals, so the sum is exact)
    total = sum((to_fraction(ln.capped_term) for ln in lines), Fraction(0)) + sum(points, Fraction(0))
    # summed over a common denominator and reduced once (Fraction + Fraction reduces every time)
    n, d = 0, 1
    for x in [ln.exact_term for ln in lines] + points:
        n, d = n * x.denominator + x.numerator * d, d * x.denominator
    return ScoreResult(
        subject=subject,
        group=group.name,
        terms=tuple(lines),
        adjustments=adjustments,
        total=quantize(total),
        exact_total=Fraction(n, d),
    )


def score(
    enterprise: Enterprise,
    indicators: YearlyIndicators | None,
    policy: AssessmentPolicy,
    benchmarks: Benchmarks,
    *,
    group_average_terms: Mapping[str, Fraction] | None = None,
) -> ScoreResult:
    """Score one enterprise. ``benchmarks`` is group -> indicator -> Decimal (policy.resolve_benchmarks).
    ``group_average_terms`` (indicator -> exact average term of its group) is needed only when a value
    is missing and the policy substitutes the group average; evaluation.py computes it."""
    if indicators is not None and indicators.credit_code != enterprise.credit_code:
        raise ValueError("indicators belong to another enterprise")
    group = policy.group(group_of(enterprise, indicators, policy))
    return score_inputs(
        enterprise.credit_code,
        group,
        enterprise_inputs(indicators, policy),
        policy,
        benchmarks,
        flags=enterprise.flags(),
        group_average_terms=group_average_terms,
    )


class _ExactSum:
    """An exact sum of many Fractions: numerators are added per denominator (mostly powers of ten
    here) and combined once, instead of reducing after every addition."""

    __slots__ = ("by_den",)

    def __init__(self) -> None:
        self.by_den: dict[int, int] = {}

    def add(self, x: Fraction) -> None:
        d = x.denominator
        self.by_den[d] = self.by_den.get(d, 0) + x.numerator

    def value(self) -> Fraction:
        return sum((Fraction(n, d) for d, n in self.by_den.items()), Fraction(0))


def average_terms(results: Iterable[ScoreResult]) -> dict[str, Fraction]:
    """indicator -> exact mean of the capped terms of those results that measured it (one group)."""
    sums: dict[str, _ExactSum] = {}
    counts: dict[str, int] = {}
    for r in results:
        for t in r.terms:
            if t.status in MEASURED:
                acc = sums.get(t.indicator)
                if acc is None:
                    acc = sums[t.indicator] = _ExactSum()
                acc.add(t.exact_term)
                counts[t.indicator] = counts.get(t.indicator, 0) + 1
    return {k: sums[k].value() / counts[k] for k in sums}


def counted_in_sums(policy: AssessmentPolicy) -> frozenset[str]:
    """The indicators whose zero denominator is a figure (the 'full_term' rule): a member's zero counts in their
    sums. Under 'missing', a member whose denominator is zero measured nothing (its own term is missing)."""
    return frozenset(d.code for d in policy.indicators if d.on_zero_denominator == "full_term")


def aggregate_inputs(members: Iterable[Inputs], policy: AssessmentPolicy) -> dict[str, tuple[Fraction | None, Fraction | None]]:
    """Sum numerators and denominators over the members whose own figure of the indicator is measured: both
    present, and a denominator other than zero unless the indicator's rule scores a zero (so a member without
    land, none stated or 0 亩, does not inflate tax per 亩); an indicator nobody has stays missing."""
    zero_counts = counted_in_sums(policy)
    sums: dict[str, tuple[_ExactSum, _ExactSum]] = {}
    codes: set[str] = set()
    for m in members:
        for code, (num, den) in m.items():
            codes.add(code)
            if num is None or den is None or (den == 0 and code not in zero_counts):
                continue
            acc = sums.get(code)
            if acc is None:
                acc = sums[code] = (_ExactSum(), _ExactSum())
            acc[0].add(num)
            acc[1].add(den)
    return {c: (sums[c][0].value(), sums[c][1].value()) if c in sums else (None, None) for c in sorted(codes)}


def average_values(inputs: Inputs, policy: AssessmentPolicy) -> dict[str, Decimal]:
    """County (or group) average of each indicator as the aggregate ratio sum(num) / sum(den), as the
    statistics bureau publishes it; indicators without a positive denominator are left out."""
    out: dict[str, Decimal] = {}
    for d in policy.indicators:
        num, den = inputs.get(d.code, (None, None))
        if num is not None and den is not None and den > 0:
            out[d.code] = quantize(num / den * to_fraction(d.multiplier))
    return out

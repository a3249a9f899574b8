"""A county run's scores with integers only: the same published figures as scoring.score_inputs (the exact
Fraction reference), at a fraction of its cost, proven equal in tests/unit/assessment/test_county_scoring.py.

Why it can be exact without Fractions: every ratio field is an integer over a divisor fixed per field and
policy (land units over 10^4, fen over 10^6, emissions weighted with the policy's weights over a common
denominator), so a value ``(a / Da) / (b / Db) x multiplier`` is ``a x V / (b x W)`` with V and W resolved
once per group and term, shown as an integer of 10^-8 rounded half up; its term ``shown value x weight /
benchmark`` is that integer times K / L, and every published term is an integer of 0.0001 rounded half up
from an integer ratio. The score is the sum of the published terms plus the points, in integers of 0.0001.
A group average (a missing value taking the mean term of the group) is the one sum of many distinct
denominators: it is kept at a fixed scale of 10^-30 with its error bound, and a published figure that bound
cannot decide (never seen, but possible) raises Undecided, upon which the run is scored by the reference
path instead.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import gcd, lcm
from operator import attrgetter
from typing import Iterable, Mapping

import orjson

from .canonical import by_identity, decimal_text, plain_json, to_plain
from .enterprise import EMISSIONS_DIVISOR, SCALAR_FIELDS, Enterprise, YearlyIndicators
from .exact import PLACES, VALUE_PLACES
from .policy import AssessmentPolicy, Benchmarks, GroupPolicy
from .scoring import (
    FROM_VALUE,
    MISSING_GROUP_AVERAGE,
    MISSING_GROUP_EMPTY,
    MISSING_ZERO,
    ZERO_DENOMINATOR_FULL,
    ZERO_DENOMINATOR_NEGATIVE,
    AdjustmentLine,
    ScoreResult,
    TermLine,
    TermPlan,
    counted_in_sums,
    plan_terms,
)

UNIT = 10**PLACES
VALUE_UNIT = 10**VALUE_PLACES
_EXACT_DIGITS = 10**28
GUARD = 30  # decimal places of a group average before its published rounding
_GUARD_UNIT = 10**GUARD


class Undecided(Exception):
    """A group average lies too close to a rounding boundary for its fixed scale: use the exact path."""


def round_half_up(n: int, d: int, unit: int = UNIT) -> int:
    """n / d (d > 0) in units of 1 / unit (0.0001), halves away from zero (exact.quantize on integers)."""
    q, r = divmod(abs(n) * unit, d)
    if 2 * r >= d:
        q += 1
    return -q if n < 0 else q


def text4(q: int) -> str:
    """decimal_text of q x 0.0001: the canonical JSON form of a published figure."""
    if not -_EXACT_DIGITS < q < _EXACT_DIGITS:  # beyond the Decimal context's 28 digits, which rounds it
        return decimal_text(_decimal4(q))
    whole, frac = divmod(-q if q < 0 else q, UNIT)
    text = f"{whole}.{frac:04d}".rstrip("0") if frac else str(whole)
    return "-" + text if q < 0 else text


def text8(q: int) -> str:
    """decimal_text of q x 10^-8: an indicator value as a breakdown shows it, trailing zeros dropped."""
    if not -_EXACT_DIGITS < q < _EXACT_DIGITS:
        return decimal_text(Decimal(q).scaleb(-VALUE_PLACES))
    whole, frac = divmod(-q if q < 0 else q, VALUE_UNIT)
    text = f"{whole}.{frac:08d}".rstrip("0") if frac else str(whole)
    return "-" + text if q < 0 else text


def plain4(q: int) -> str:
    """format(q x 0.0001 as a Decimal, "f"): the published form of a total, trailing zeros kept ('12.3400')."""
    if not -_EXACT_DIGITS < q < _EXACT_DIGITS:
        return format(_decimal4(q), "f")
    whole, frac = divmod(-q if q < 0 else q, UNIT)
    return f"{'-' if q < 0 else ''}{whole}.{frac:04d}"


def _decimal4(q: int) -> Decimal:
    return Decimal(q).scaleb(-PLACES)


def _ratio(x: Fraction) -> tuple[int, int]:
    return x.numerator, x.denominator


# -- fields and terms, resolved once per group -----------------------------------------------------------

@dataclass(frozen=True)
class RatioField:
    """A ratio field read as an integer over ``divisor``: its amount in indicator units is int / divisor."""

    name: str
    divisor: int
    weights: tuple[tuple[str, int], ...] = ()  # emissions: pollutant -> integer weight (over divisor / 10^4)

    @classmethod
    def of(cls, name: str, policy: AssessmentPolicy) -> "RatioField":
        if name != "emissions":
            return cls(name, SCALAR_FIELDS[name][1])
        weights = {p: Fraction(w) for p, w in policy.emission_weights.items()}
        common = lcm(*(w.denominator for w in weights.values())) if weights else 1
        return cls(name, common * EMISSIONS_DIVISOR, tuple((p, int(w * common)) for p, w in weights.items()))

    def weighted_emissions(self, ind: YearlyIndicators) -> int | None:
        """The emissions field: None when no weighted pollutant is reported (scoring.field_amount)."""
        em = ind.emissions
        if em is None:
            return None
        total, counted = 0, False
        for p, w in self.weights:
            v = em.get(p)
            if v is not None:
                total += w * v
                counted = True
        return total if counted else None


class FieldReader:
    """Reads every ratio field a policy's indicators use, once per enterprise, as a tuple of integers (None
    where missing) in the order of ``fields``."""

    def __init__(self, policy: AssessmentPolicy):
        names = {f: None for d in policy.indicators for f in (d.numerator, d.denominator)}
        scalars = [f for f in names if f != "emissions"]
        self.fields = tuple(RatioField.of(f, policy) for f in (*scalars, *(["emissions"] if "emissions" in names else [])))
        self.index = {f.name: i for i, f in enumerate(self.fields)}
        self._scalars = attrgetter(*scalars, "year")  # year: a tuple even for one field; sliced off below
        self._emissions = self.fields[-1] if "emissions" in names else None
        self.missing = (None,) * len(self.fields)

    def read(self, ind: YearlyIndicators | None) -> tuple[int | None, ...]:
        if ind is None:
            return self.missing
        values = self._scalars(ind)[:-1]
        return values if self._emissions is None else (*values, self._emissions.weighted_emissions(ind))


def _reduced(n: int, d: int) -> tuple[int, int]:
    g = gcd(n, d)
    return n // g, d // g


@dataclass(frozen=True)
class Term:
    """One weighted term with every constant resolved: for numerator field integer a and denominator field
    integer b, the value is a x vn / (b x vd), shown as v8 = that rounded to an integer of 10^-8, and the term
    is v8 x kn / kd (the shown value x weight / benchmark)."""

    plan: TermPlan
    num: int  # index of the numerator field in FieldReader.fields
    den: int
    vn: int
    vd: int
    kn: int
    kd: int
    cap: tuple[int, int] | None
    cap4: int | None
    full: tuple[int, int]  # the zero-denominator full term: the cap, or the weight when uncapped
    full4: int
    full_term_rule: bool
    group_average: bool

    @classmethod
    def of(cls, p: TermPlan, reader: FieldReader) -> "Term":
        ni, di = reader.index[p.defn.numerator], reader.index[p.defn.denominator]
        num, den = reader.fields[ni], reader.fields[di]
        m, f = p.multiplier, p.rate
        vn, vd = _reduced(den.divisor * m.numerator, num.divisor * m.denominator)
        kn, kd = _reduced(f.numerator, f.denominator * VALUE_UNIT)
        cap = None if p.cap is None else _ratio(p.cap)
        full = cap if cap is not None else _ratio(p.weight_exact)
        return cls(p, ni, di, vn, vd, kn, kd, cap, None if cap is None else round_half_up(*cap),
                   full, round_half_up(*full), p.defn.on_zero_denominator == "full_term", p.missing == "group_average")


# A scored term, packed: (status, value8 or None, raw4, capped4, exact capped term as (n, d) or None while a
# group average is pending). Published figures are integers of 0.0001, values integers of 10^-8.
Packed = tuple


class GroupScorer:
    """Scores the ranked members of one group of a run."""

    def __init__(self, group: GroupPolicy, policy: AssessmentPolicy, benchmarks: Benchmarks, reader: FieldReader):
        self.group = group
        self.policy = policy
        self.plan = plan_terms(group, policy, benchmarks)
        self.terms = tuple(Term.of(p, reader) for p in self.plan)
        self._adjustments: dict[frozenset, tuple[tuple[AdjustmentLine, ...], int, int]] = {}
        self._bonus_flags = frozenset(b.flag for b in policy.bonus_penalty)
        self._static = tuple(_static_plain(p) for p in self.plan)
        self._json = tuple(_term_json_parts(p) for p in self.plan)
        self.group_json = _dumps(group.name)

    def adjustments(self, flags: frozenset[str]) -> tuple[tuple[AdjustmentLine, ...], int, int]:
        """(the bonus and penalty lines of these flags, their points as n / d; at most 4 decimals each, policy.py)."""
        key = flags & self._bonus_flags
        found = self._adjustments.get(key)
        if found is None:
            lines = tuple(AdjustmentLine(code=b.code, flag=b.flag, points=b.points, description=b.description)
                          for b in self.policy.bonus_penalty if b.flag in key)
            total = sum((Fraction(a.points) for a in lines), Fraction(0))
            found = self._adjustments[key] = (lines, total.numerator, total.denominator)
        return found

    def score(self, values: tuple[int | None, ...]) -> tuple[Packed, ...]:
        """The terms of one enterprise from its FieldReader values."""
        out = []
        for t in self.terms:
            a, b = values[t.num], values[t.den]
            if a is not None and b is not None and b != 0:
                if b < 0:
                    a, b = -a, -b
                v8 = round_half_up(a * t.vn, b * t.vd, VALUE_UNIT)
                rn, rd = v8 * t.kn, t.kd
                raw4 = round_half_up(rn, rd)
                if rn <= 0:
                    out.append((FROM_VALUE, v8, raw4, 0, (0, 1)))
                elif t.cap is not None and rn * t.cap[1] > t.cap[0] * rd:
                    out.append((FROM_VALUE, v8, raw4, t.cap4, t.cap))
                else:
                    out.append((FROM_VALUE, v8, raw4, raw4, (rn, rd)))
            elif a is not None and b is not None and a > 0 and t.full_term_rule:
                out.append((ZERO_DENOMINATOR_FULL, None, t.full4, t.full4, t.full))
            elif a is not None and b is not None and a < 0 and t.full_term_rule:
                out.append((ZERO_DENOMINATOR_NEGATIVE, None, 0, 0, (0, 1)))  # a measured loss: floored (scoring.py)
            elif not t.group_average:
                out.append((MISSING_ZERO, None, 0, 0, (0, 1)))
            else:
                out.append((MISSING_GROUP_EMPTY, None, 0, 0, (0, 1)))  # until the group's average is known
        return tuple(out)


def _dumps(value) -> str:
    return orjson.dumps(value).decode()


def _term_json_parts(p: TermPlan) -> tuple[str, str, dict[str, str], str]:
    """The constant text of a term's canonical JSON around its capped_term, raw_term, (status) and value
    (keys sorted: benchmark, capped_term, indicator, name, raw_term, status, unit, value, weight)."""
    d = p.defn
    middle = {s: '","status":' + _dumps(s) + ',"unit":' + _dumps(p.unit) + ',"value":' for s in _STATUSES}
    return ('{"benchmark":' + _dumps(decimal_text(p.benchmark)) + ',"capped_term":"',
            '","indicator":' + _dumps(d.code) + ',"name":' + _dumps(d.name) + ',"raw_term":"',
            middle,
            ',"weight":' + _dumps(decimal_text(p.weight)) + "}")


_STATUSES = (FROM_VALUE, ZERO_DENOMINATOR_FULL, ZERO_DENOMINATOR_NEGATIVE, MISSING_ZERO, MISSING_GROUP_AVERAGE,
             MISSING_GROUP_EMPTY)


def _static_plain(p: TermPlan) -> dict:
    d = p.defn
    return {"indicator": d.code, "name": d.name, "unit": p.unit, "benchmark": decimal_text(p.benchmark),
            "weight": decimal_text(p.weight)}


# -- group averages at a fixed scale -----------------------------------------------------------------------

@dataclass(frozen=True)
class GroupAverage:
    """The mean capped term of the members that measured an indicator, as lo <= mean x 10^30 <= hi."""

    lo: int
    hi: int
    published: int  # in 0.0001
    members: tuple[tuple[int, int], ...]  # the exact terms, for the exact mean if anyone asks

    @classmethod
    def of(cls, exact_terms: list[tuple[int, int]]) -> "GroupAverage":
        floor_sum, inexact = 0, 0
        for n, d in exact_terms:
            q, r = divmod(n * _GUARD_UNIT, d)
            floor_sum += q
            inexact += r != 0
        c = len(exact_terms)
        lo, hi = floor_sum // c, -((-(floor_sum + inexact)) // c)
        published = round_half_up(lo, _GUARD_UNIT)
        if round_half_up(hi, _GUARD_UNIT) != published:
            raise Undecided("a group average on a rounding boundary")
        return cls(lo, hi, published, tuple(exact_terms))

    @functools.cached_property
    def exact(self) -> Fraction:
        by_den: dict[int, int] = {}
        for n, d in self.members:
            by_den[d] = by_den.get(d, 0) + n
        return sum((Fraction(n, d) for d, n in by_den.items()), Fraction(0)) / len(self.members)


# -- one enterprise's score, packed --------------------------------------------------------------------------

class PackedScore:
    """An enterprise's score as integers; reads like scoring.ScoreResult (terms, adjustments, total,
    exact_total, term(), to_plain()), the TermLine objects being made only when asked for."""

    __slots__ = ("subject", "scorer", "packed", "adjustments", "total4", "_averages", "_terms", "_total")

    def __init__(self, subject: str, scorer: GroupScorer, packed: tuple[Packed, ...],
                 adjustments: tuple[AdjustmentLine, ...], total4: int, averages: Mapping[int, GroupAverage]):
        self.subject = subject
        self.scorer = scorer
        self.packed = packed
        self.adjustments = adjustments
        self.total4 = total4  # the published terms plus the points
        self._averages = averages  # the group averages used, by term index
        self._terms: tuple[TermLine, ...] | None = None
        self._total: Decimal | None = None

    @property
    def group(self) -> str:
        return self.scorer.group.name

    @property
    def total(self) -> Decimal:
        if self._total is None:
            self._total = _decimal4(self.total4)
        return self._total

    @property
    def exact_total(self) -> Fraction:
        """The exact (unrounded) capped terms plus the points: not the score, which adds the published terms."""
        terms = (self._averages[i].exact if i in self._averages else Fraction(*t[4]) for i, t in enumerate(self.packed))
        return sum(terms, Fraction(0)) + sum((Fraction(a.points) for a in self.adjustments), Fraction(0))

    @property
    def terms(self) -> tuple[TermLine, ...]:
        if self._terms is None:
            lines = []
            for i, ((status, value8, raw4, capped4, exact), p) in enumerate(zip(self.packed, self.scorer.plan)):
                x = self._averages[i].exact if i in self._averages else Fraction(*exact)
                lines.append(TermLine(p.defn.code, p.defn.name, p.unit,
                                      None if value8 is None else Decimal(value8).scaleb(-VALUE_PLACES),
                                      p.benchmark, p.weight, _decimal4(raw4), _decimal4(capped4), status, x))
            self._terms = tuple(lines)
        return self._terms

    def term(self, indicator: str) -> TermLine:
        for t in self.terms:
            if t.indicator == indicator:
                return t
        raise KeyError(indicator)

    def result(self) -> ScoreResult:
        """The same score as a ScoreResult."""
        return ScoreResult(self.subject, self.group, self.terms, self.adjustments, self.total, self.exact_total)

    def to_plain(self) -> dict:
        terms = []
        for (status, value8, raw4, capped4, _), static in zip(self.packed, self.scorer._static):
            terms.append({**static, "value": None if value8 is None else text8(value8), "raw_term": text4(raw4),
                          "capped_term": text4(capped4), "status": status})
        return {"subject": self.subject, "group": self.group, "terms": terms,
                "adjustments": _adjustments_plain(self.adjustments), "total": plain4(self.total4)}


    def canonical_json(self) -> str:
        """canonical_json(self.to_plain()), written out: figures are digits, so only names need escaping."""
        terms = []
        for (status, value8, raw4, capped4, _), (a, b, middle, e) in zip(self.packed, self.scorer._json):
            capped = text4(capped4)
            raw = capped if raw4 == capped4 else text4(raw4)
            value = "null" if value8 is None else f'"{text8(value8)}"'
            terms.append(f"{a}{capped}{b}{raw}{middle[status]}{value}{e}")
        return (f'{{"adjustments":{_adjustments_json(self.adjustments)},"group":{self.scorer.group_json},'
                f'"subject":{_dumps(self.subject)},"terms":[{",".join(terms)}],"total":"{plain4(self.total4)}"}}')


@by_identity  # GroupScorer.adjustments hands out one tuple per combination of flags
def _adjustments_json(adjustments: tuple[AdjustmentLine, ...]) -> str:
    return plain_json(_adjustments_plain(adjustments))


@by_identity
def _adjustments_plain(adjustments: tuple[AdjustmentLine, ...]) -> list:
    return to_plain(list(adjustments))


# -- a county ------------------------------------------------------------------------------------------------

def score_county(policy: AssessmentPolicy, benchmarks: Benchmarks, members: Iterable[tuple[Enterprise, str]],
                 figures: Mapping[str, YearlyIndicators]) -> tuple[dict[str, PackedScore], dict[str, dict[str, Decimal]]]:
    """(credit code -> score, group -> the averages of its indicators) for the ranked enterprises (enterprise,
    group name), as run_evaluation's reference passes give them: missing values under 'group_average' take
    the mean capped term of the group's members that measured the indicator; the averages are
    scoring.average_values(aggregate_inputs(...)) of each group's members."""
    reader = FieldReader(policy)
    scorers = {g.name: GroupScorer(g, policy, benchmarks, reader) for g in policy.groups}
    values: dict[str, list] = {g.name: [] for g in policy.groups}
    first: dict[str, list] = {g.name: [] for g in policy.groups}  # (enterprise, packed terms)
    for e, group in members:
        v = reader.read(figures.get(e.credit_code))
        values[group].append(v)
        first[group].append((e, scorers[group].score(v)))
    out: dict[str, PackedScore] = {}
    for name, scored in first.items():
        scorer = scorers[name]
        averages = _group_averages(scorer, scored)
        for e, packed in scored:
            out[e.credit_code] = _finish(scorer, e, packed, averages)
    return out, {name: _indicator_averages(policy, reader, v) for name, v in values.items()}


_MEASURED = (FROM_VALUE, ZERO_DENOMINATOR_FULL, ZERO_DENOMINATOR_NEGATIVE)  # scoring.MEASURED


def _group_averages(scorer: GroupScorer, scored: list) -> dict[int, GroupAverage | None]:
    """term index -> the group's average, for the terms some member lacks (None: nobody measured it)."""
    wanted = {i for _, packed in scored for i, t in enumerate(packed) if t[0] == MISSING_GROUP_EMPTY}
    out: dict[int, GroupAverage | None] = {}
    for i in sorted(wanted):
        measured = [packed[i][4] for _, packed in scored if packed[i][0] in _MEASURED]
        out[i] = GroupAverage.of(measured) if measured else None
    return out


def _finish(scorer: GroupScorer, e: Enterprise, packed: tuple[Packed, ...],
            averages: Mapping[int, GroupAverage | None]) -> PackedScore:
    """The score: the published (capped, 4-decimal) terms plus the points, exact in integers of 0.0001."""
    lines, pn, pd = scorer.adjustments(e.flags())
    total4 = round_half_up(pn, pd)  # exact: points have at most 4 decimals
    used: dict[int, GroupAverage] = {}
    terms = None
    for i, t in enumerate(packed):
        if t[0] == MISSING_GROUP_EMPTY:
            avg = averages.get(i)
            if avg is not None:
                used[i] = avg
                if terms is None:
                    terms = list(packed)
                terms[i] = (MISSING_GROUP_AVERAGE, None, avg.published, avg.published, None)
                total4 += avg.published
        else:
            total4 += t[3]
    return PackedScore(e.credit_code, scorer, packed if terms is None else tuple(terms), lines, total4, used)


def _indicator_averages(policy: AssessmentPolicy, reader: FieldReader, values: list[tuple]) -> dict[str, Decimal]:
    """Each indicator's sum(numerators) / sum(denominators) over the members whose own figure is measured, as
    scoring.aggregate_inputs counts them, in integers."""
    columns = list(zip(*values)) if values else [()] * len(reader.fields)
    zero_counts = counted_in_sums(policy)
    out: dict[str, Decimal] = {}
    for d in policy.indicators:
        ni, di = reader.index[d.numerator], reader.index[d.denominator]
        zero_ok = d.code in zero_counts
        pairs = [(a, b) for a, b in zip(columns[ni], columns[di]) if a is not None and b is not None and (b or zero_ok)]
        if not pairs:
            continue
        a_sum, b_sum = sum(a for a, _ in pairs), sum(b for _, b in pairs)
        if b_sum <= 0:
            continue
        m = Fraction(d.multiplier)
        out[d.code] = _decimal4(round_half_up(a_sum * reader.fields[di].divisor * m.numerator,
                                              b_sum * reader.fields[ni].divisor * m.denominator))
    return out

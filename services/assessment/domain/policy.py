"""A versioned assessment policy per county and year: every number here is a setting, not a constant.

An indicator is numerator field / denominator field, each field first converted to the unit indicators
are quoted in (亩, 万元, tce, 万kWh, t, persons; see enterprise.SCALAR_FIELDS), times ``multiplier``.
A term is ``weight * value / benchmark``, floored at 0 and capped at ``cap_factor * weight``.
The content hash (sha256 of canonical JSON) names the exact version a run used.
"""
from __future__ import annotations

from decimal import Decimal, Overflow, localcontext
from typing import Annotated, Literal, Mapping, Union

from pydantic import Field, field_validator, model_validator

from ._base import ExactDecimal, FrozenModel
from .admission import AdmissionPolicy
from .canonical import content_hash
from .enterprise import GROUP_ABOVE, GROUP_BELOW, SCALAR_FIELDS
from .exact import PLACES, quantize, to_fraction

RatioField = Literal[
    "land", "tax", "revenue", "value_added", "energy", "electricity", "emissions", "rnd", "employees"
]
PositiveDecimal = Annotated[ExactDecimal, Field(gt=0)]


class IndicatorDefinition(FrozenModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    numerator: RatioField
    denominator: RatioField
    multiplier: PositiveDecimal = Decimal(1)  # 100 quotes a ratio in percent
    # denominator 0 (e.g. no emissions at all): 'missing' applies the term's missing rule;
    # 'full_term' gives the term its maximum (the cap, or the weight when uncapped) if the numerator > 0, and 0 if
    # it is negative (a loss: floored like any negative value, never the missing rule's group average)
    on_zero_denominator: Literal["missing", "full_term"] = "missing"

    @property
    def unit(self) -> str:
        def u(f: str) -> str:
            return "t" if f == "emissions" else SCALAR_FIELDS[f][2]

        pct = "%" if self.multiplier == 100 else ""
        return pct or f"{u(self.numerator)}/{u(self.denominator)}"


class FixedBenchmark(FrozenModel):
    kind: Literal["fixed"] = "fixed"
    value: PositiveDecimal


class RelativeBenchmark(FrozenModel):
    """factor x last year's county average of the indicator in the same group."""

    kind: Literal["relative"] = "relative"
    factor: PositiveDecimal


Benchmark = Annotated[Union[FixedBenchmark, RelativeBenchmark], Field(discriminator="kind")]


class WeightedTerm(FrozenModel):
    indicator: str
    weight: PositiveDecimal
    benchmark: Benchmark
    # missing value: 'zero' scores 0; 'group_average' takes the average term of the group members
    # that have the value in the same run
    missing: Literal["zero", "group_average"] = "zero"


class GroupPolicy(FrozenModel):
    name: str
    terms: tuple[WeightedTerm, ...]
    cap_factor: PositiveDecimal | None = Decimal("1.2")  # a term may not exceed cap_factor x weight

    @model_validator(mode="after")
    def _check(self) -> "GroupPolicy":
        codes = [t.indicator for t in self.terms]
        if len(set(codes)) != len(codes):
            raise ValueError(f"group {self.name}: an indicator appears twice")
        # a sum past the context's exponents is infinite, not decimal.Overflow (a 500 before the policy's range
        # check could refuse the weight); weights a policy may hold sum exactly in 28 digits
        with localcontext() as ctx:
            ctx.traps[Overflow] = False
            total = sum((t.weight for t in self.terms), Decimal(0))
        if total != 100:
            raise ValueError(f"group {self.name}: weights sum to {total}, not 100")
        if self.cap_factor is not None and self.cap_factor < 1:
            raise ValueError("a cap below the weight would make full marks unreachable")
        return self


class GroupRule(FrozenModel):
    """规上 at or above the revenue threshold, 规下 below; the enterprise's own scale, when given, wins.
    An enterprise with no revenue figure and no scale is 规下 (规上 ones always report revenue)."""

    revenue_threshold_fen: int = Field(default=2_000_000_000, gt=0)  # 2000 万元


class BonusPenaltyItem(FrozenModel):
    code: str
    flag: str  # an enterprise flag name (named or extra)
    points: ExactDecimal  # positive bonus, negative penalty
    description: str = ""

    @field_validator("points")
    @classmethod
    def _nonzero(cls, v: Decimal) -> Decimal:
        if v == 0:
            raise ValueError("an item of 0 points says nothing")
        # the score adds them to 4-decimal terms, exactly. Read from the digits: quantizing '1E+800000' built an
        # 800,000-digit integer (seconds of CPU) before the policy's range check refused it
        _, digits, exponent = v.as_tuple()
        if exponent < -PLACES and any(digits[len(digits) + exponent + PLACES:]):
            raise ValueError(f"points have at most {PLACES} decimals")
        return v


class ClassBand(FrozenModel):
    label: str = Field(min_length=1)
    cumulative_share: ExactDecimal | None = None  # rank mode: share of the group down to this band
    min_score: ExactDecimal | None = None  # threshold mode: lowest score of this band
    meaning: str = ""


class ClassRule(FrozenModel):
    """Bands best first. Rank mode: the last band's cumulative_share is 1. Threshold mode: the last band
    has no min_score (it takes the rest)."""

    mode: Literal["rank", "threshold"]
    bands: tuple[ClassBand, ...]

    @model_validator(mode="after")
    def _check(self) -> "ClassRule":
        if len(self.bands) < 2:
            raise ValueError("a class rule needs at least two bands")
        labels = [b.label for b in self.bands]
        if len(set(labels)) != len(labels):
            raise ValueError("band labels repeat")
        if self.mode == "rank":
            shares = [b.cumulative_share for b in self.bands]
            if any(s is None for s in shares) or any(b.min_score is not None for b in self.bands):
                raise ValueError("rank mode: every band has a cumulative_share and no min_score")
            if not all(0 < a < b for a, b in zip(shares, shares[1:])) or shares[0] <= 0:  # type: ignore[operator]
                raise ValueError("rank mode: shares rise strictly from above 0")
            if shares[-1] != 1:
                raise ValueError("rank mode: the last band reaches 1 (the whole group)")
        else:
            mins = [b.min_score for b in self.bands]
            if any(b.cumulative_share is not None for b in self.bands):
                raise ValueError("threshold mode: no cumulative_share")
            if mins[-1] is not None or any(m is None for m in mins[:-1]):
                raise ValueError("threshold mode: every band but the last has a min_score")
            if not all(a > b for a, b in zip(mins[:-2], mins[1:-1])):  # type: ignore[operator]
                raise ValueError("threshold mode: min_score falls strictly")
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(b.label for b in self.bands)


class ExclusionRule(FrozenModel):
    """An enterprise with this flag is not evaluated: it gets ``label`` (T) and no rank."""

    flag: str
    label: str = "T"
    description: str = ""


class Treatment(FrozenModel):
    """Differentiated treatment of a class (差别化政策). Surcharges are 元 per unit on top of the tariff."""

    electricity_surcharge_yuan_per_kwh: ExactDecimal = Decimal(0)
    water_surcharge_yuan_per_m3: ExactDecimal = Decimal(0)
    gas_surcharge_yuan_per_m3: ExactDecimal = Decimal(0)
    sewage_surcharge_yuan_per_t: ExactDecimal = Decimal(0)
    land_priority: bool = False
    energy_priority: bool = False
    emission_priority: bool = False
    new_construction_land_allowed: bool = True
    industrial_land_allowed: bool = True
    note: str = ""


class DispositionRules(FrozenModel):
    """How class and flags become a recommendation (seed 三); see disposition.py for the order."""

    # seed 三.1: 对周边环境影响较大、工艺装备较为落后 … 位于生态管控区内 → 关闭退出
    close_flags: tuple[str, ...] = ("ecological_control_zone", "backward_equipment", "large_environmental_impact")
    hazard_flags: tuple[str, ...] = ("safety_hazard", "environmental_hazard")
    # seed 三.1 / domain.md: safety or environmental hazards call for closure, whatever the class (转型转移 is for
    # "安全环保压力较小", 改造升级 for "环境友好型"); a county reading "较多隐患" as "a hazard and class D" narrows it
    close_with_hazard_classes: tuple[str, ...] = ("A", "B", "C", "D")
    relocate_classes: tuple[str, ...] = ("C", "D")  # outside a park
    upgrade_classes: tuple[str, ...] = ("A", "B")  # outside a park; in a park they need nothing


class AssessmentPolicy(FrozenModel):
    county: str = Field(pattern=r"^[0-9]{6}$")  # county region code
    year: int = Field(ge=1990, le=2200)
    version: int = Field(ge=1)
    indicators: tuple[IndicatorDefinition, ...]
    # weighted emission total = sum of weight x tonnes over these pollutants; others are not counted
    emission_weights: dict[str, PositiveDecimal]
    group_rule: GroupRule = GroupRule()
    groups: tuple[GroupPolicy, ...]
    bonus_penalty: tuple[BonusPenaltyItem, ...] = ()
    class_rule: ClassRule
    exclusions: tuple[ExclusionRule, ...] = ()
    treatments: dict[str, Treatment] = Field(default_factory=dict)
    disposition: DispositionRules = DispositionRules()
    admission: AdmissionPolicy = AdmissionPolicy()
    cluster_group: str = GROUP_ABOVE  # whose weights and benchmarks rank clusters

    @model_validator(mode="after")
    def _check(self) -> "AssessmentPolicy":
        codes = [i.code for i in self.indicators]
        if len(set(codes)) != len(codes):
            raise ValueError("indicator codes repeat")
        names = [g.name for g in self.groups]
        if sorted(names) != sorted([GROUP_ABOVE, GROUP_BELOW]):
            raise ValueError(f"groups must be exactly {GROUP_ABOVE} and {GROUP_BELOW}")
        for g in self.groups:
            for t in g.terms:
                if t.indicator not in codes:
                    raise ValueError(f"group {g.name} uses unknown indicator {t.indicator}")
        if self.cluster_group not in names:
            raise ValueError("cluster_group must name a group")
        bands = set(self.class_rule.labels)
        excluded = {e.label for e in self.exclusions}
        if bands & excluded:
            raise ValueError("an exclusion label repeats a class label")
        unknown = set(self.treatments) - bands - excluded
        if unknown:
            raise ValueError(f"treatments for unknown classes: {sorted(unknown)}")
        d = self.disposition
        # an exclusion label (T) may be a close-with-hazard class (disposition.py rule 5: hazards close those too);
        # relocate and upgrade rules apply to ranked classes only
        unknown = (set(d.relocate_classes) | set(d.upgrade_classes)) - bands
        unknown |= set(d.close_with_hazard_classes) - bands - excluded
        if unknown:
            raise ValueError(f"disposition names unknown classes: {sorted(unknown)}")
        return self

    def indicator(self, code: str) -> IndicatorDefinition:
        for i in self.indicators:
            if i.code == code:
                return i
        raise KeyError(code)

    def group(self, name: str) -> GroupPolicy:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def content_hash(self) -> str:
        return content_hash(self)


class BenchmarkUnavailable(ValueError):
    def __init__(self, group: str, indicator: str):
        super().__init__(f"relative benchmark of {indicator} in {group} needs last year's county average")
        self.reason = "benchmark_needs_last_year_average"
        self.group = group
        self.indicator = indicator


Benchmarks = Mapping[str, Mapping[str, Decimal]]  # group -> indicator -> benchmark


def resolve_benchmarks(policy: AssessmentPolicy, last_year_averages: Benchmarks | None = None) -> dict[str, dict[str, Decimal]]:
    """Fixed benchmarks as written; relative ones as factor x last year's average of the same group and
    indicator, quantized to 4 places (exact.py). A missing or non-positive average is an error."""
    out: dict[str, dict[str, Decimal]] = {}
    for g in policy.groups:
        out[g.name] = {}
        for t in g.terms:
            b = t.benchmark
            if isinstance(b, FixedBenchmark):
                out[g.name][t.indicator] = b.value
                continue
            avg = (last_year_averages or {}).get(g.name, {}).get(t.indicator)
            if avg is None or avg <= 0:
                raise BenchmarkUnavailable(g.name, t.indicator)
            value = quantize(to_fraction(b.factor) * to_fraction(avg))
            if value <= 0:
                raise BenchmarkUnavailable(g.name, t.indicator)
            out[g.name][t.indicator] = value
    return out


# -- defaults -----------------------------------------------------------------------------------------

DEFAULT_INDICATORS = (
    IndicatorDefinition(code="tax_per_mu", name="亩均税收", numerator="tax", denominator="land"),
    IndicatorDefinition(code="revenue_per_mu", name="亩均销售收入", numerator="revenue", denominator="land"),
    IndicatorDefinition(code="value_added_per_mu", name="亩均增加值", numerator="value_added", denominator="land"),
    IndicatorDefinition(
        code="value_added_per_energy", name="单位能耗增加值", numerator="value_added", denominator="energy"
    ),
    IndicatorDefinition(
        code="value_added_per_emission",
        name="单位排放增加值",
        numerator="value_added",
        denominator="emissions",
        on_zero_denominator="full_term",
    ),
    IndicatorDefinition(
        code="labour_productivity", name="全员劳动生产率", numerator="value_added", denominator="employees"
    ),
    IndicatorDefinition(code="rnd_ratio", name="研发经费占比", numerator="rnd", denominator="revenue", multiplier=Decimal(100)),
    IndicatorDefinition(
        code="tax_per_electricity", name="单位电耗税收", numerator="tax", denominator="electricity"
    ),
)


def _fixed(v: str) -> FixedBenchmark:
    return FixedBenchmark(value=Decimal(v))


def default_policy(county: str, year: int, version: int = 1) -> AssessmentPolicy:
    """Jiangsu/Nantong-style defaults. Weights follow the brief; the fixed benchmarks are placeholders in
    each indicator's unit (万元/亩, 万元/tce, 万元/t, 万元/人, %, 万元/万kWh) that a county replaces with
    its own standard or with a relative benchmark (e.g. 2 x last year's county average)."""
    above = GroupPolicy(
        name=GROUP_ABOVE,
        terms=(
            WeightedTerm(indicator="tax_per_mu", weight=Decimal(40), benchmark=_fixed("30")),
            WeightedTerm(indicator="revenue_per_mu", weight=Decimal(25), benchmark=_fixed("600")),
            WeightedTerm(indicator="value_added_per_energy", weight=Decimal(15), benchmark=_fixed("3")),
            WeightedTerm(
                indicator="value_added_per_emission", weight=Decimal(10), benchmark=_fixed("200"), missing="group_average"
            ),
            WeightedTerm(indicator="labour_productivity", weight=Decimal(5), benchmark=_fixed("30")),
            WeightedTerm(indicator="rnd_ratio", weight=Decimal(5), benchmark=_fixed("3")),
        ),
    )
    below = GroupPolicy(
        name=GROUP_BELOW,
        terms=(
            WeightedTerm(indicator="tax_per_mu", weight=Decimal(60), benchmark=_fixed("10")),
            WeightedTerm(indicator="tax_per_electricity", weight=Decimal(40), benchmark=_fixed("0.3")),
        ),
    )
    rank = ClassRule(
        mode="rank",
        bands=(
            ClassBand(label="A", cumulative_share=Decimal("0.20"), meaning="优先发展"),
            ClassBand(label="B", cumulative_share=Decimal("0.60"), meaning="鼓励提升"),
            ClassBand(label="C", cumulative_share=Decimal("0.95"), meaning="监管调控"),
            ClassBand(label="D", cumulative_share=Decimal(1), meaning="落后整治"),
        ),
    )
    priority = Treatment(land_priority=True, energy_priority=True, emission_priority=True)
    return AssessmentPolicy(
        county=county,
        year=year,
        version=version,
        indicators=DEFAULT_INDICATORS,
        emission_weights={p: Decimal(1) for p in ("COD", "NH3-N", "SO2", "NOx")},
        groups=(above, below),
        bonus_penalty=(
            BonusPenaltyItem(code="high_tech", flag="high_tech", points=Decimal(3), description="高新技术企业"),
            BonusPenaltyItem(code="specialized_sme", flag="specialized_sme", points=Decimal(3), description="专精特新"),
            BonusPenaltyItem(code="safety_hazard", flag="safety_hazard", points=Decimal(-5), description="安全隐患"),
            BonusPenaltyItem(
                code="environmental_hazard", flag="environmental_hazard", points=Decimal(-5), description="环保隐患"
            ),
        ),
        class_rule=rank,
        exclusions=(
            ExclusionRule(flag="utility", description="公用事业"),
            ExclusionRule(flag="under_two_years", description="投产不满两年"),
        ),
        treatments={
            "A": priority,
            "B": priority,
            "C": Treatment(new_construction_land_allowed=False, note="不新增建设用地"),
            "D": Treatment(
                electricity_surcharge_yuan_per_kwh=Decimal("0.1"),
                water_surcharge_yuan_per_m3=Decimal("1"),
                gas_surcharge_yuan_per_m3=Decimal("0.2"),
                sewage_surcharge_yuan_per_t=Decimal("1"),
                new_construction_land_allowed=False,
                industrial_land_allowed=False,
                note="差别化价格, 不供工业用地",
            ),
        },
    )


__all__ = [
    "AssessmentPolicy",
    "BenchmarkUnavailable",
    "BonusPenaltyItem",
    "ClassBand",
    "ClassRule",
    "DispositionRules",
    "ExclusionRule",
    "FixedBenchmark",
    "GroupPolicy",
    "GroupRule",
    "IndicatorDefinition",
    "RelativeBenchmark",
    "Treatment",
    "WeightedTerm",
    "default_policy",
    "resolve_benchmarks",
]


def land_quota_allowed(policy: AssessmentPolicy, class_label: str | None) -> bool:
    """Whether the treatment table lets an applicant of this class have construction land (the quota pool's land is
    new construction land, for industry): both flags of the class's treatment; a class the table does not name, or
    an applicant without one (a new investor), may."""
    t = policy.treatments.get(class_label) if class_label is not None else None
    return t is None or (t.new_construction_land_allowed and t.industrial_land_allowed)

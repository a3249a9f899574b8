"""Enterprises and their yearly indicators, in integer units.

Units inside (the ``scale`` is the number of decimals of the outside figure):
land 0.0001 亩 (4); tax, revenue, value_added, rnd in fen (2); energy 0.001 tce (3);
electricity kWh (0); emissions 0.0001 t per pollutant (4); employees persons (0).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Collection, Mapping

from .credit_code import require_credit_code

GROUP_ABOVE = "规上"  # 规模以上: above the revenue threshold
GROUP_BELOW = "规下"
SCALES = (GROUP_ABOVE, GROUP_BELOW)

FLAG_NAMES = (
    "ecological_control_zone",
    "safety_hazard",
    "environmental_hazard",
    "under_two_years",
    "utility",
    "backward_equipment",
    "large_environmental_impact",  # 对周边环境影响较大 (seed 三.1, the first ground for closure)
)

# field -> (scale of its integer unit, divisor from integer units to the unit indicators are quoted in)
SCALAR_FIELDS: dict[str, tuple[int, int, str]] = {
    "land": (4, 10**4, "亩"),
    "tax": (2, 10**6, "万元"),
    "revenue": (2, 10**6, "万元"),
    "value_added": (2, 10**6, "万元"),
    "energy": (3, 10**3, "tce"),
    "electricity": (0, 10**4, "万kWh"),
    "rnd": (2, 10**6, "万元"),
    "employees": (0, 1, "人"),
}
EMISSIONS_SCALE, EMISSIONS_DIVISOR = 4, 10**4  # 0.0001 t inside, t in indicators
RATIO_FIELDS = (*SCALAR_FIELDS, "emissions")  # what an indicator may divide
MAY_BE_NEGATIVE = frozenset({"value_added"})  # a loss-making year has negative value added

_TOWNSHIP = re.compile(r"^[0-9]{9}([0-9]{3})?$")  # ASCII digits: \d takes full-width ones too
# A park or cluster code, as settlement's parties (park:<code>) and the register, relocations and admission take it:
# one park is one cluster only if every door names it alike ('P-A ' with a space ranked as a second cluster)
PARK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
PARK_ID = re.compile(PARK_ID_PATTERN)
_INDUSTRY = re.compile(r"^[A-T]([0-9]{2,4})?$|^[0-9]{2,4}$")  # GB/T 4754: door letter and/or 2-4 digits

# The pollutants departments report, as they are spelled everywhere in this service: the shipped policy's
# emission weights, the import headers (rows.INDICATOR_COLUMNS). Pollutant names are matched exactly (a policy
# weights 'NOx', not 'nox'), so a name that is one of these in other letters, or without its hyphen (the
# ledger's asset codes NH3N, NOX, VOCS), is refused rather than kept as a pollutant nobody weights. A county
# policy may weight a pollutant not in this list (e.g. TP, total phosphorus): other names are taken as they are,
# if a figure can carry them (ASCII letters, digits and '-', fields.py; a weight for '总磷' is refused, policies.py).
POLLUTANTS = ("COD", "NH3-N", "SO2", "NOx", "VOCs")
_POLLUTANT_KEYS = {p.casefold().replace("-", ""): p for p in POLLUTANTS}


def pollutant_spelling_problem(name: str) -> tuple[str, str] | None:
    """(reason, canonical spelling) when ``name`` is a known pollutant spelled otherwise: 'pollutant_name_case'
    ('nox' for 'NOx'), 'pollutant_name_variant' ('NH3N' for 'NH3-N'); None for a canonical or unknown name."""
    canonical = _POLLUTANT_KEYS.get(name.casefold().replace("-", ""))
    if canonical is None or canonical == name:
        return None
    return ("pollutant_name_case" if canonical.casefold() == name.casefold() else "pollutant_name_variant"), canonical


_NAMED_FLAGS = attrgetter(*FLAG_NAMES)
_FLAG_SET = frozenset(FLAG_NAMES)
_NO_FLAGS: frozenset[str] = frozenset()


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Enterprise:
    credit_code: str
    name: str
    township_code: str  # 9-digit township or 12-digit village region code; first 6 = county
    in_park: bool
    industry_code: str
    park_id: str | None = None  # park or cluster (集聚区) it sits in, used for cluster ranking
    ecological_control_zone: bool = False
    safety_hazard: bool = False
    environmental_hazard: bool = False
    under_two_years: bool = False
    utility: bool = False
    backward_equipment: bool = False
    large_environmental_impact: bool = False
    extra_flags: frozenset[str] = frozenset()  # county-specific flags, e.g. 'high_tech' for a bonus
    scale: str | None = None  # '规上' / '规下' when the statistics bureau says so; None: by policy rule

    def __post_init__(self) -> None:
        require_credit_code(self.credit_code)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("an enterprise needs a name")
        if not isinstance(self.township_code, str) or not _TOWNSHIP.match(self.township_code):
            raise ValueError(f"township code {self.township_code!r} must be 9 or 12 digits")
        if not isinstance(self.industry_code, str) or not _INDUSTRY.match(self.industry_code):
            raise ValueError(f"industry code {self.industry_code!r} is not a GB/T 4754 code")
        named = _NAMED_FLAGS(self)
        if type(self.in_park) is not bool or not all(type(v) is bool for v in named):
            for name in ("in_park", *FLAG_NAMES):
                if not isinstance(getattr(self, name), bool):
                    raise ValueError(f"{name} must be a bool")
        if self.scale is not None and self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES} or None")
        if self.park_id is not None and (not isinstance(self.park_id, str) or not self.park_id):
            raise ValueError("park_id must be a non-empty string or None")
        if type(self.extra_flags) is not frozenset:
            object.__setattr__(self, "extra_flags", frozenset(self.extra_flags))
        clash = self.extra_flags & _FLAG_SET
        if clash:
            raise ValueError(f"extra flags repeat a named flag: {sorted(clash)}")
        # asked many times per enterprise in a run (exclusions, disposition); not a field: eq and hash ignore it
        flags = _NO_FLAGS if not any(named) else frozenset(n for n, v in zip(FLAG_NAMES, named) if v)
        object.__setattr__(self, "_flags", flags | self.extra_flags if self.extra_flags else flags)

    @property
    def county_code(self) -> str:
        return self.township_code[:6]

    def flags(self) -> frozenset[str]:
        """Names of every flag that is set, named and extra."""
        return self._flags  # type: ignore[attr-defined]

    def has_flag(self, name: str) -> bool:
        return name in self._flags  # type: ignore[attr-defined]


# The county's own part: its figures settle what departments disagree on (merge_indicators). Sent as any part is,
# by whoever may publish IndicatorsReported:county (the county's assessment office: assessment:write).
COUNTY_PART = "county"


class IndicatorConflict(ValueError):
    """Two departments gave different values for one field; the caller decides, we never guess."""

    def __init__(self, credit_code: str, year: int, field_name: str, kept_by: str, offered_by: str):
        settle = ("the county's figure stands until the county changes it" if kept_by == COUNTY_PART else
                  f"the county settles it with a part of department {COUNTY_PART!r}")
        super().__init__(
            f"{credit_code}/{year}: {field_name} was given by {kept_by}; {offered_by} gives a different value ({settle})"
        )
        self.reason = "conflicting_departments"
        self.field = field_name
        self.kept_by = kept_by
        self.offered_by = offered_by


class NotGiven(ValueError):
    """A department takes back a figure its part does not hold."""

    def __init__(self, credit_code: str, year: int, department: str, names: list[str]):
        super().__init__(f"{credit_code}/{year}: department {department!r} gave no {', '.join(names)}")
        self.reason = "figure_not_given"
        self.fields = names


def withdraw_figures(credit_code: str, year: int, figures: Mapping[str, object], sources: Mapping[str, str],
                     parts: Mapping[str, Mapping[str, object]], department: str,
                     names: Collection[str]) -> tuple[dict, dict, dict]:
    """A department takes back figures of its part (sent for the wrong enterprise or year, or a county's settlement
    no longer needed). ``figures``/``sources``: the merged record; ``parts``: department -> what it gave.

    Returns the merged figures, their sources and the department's part afterwards. A figure whose source is another
    department stays (this one had only agreed with it). One whose source it was falls back on the others' parts:
    gone if none gave it, theirs if they agree (sourced to the first of them by name, as a replay decides too), and
    refused (IndicatorConflict) if they disagree: the county's figure settles that, it can be changed, not taken back.
    """
    part = dict(parts.get(department) or {})
    missing = sorted(n for n in set(names) if n not in part)
    if missing:
        raise NotGiven(credit_code, year, department, missing)
    figures, sources = dict(figures), dict(sources)
    for name in sorted(set(names)):
        del part[name]
        if sources.get(name) != department:
            continue
        left = {d: p[name] for d, p in parts.items() if d != department and name in p}
        if not left:
            figures.pop(name, None)
            sources.pop(name, None)
            continue
        first, *others = sorted(left)
        for other in others:
            if left[other] != left[first]:
                raise IndicatorConflict(credit_code, year, name, first, other)
        figures[name], sources[name] = left[first], first
    return figures, sources, part


@dataclass(frozen=True)
class YearlyIndicators:
    """One enterprise's figures for one year; any field may be missing (None).

    ``sources`` names the department behind each field; emissions are tracked per pollutant as
    'emissions.<pollutant>'. Records built by hand (tests, what-if) may leave it empty.
    """

    credit_code: str
    year: int
    land: int | None = None
    tax: int | None = None
    revenue: int | None = None
    value_added: int | None = None
    energy: int | None = None
    electricity: int | None = None
    emissions: Mapping[str, int] | None = None
    rnd: int | None = None
    employees: int | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_credit_code(self.credit_code)
        if not _is_int(self.year) or not 1990 <= self.year <= 2200:
            raise ValueError(f"year {self.year!r} is not a plausible year")
        for name, v in zip(SCALAR_FIELDS, _SCALARS(self)):
            if v is None or (type(v) is int and v >= 0):
                continue
            if not _is_int(v):
                raise ValueError(f"{name} must be an integer of its unit, got {type(v).__name__}")
            if v < 0 and name not in MAY_BE_NEGATIVE:
                raise ValueError(f"{name} must not be negative")
        if self.emissions is not None:
            em = dict(self.emissions)
            for pollutant, v in em.items():
                if not isinstance(pollutant, str) or not pollutant:
                    raise ValueError("pollutant names are non-empty strings")
                if not _is_int(v) or v < 0:
                    raise ValueError(f"emission of {pollutant} must be a non-negative integer")
            object.__setattr__(self, "emissions", dict(sorted(em.items())))  # a copy: callers' dicts stay theirs
        object.__setattr__(self, "sources", dict(sorted(dict(self.sources).items())))

    @classmethod
    def part(cls, credit_code: str, year: int, department: str, **values: object) -> "YearlyIndicators":
        """What one department sends: its fields, each sourced to it."""
        if not department:
            raise ValueError("a part names its department")
        unknown = set(values) - set(RATIO_FIELDS)
        if unknown:
            raise ValueError(f"unknown indicator fields: {sorted(unknown)}")
        sources = {k: department for k, v in values.items() if v is not None and k != "emissions"}
        emissions = values.get("emissions")
        if emissions is not None:
            sources.update({f"emissions.{p}": department for p in emissions})  # type: ignore[union-attr]
        return cls(credit_code=credit_code, year=year, sources=sources, **values)  # type: ignore[arg-type]

    def set_fields(self) -> dict[str, object]:
        """Field -> value for every field present; emissions expanded to 'emissions.<pollutant>'."""
        known = self.__dict__.get("_set_fields")  # asked three times per row of an import: made once
        if known is None:
            known = {n: v for n, v in zip(SCALAR_FIELDS, _SCALARS(self)) if v is not None}
            for p, v in (self.emissions or {}).items():
                known[f"emissions.{p}"] = v
            object.__setattr__(self, "_set_fields", known)
        return dict(known)

    def to_plain(self) -> dict:
        d = self.figures_plain()
        d["sources"] = dict(self.sources)
        return d

    def figures_plain(self) -> dict:
        """The figures without who gave them: what an evaluation is judged on."""
        d = {name: getattr(self, name) for name in _FIGURE_FIELDS}
        d["emissions"] = dict(self.emissions) if self.emissions is not None else None
        return d


_FIGURE_FIELDS = tuple(f.name for f in fields(YearlyIndicators) if f.name != "sources")
_SCALARS = attrgetter(*SCALAR_FIELDS)
_NO_FIGURES = {n: None for n in SCALAR_FIELDS}
_NEW = object.__new__


def checked_indicators(credit_code: str, year: int, values: dict[str, int], emissions: dict[str, int] | None,
                       sources: dict[str, str]) -> YearlyIndicators:
    """YearlyIndicators(credit_code, year, **values, emissions=emissions, sources=sources) without running
    __post_init__ again, for values a fast path has already checked as it would (a valid credit code, a
    plausible year, integers, negative only where allowed) and dicts it made in sorted key order (the order
    __post_init__ would give them). A county's import and evaluation make 100,000 of these each."""
    obj = _NEW(YearlyIndicators)
    d = obj.__dict__
    d["credit_code"] = credit_code
    d["year"] = year
    d.update(_NO_FIGURES)
    d.update(values)
    d["emissions"] = emissions
    d["sources"] = sources
    return obj


def checked_enterprise(credit_code: str, name: str, township_code: str, in_park: bool, industry_code: str,
                       park_id: str | None, named: tuple[bool, ...], extra_flags: frozenset[str],
                       scale: str | None) -> Enterprise:
    """Enterprise(...) without running __post_init__ again, for values already checked as it checks them
    (named: the FLAG_NAMES in their order; extra_flags a frozenset without a named flag)."""
    obj = _NEW(Enterprise)
    d = obj.__dict__
    d["credit_code"] = credit_code
    d["name"] = name
    d["township_code"] = township_code
    d["in_park"] = in_park
    d["industry_code"] = industry_code
    d["park_id"] = park_id
    d.update(zip(FLAG_NAMES, named))
    d["extra_flags"] = extra_flags
    d["scale"] = scale
    flags = _NO_FLAGS if True not in named else frozenset(n for n, v in zip(FLAG_NAMES, named) if v)
    d["_flags"] = flags | extra_flags if extra_flags else flags
    return obj


def merge_indicators(base: YearlyIndicators | None, part: YearlyIndicators,
                     others: Mapping[str, Mapping[str, object]] | None = None) -> YearlyIndicators:
    """Apply a department's part on top of what is known.

    A field from the same department as before is overridden (a correction), unless another department's part
    (``others``: department -> the figures it gave) holds another value for it; the same value from another
    department keeps the first source; a different value from another department is an IndicatorConflict.
    Whoever reported first, a figure two departments disagree on is refused. The county's part (COUNTY_PART)
    overrides any department's figure and is overridden by none: without it a figure two departments gave alike
    could never be corrected (each correction conflicted with the other's part).
    """
    given = part.set_fields()
    missing = [k for k in given if k not in part.sources]
    if missing:
        raise ValueError(f"a part must name the department of every field; unsourced: {missing}")
    if base is None:
        return part
    if (base.credit_code, base.year) != (part.credit_code, part.year):
        raise ValueError("a part merges only into the same enterprise and year")
    known = base.set_fields()
    values: dict[str, object] = {n: getattr(base, n) for n in SCALAR_FIELDS}
    emissions = dict(base.emissions) if base.emissions is not None else None
    sources = dict(base.sources)
    for key, value in given.items():
        dept = part.sources[key]
        if key in known and dept != COUNTY_PART:
            kept_by = sources.get(key)
            if kept_by is not None and kept_by != dept:
                if known[key] != value:
                    raise IndicatorConflict(base.credit_code, base.year, key, kept_by, dept)
                continue  # same figure, first source stays
            if known[key] != value:  # a correction: no other department may stand by the old figure
                for other, figures in (others or {}).items():
                    if other != dept and key in figures and figures[key] != value:
                        raise IndicatorConflict(base.credit_code, base.year, key, other, dept)
        sources[key] = dept
        if key.startswith("emissions."):
            emissions = emissions or {}
            emissions[key.split(".", 1)[1]] = value  # type: ignore[assignment]
        else:
            values[key] = value
    return replace(base, **values, emissions=emissions, sources=sources)  # type: ignore[arg-type]

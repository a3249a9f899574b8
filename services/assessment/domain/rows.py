"""One CSV/XLSX row -> YearlyIndicators or Enterprise, with a reason for every bad field.

Headers may be Chinese or English, with the unit in brackets or as a suffix: '实缴税金(万元)',
'tax_wan_yuan', '用电量(万千瓦时)', 'electricity_kwh'. Money without a unit is 元, electricity kWh.
The unit decides the scale, so every figure lands in its integer unit without rounding
(万元 at scale 6 is fen, 万kWh at scale 4 is kWh). A number with more decimals than its unit allows is
an error, never rounded. Cells are strings; an XLSX numeric cell may arrive as int or float (a float is
read through its shortest repr, which is what was typed). Unknown columns are ignored and listed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from shared.amounts import AmountError, parse_amount
from shared.text_files import normalize_header, number_text

from .credit_code import credit_code_problem, normalize_credit_code
from .enterprise import FLAG_NAMES, GROUP_ABOVE, GROUP_BELOW, MAY_BE_NEGATIVE, Enterprise, YearlyIndicators

Cell = str | int | float | bool | None


@dataclass(frozen=True)
class FieldError:
    field: str  # our field name ('emissions.COD' for a pollutant), or 'row'
    column: str | None  # the header as written in the file
    reason: str  # machine-readable, see REASONS
    message: str
    detail: str | None = None  # e.g. the credit-code problem


REASONS = (
    "missing_required", "not_a_number", "too_many_decimals", "negative", "bad_credit_code", "bad_year",
    "year_mismatch", "not_a_boolean", "bad_value", "duplicate_column", "unsupported_unit", "empty_row",
    "too_many_cells", "formula_without_value",
)


class RowError(ValueError):
    def __init__(self, errors: Iterable[FieldError], row_number: int | None = None):
        self.errors = tuple(errors)
        self.row_number = row_number
        where = f"row {row_number}: " if row_number is not None else ""
        super().__init__(where + "; ".join(f"{e.field}: {e.message}" for e in self.errors))


# -- headers ----------------------------------------------------------------------------------------

UNIT_SCALES = {"yuan": 2, "wan_yuan": 6, "mu": 4, "tce": 3, "kwh": 0, "wan_kwh": 4, "t": 4, "persons": 0}
_UNIT_WORDS = {
    "元": "yuan", "yuan": "yuan", "万元": "wan_yuan", "wan": "wan_yuan", "wan_yuan": "wan_yuan",
    "亩": "mu", "mu": "mu", "吨标准煤": "tce", "吨标煤": "tce", "tce": "tce",
    "千瓦时": "kwh", "kwh": "kwh", "度": "kwh", "万千瓦时": "wan_kwh", "万kwh": "wan_kwh", "万度": "wan_kwh",
    "wan_kwh": "wan_kwh", "吨": "t", "t": "t", "人": "persons",
}
_MONEY = ("yuan", "wan_yuan")
# field -> (header bases, allowed units, unit when none is written)
INDICATOR_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "credit_code": (("统一社会信用代码", "社会信用代码", "信用代码", "credit_code", "uscc"), (), ""),
    "year": (("年度", "年份", "year"), (), ""),
    "land": (("用地面积", "实际用地面积", "占地面积", "land"), ("mu",), "mu"),
    "tax": (("实缴税金", "税收", "实缴税收", "tax"), _MONEY, "yuan"),
    "revenue": (("销售收入", "营业收入", "revenue"), _MONEY, "yuan"),
    "value_added": (("工业增加值", "增加值", "value_added"), _MONEY, "yuan"),
    "energy": (("综合能耗", "能耗", "energy"), ("tce",), "tce"),
    "electricity": (("用电量", "总用电量", "electricity"), ("kwh", "wan_kwh"), "kwh"),
    "rnd": (("研发经费", "研发投入", "r&d", "rnd"), _MONEY, "yuan"),
    "employees": (("年平均职工人数", "从业人员", "从业人员数", "职工人数", "employees"), ("persons",), "persons"),
    "emissions.COD": (("cod", "化学需氧量", "emission_cod", "emissions_cod"), ("t",), "t"),
    "emissions.NH3-N": (("nh3-n", "nh3n", "氨氮", "emission_nh3n", "emissions_nh3n"), ("t",), "t"),
    "emissions.SO2": (("so2", "二氧化硫", "emission_so2", "emissions_so2"), ("t",), "t"),
    "emissions.NOx": (("nox", "氮氧化物", "emission_nox", "emissions_nox"), ("t",), "t"),
    "emissions.VOCs": (("vocs", "voc", "挥发性有机物", "emission_vocs", "emissions_vocs"), ("t",), "t"),
}
ENTERPRISE_COLUMNS: dict[str, tuple[str, ...]] = {
    "credit_code": INDICATOR_COLUMNS["credit_code"][0],
    "name": ("企业名称", "单位名称", "名称", "name", "enterprise_name"),
    "township_code": ("乡镇代码", "乡镇区划代码", "所属乡镇代码", "区划代码", "township_code", "township"),
    "in_park": ("是否在园区", "是否入园", "园区内", "in_park"),
    "park_id": ("园区编号", "集聚区编号", "园区", "集聚区", "park_id", "cluster_id"),
    "industry_code": ("行业代码", "所属行业代码", "industry_code", "industry"),
    "scale": ("规模", "企业规模", "规上规下", "scale"),
    "ecological_control_zone": ("生态管控区", "位于生态管控区", "是否位于生态管控区", "ecological_control_zone"),
    "safety_hazard": ("安全隐患", "safety_hazard"),
    "environmental_hazard": ("环保隐患", "environmental_hazard"),
    "under_two_years": ("投产不满两年", "投产未满两年", "under_two_years"),
    "utility": ("公用事业", "utility"),
    "backward_equipment": ("工艺装备落后", "落后装备", "backward_equipment"),
    "large_environmental_impact": ("周边环境影响较大", "对周边环境影响较大", "环境影响较大", "large_environmental_impact"),
    "extra_flags": ("其他标记", "extra_flags"),
}


def _split_unit(h: str) -> tuple[str, str | None]:
    m = re.match(r"^(.+?)\((.+)\)$", h)
    if m:
        return m.group(1), m.group(2)
    for suffix in ("_wan_yuan", "_wan_kwh", "_yuan", "_wan", "_kwh", "_mu", "_tce", "_t"):
        if h.endswith(suffix) and len(h) > len(suffix):
            return h[: -len(suffix)], suffix[1:]
    return h, None


@dataclass(frozen=True)
class Column:
    field: str
    unit: str  # key of UNIT_SCALES, or '' for text columns


@dataclass(frozen=True)
class ColumnMap:
    columns: dict[str, Column]  # header as written -> what it holds
    ignored: tuple[str, ...]
    errors: tuple[FieldError, ...]  # header problems: every row of the file fails with them


def _lookup(h: str, table: Mapping[str, tuple[str, ...]]) -> str | None:
    for f, bases in table.items():
        if h in bases:
            return f
    return None


def map_indicator_columns(headers: Iterable[str]) -> ColumnMap:
    bases = {f: spec[0] for f, spec in INDICATOR_COLUMNS.items()}
    columns: dict[str, Column] = {}
    ignored: list[str] = []
    errors: list[FieldError] = []
    seen: dict[str, str] = {}
    for header in headers:
        h = normalize_header(header)
        f = _lookup(h, bases)
        unit_word = None
        if f is None:
            base, unit_word = _split_unit(h)
            f = _lookup(base, bases)
        if f is None:
            ignored.append(header)
            continue
        _, allowed, default = INDICATOR_COLUMNS[f]
        unit = default
        if unit_word is not None:
            unit = _UNIT_WORDS.get(unit_word, "")
            if unit not in allowed:
                errors.append(FieldError(f, header, "unsupported_unit", f"unit {unit_word!r} is not accepted for {f}"))
                continue
        if f in seen:
            errors.append(FieldError(f, header, "duplicate_column", f"{f} is given by {seen[f]!r} and {header!r}"))
            continue
        seen[f] = header
        columns[header] = Column(f, unit)
    return ColumnMap(columns, tuple(ignored), tuple(errors))


def map_enterprise_columns(headers: Iterable[str]) -> ColumnMap:
    columns: dict[str, Column] = {}
    ignored: list[str] = []
    errors: list[FieldError] = []
    seen: dict[str, str] = {}
    for header in headers:
        f = _lookup(normalize_header(header), ENTERPRISE_COLUMNS)
        if f is None:
            ignored.append(header)
        elif f in seen:
            errors.append(FieldError(f, header, "duplicate_column", f"{f} is given by {seen[f]!r} and {header!r}"))
        else:
            seen[f] = header
            columns[header] = Column(f, "")
    return ColumnMap(columns, tuple(ignored), tuple(errors))


# -- cells ------------------------------------------------------------------------------------------

_AMOUNT_REASONS = {
    "amount_not_a_number": "not_a_number",
    "amount_not_a_decimal_string": "not_a_number",
    "amount_exceeds_scale": "too_many_decimals",
    "amount_must_not_be_negative": "negative",
}


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "1" if cell else "0"
    if isinstance(cell, float):
        return repr(cell)
    return str(cell).strip()


def is_blank_row(row: Mapping[str, Cell]) -> bool:
    return all(_text(v) == "" for v in row.values())


def _number(text: str, scale: int, negative_ok: bool) -> int:
    # full-width figures and grouped thousands (shared.text_files; careful path only: the fast one is ASCII)
    return parse_amount(number_text(text), scale, allow_zero=True, allow_negative=negative_ok)


_TRUE = {"是", "y", "yes", "true", "1", "√", "t"}
_FALSE = {"否", "n", "no", "false", "0", "×", "f", ""}


def bool_of(text: str) -> bool | None:
    t = text.lower()
    return True if t in _TRUE else False if t in _FALSE else None


SCALE_WORDS = {"规上": GROUP_ABOVE, "规模以上": GROUP_ABOVE, "above": GROUP_ABOVE,
               "规下": GROUP_BELOW, "规模以下": GROUP_BELOW, "below": GROUP_BELOW}


def split_extra_flags(text: str) -> frozenset[str]:
    return frozenset(p.strip() for p in re.split(r"[;,，；、\s]+", text) if p.strip())


def _credit_code(text: str, column: str, errors: list[FieldError]) -> str | None:
    if not text:
        errors.append(FieldError("credit_code", column, "missing_required", "the credit code is required"))
        return None
    code = normalize_credit_code(text)
    problem = credit_code_problem(code)
    if problem:
        errors.append(FieldError("credit_code", column, "bad_credit_code", problem.message, problem.reason))
        return None
    return code


def _cells(row: Mapping[str, Cell], cmap: ColumnMap) -> dict[str, tuple[str, str, str]]:
    """field -> (header, unit, text) for the mapped columns of this row."""
    return {c.field: (h, c.unit, _text(row.get(h))) for h, c in cmap.columns.items() if h in row}


# -- rows -------------------------------------------------------------------------------------------


def parse_indicator_row(
    row: Mapping[str, Cell],
    *,
    department: str,
    year: int | None = None,
    columns: ColumnMap | None = None,
    row_number: int | None = None,
) -> YearlyIndicators:
    """A department's figures for one enterprise and year; ``year`` is the file's year when the row has
    no year column (and must agree when it has). Raises RowError listing every bad field."""
    cmap = columns or map_indicator_columns(row.keys())
    errors = list(cmap.errors)
    if is_blank_row(row):
        raise RowError([FieldError("row", None, "empty_row", "the row is empty")], row_number)
    cells = _cells(row, cmap)
    code_header, _, code_text = cells.get("credit_code", ("统一社会信用代码", "", ""))
    code = _credit_code(code_text, code_header, errors)

    row_year = year
    if "year" in cells and cells["year"][2]:
        header, _, text = cells["year"]
        try:
            row_year = _number(text, 0, False)
        except AmountError:
            row_year = None
        if row_year is None or not 1990 <= row_year <= 2200:
            errors.append(FieldError("year", header, "bad_year", f"{text!r} is not a year"))
        elif year is not None and row_year != year:
            errors.append(FieldError("year", header, "year_mismatch", f"row says {row_year}, the file is for {year}"))
    elif year is None:
        errors.append(FieldError("year", None, "missing_required", "the year is required (column or file year)"))

    values: dict[str, int] = {}
    emissions: dict[str, int] = {}
    for f, (header, unit, text) in cells.items():
        if f in ("credit_code", "year") or text == "":
            continue  # an empty cell means: this department does not report the field
        if isinstance(row.get(header), bool):  # an XLSX TRUE/FALSE cell: _text makes it "1"/"0" (for the flag columns)
            errors.append(FieldError(f, header, "not_a_number", f"{row.get(header)!r} is a yes/no cell, not a figure"))
            continue
        try:
            n = _number(text, UNIT_SCALES[unit], f in MAY_BE_NEGATIVE)
        except AmountError as e:
            reason = _AMOUNT_REASONS.get(e.reason, "not_a_number")
            errors.append(FieldError(f, header, reason, f"{text!r}: {e}"))
            continue
        if f.startswith("emissions."):
            emissions[f.split(".", 1)[1]] = n
        else:
            values[f] = n
    if errors:
        raise RowError(errors, row_number)
    return YearlyIndicators.part(
        code, row_year, department, **values, emissions=emissions or None  # type: ignore[arg-type]
    )


def parse_enterprise_row(row: Mapping[str, Cell], *, columns: ColumnMap | None = None, row_number: int | None = None) -> Enterprise:
    cmap = columns or map_enterprise_columns(row.keys())
    errors = list(cmap.errors)
    if is_blank_row(row):
        raise RowError([FieldError("row", None, "empty_row", "the row is empty")], row_number)
    cells = _cells(row, cmap)
    code_header, _, code_text = cells.get("credit_code", ("统一社会信用代码", "", ""))
    code = _credit_code(code_text, code_header, errors)
    out: dict[str, object] = {}

    for f in ("name", "township_code", "industry_code"):
        header, _, text = cells.get(f, (f, "", ""))
        if not text:
            errors.append(FieldError(f, header if f in cells else None, "missing_required", f"{f} is required"))
        else:
            out[f] = text.upper() if f == "industry_code" else text
    if "township_code" in out and not re.fullmatch(r"[0-9]{9}([0-9]{3})?", str(out["township_code"])):
        errors.append(FieldError("township_code", cells["township_code"][0], "bad_value", "a township code has 9 or 12 digits"))
    if "industry_code" in out and not re.fullmatch(r"[A-T]([0-9]{2,4})?|[0-9]{2,4}", str(out["industry_code"])):
        errors.append(FieldError("industry_code", cells["industry_code"][0], "bad_value", "not a GB/T 4754 industry code"))

    header, _, text = cells.get("in_park", ("in_park", "", ""))
    if "in_park" not in cells:
        out["in_park"] = False  # a file without the column: a registered enterprise keeps the register's (KEEPABLE)
    elif not text:
        errors.append(FieldError("in_park", header, "missing_required", "in_park is required"))
    else:
        b = bool_of(text)
        if b is None:
            errors.append(FieldError("in_park", header, "not_a_boolean", f"{text!r} is not yes/no"))
        out["in_park"] = b
    for f in FLAG_NAMES:
        if f in cells:
            header, _, text = cells[f]
            b = bool_of(text)
            if b is None:
                errors.append(FieldError(f, header, "not_a_boolean", f"{text!r} is not yes/no"))
            out[f] = b
    if "park_id" in cells and cells["park_id"][2]:
        out["park_id"] = cells["park_id"][2]
    if "scale" in cells and cells["scale"][2]:
        header, _, text = cells["scale"]
        scale = SCALE_WORDS.get(text.lower())
        if scale is None:
            errors.append(FieldError("scale", header, "bad_value", f"{text!r} is neither 规上 nor 规下"))
        out["scale"] = scale
    if "extra_flags" in cells and cells["extra_flags"][2]:
        extra = split_extra_flags(cells["extra_flags"][2])
        clash = extra & set(FLAG_NAMES)
        if clash:
            errors.append(FieldError("extra_flags", cells["extra_flags"][0], "bad_value", f"named flags in extra flags: {sorted(clash)}"))
        out["extra_flags"] = extra
    if errors:
        raise RowError(errors, row_number)
    try:
        return Enterprise(credit_code=code, **out)  # type: ignore[arg-type]
    except ValueError as e:  # a rule the row checks above did not foresee
        raise RowError([FieldError("row", None, "bad_value", str(e))], row_number) from None


# -- duplicates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateRows:
    key: tuple  # (credit_code, year) for indicators, (credit_code,) for enterprises
    row_numbers: tuple[int, ...]
    identical: bool  # a harmless re-send when True; conflicting figures when False


def row_key(value: YearlyIndicators | Enterprise) -> tuple:
    if isinstance(value, YearlyIndicators):
        return (value.credit_code, value.year)
    return (value.credit_code,)


def find_duplicate_rows(rows: Iterable[tuple[int, YearlyIndicators | Enterprise]]) -> list[DuplicateRows]:
    """Rows of one file that describe the same enterprise (and year), in order of first appearance."""
    first: dict[tuple, tuple[int, YearlyIndicators | Enterprise]] = {}
    repeats: dict[tuple, list[tuple[int, YearlyIndicators | Enterprise]]] = {}  # only keys seen again
    for number, value in rows:
        key = (value.credit_code, value.year) if type(value) is YearlyIndicators else row_key(value)
        if key in first:
            repeats.setdefault(key, [first[key]]).append((number, value))
        else:
            first[key] = (number, value)
    return [
        DuplicateRows(key, tuple(n for n, _ in items), all(v == items[0][1] for _, v in items))
        for key in first if (items := repeats.get(key)) is not None
    ]

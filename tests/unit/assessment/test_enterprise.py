import dataclasses

import pytest

from services.assessment.domain.credit_code import CreditCodeError
from services.assessment.domain.enterprise import IndicatorConflict, YearlyIndicators, merge_indicators

from .factories import MU, TONNE, WAN, YEAR, code, enterprise, figures


def test_enterprise_flags_and_county():
    e = enterprise(1, safety_hazard=True, extra_flags={"high_tech"}, township_code="320623101001")
    assert e.county_code == "320623"
    assert e.flags() == {"safety_hazard", "high_tech"}
    assert e.has_flag("high_tech") and not e.has_flag("utility")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"township_code": "3206231"}, "9 or 12 digits"),
        ({"industry_code": "C33111"}, "GB/T 4754"),
        ({"scale": "big"}, "scale"),
        ({"in_park": "yes"}, "in_park"),
        ({"extra_flags": {"utility"}}, "repeat a named flag"),
        ({"name": " "}, "name"),
    ],
)
def test_enterprise_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        enterprise(1, **kw)


def test_enterprise_rejects_bad_credit_code():
    c = code(1)
    wrong_check = c[:-1] + ("1" if c[-1] == "0" else "0")
    with pytest.raises(CreditCodeError):
        enterprise(1, credit_code=wrong_check)


@pytest.mark.parametrize(
    "kw",
    [{"land": -1}, {"tax": 1.5}, {"employees": True}, {"emissions": {"COD": -1}}, {"emissions": {"": 1}}, {"year": 1800}],
)
def test_indicators_reject(kw):
    with pytest.raises(ValueError):
        figures(1, **kw)


def test_value_added_may_be_negative():
    assert figures(1, value_added=-5 * WAN).value_added == -5 * WAN


def test_part_sources_every_field_to_its_department():
    p = YearlyIndicators.part(code(1), YEAR, "生态环境局", emissions={"COD": TONNE, "SO2": 2 * TONNE})
    assert p.sources == {"emissions.COD": "生态环境局", "emissions.SO2": "生态环境局"}
    with pytest.raises(ValueError, match="unknown"):
        YearlyIndicators.part(code(1), YEAR, "税务局", taxes=1)


def test_merge_parts_from_several_departments():
    tax = YearlyIndicators.part(code(1), YEAR, "税务局", tax=100 * WAN, revenue=2000 * WAN)
    land = YearlyIndicators.part(code(1), YEAR, "自然资源和规划局", land=10 * MU)
    env = YearlyIndicators.part(code(1), YEAR, "生态环境局", emissions={"COD": TONNE})
    env2 = YearlyIndicators.part(code(1), YEAR, "生态环境局", emissions={"SO2": 3 * TONNE})
    m = merge_indicators(merge_indicators(merge_indicators(merge_indicators(None, tax), land), env), env2)
    assert (m.tax, m.revenue, m.land) == (100 * WAN, 2000 * WAN, 10 * MU)
    assert m.emissions == {"COD": TONNE, "SO2": 3 * TONNE}
    assert m.sources == {
        "emissions.COD": "生态环境局",
        "emissions.SO2": "生态环境局",
        "land": "自然资源和规划局",
        "revenue": "税务局",
        "tax": "税务局",
    }


def test_later_part_of_the_same_department_overrides():
    first = YearlyIndicators.part(code(1), YEAR, "税务局", tax=100 * WAN)
    correction = YearlyIndicators.part(code(1), YEAR, "税务局", tax=90 * WAN)
    assert merge_indicators(first, correction).tax == 90 * WAN


def test_other_department_same_value_keeps_first_source_different_value_conflicts():
    first = YearlyIndicators.part(code(1), YEAR, "税务局", revenue=100 * WAN)
    same = YearlyIndicators.part(code(1), YEAR, "统计局", revenue=100 * WAN)
    other = YearlyIndicators.part(code(1), YEAR, "统计局", revenue=101 * WAN)
    assert merge_indicators(first, same).sources["revenue"] == "税务局"
    with pytest.raises(IndicatorConflict) as e:
        merge_indicators(first, other)
    assert (e.value.field, e.value.kept_by, e.value.offered_by) == ("revenue", "税务局", "统计局")


def test_merge_refuses_unsourced_or_foreign_parts():
    with pytest.raises(ValueError, match="department"):
        merge_indicators(None, figures(1, tax=1))
    with pytest.raises(ValueError, match="same enterprise"):
        merge_indicators(
            YearlyIndicators.part(code(1), YEAR, "税务局", tax=1),
            YearlyIndicators.part(code(2), YEAR, "税务局", tax=1),
        )


def test_indicators_are_plain_data():
    f = figures(1, emissions={"COD": 1})
    assert dataclasses.asdict(f)["emissions"] == {"COD": 1}
    assert dataclasses.replace(f, tax=5).tax == 5

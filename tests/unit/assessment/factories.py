"""Small builders for the assessment domain tests."""
from __future__ import annotations

from services.assessment.domain.credit_code import make_credit_code
from services.assessment.domain.enterprise import Enterprise, YearlyIndicators

COUNTY = "320623"  # 如东县
TOWNSHIP = "320623101"
YEAR = 2023

WAN = 10**6  # fen in one 万元
MU = 10**4  # land units in one 亩
TCE = 10**3
TONNE = 10**4
WAN_KWH = 10**4


def code(n: int, region: str = COUNTY) -> str:
    """A valid enterprise credit code numbered n (ordering of n is ordering of codes)."""
    return make_credit_code(f"91{region}{n:09d}")


def enterprise(n: int, **kw) -> Enterprise:
    args = dict(
        credit_code=code(n),
        name=f"企业{n}",
        township_code=TOWNSHIP,
        in_park=False,
        industry_code="C3311",
    )
    args.update(kw)
    return Enterprise(**args)


def figures(n: int, year: int = YEAR, **kw) -> YearlyIndicators:
    return YearlyIndicators(credit_code=code(n), year=year, **kw)


def big_figures(n: int, **kw) -> YearlyIndicators:
    """The worked 规上 example of test_scoring (total 77 under the default policy)."""
    args = dict(
        land=50 * MU,
        tax=600 * WAN,
        revenue=30000 * WAN,
        value_added=6000 * WAN,
        energy=2000 * TCE,
        emissions={"COD": 10 * TONNE, "NH3-N": 1 * TONNE, "SO2": 5 * TONNE, "NOx": 4 * TONNE},
        employees=250,
        rnd=900 * WAN,
    )
    args.update(kw)
    return figures(n, **args)

"""Builders shared by the quota domain tests (as fixtures, so any pytest import mode finds them)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Callable

import pytest

from services.quota.domain.identifiers import credit_code_check_char
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.projects import ProjectFacts

COUNTY = "320612"
TOWNSHIP = "320612100"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def make_credit_code(serial: int) -> str:
    body = f"91{COUNTY}MA{serial:07d}"  # 17 characters
    return body + credit_code_check_char(body)


@pytest.fixture
def county() -> str:
    return COUNTY


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def policy() -> PoolPolicy:
    return PoolPolicy(county_code=COUNTY, price_fen_per_unit={"COD": 1_234_567})


@pytest.fixture
def credit_code() -> Callable[[int], str]:
    return make_credit_code


@pytest.fixture
def release_payload() -> Callable[..., dict[str, Any]]:
    def build(**overrides: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "release_id": "REL-1",
            "department": "ecology",
            "enterprise_credit_code": make_credit_code(1),
            "township_code": TOWNSHIP,
            "county_code": COUNTY,
            "asset": "COD",
            "amount": "12.3457",
            "reason": "closure",
            "basis": "free",
            "document_ref": "通环收〔2024〕12号",
            "released_on": "2024-02-15",
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    return build


@pytest.fixture
def projects() -> dict[str, ProjectFacts]:
    return {
        "P-A": ProjectFacts("P-A", COUNTY, True, "A", 20_000_000, "C39"),
        "P-B": ProjectFacts("P-B", COUNTY, True, "B", 30_000_000, "C26"),
        "P-NO": ProjectFacts("P-NO", COUNTY, False, "C", 1_000_000, "C26"),
        "P-ELSEWHERE": ProjectFacts("P-ELSEWHERE", "320623", True, "A", 20_000_000, "C39"),
    }


def day(d: int) -> date:
    return date(2024, 1, d)

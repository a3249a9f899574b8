"""Codes, months and periods are ASCII digits everywhere. Python's ``\\d`` (in ``re`` and in pydantic's patterns) and
``str.isdigit()`` also take full-width digits, which a Chinese input method types ('３２０６１２' looks like 320612 on
screen), and the digits of other scripts: such a county code was another county, such a month another label of
the same month. Figures typed in full width are read as numbers on purpose (shared/text_files.py); codes are not."""
from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.ledger.domain.accounts import address_kind
from services.settlement.domain.errors import PeriodError
from services.settlement.domain.periods import Period
from shared.contracts.assessment import EnterpriseReported
from shared.contracts.settlement import TaxReceiptReported

ROOT = Path(__file__).resolve().parents[2]
FULL_WIDTH_COUNTY = "３２０６１２"
ARABIC_INDIC_COUNTY = "٣٢٠٦١٢"


def _string_literals_with_backslash_d(path: Path) -> list[int]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return [t.start[0] for t in tokens if t.type == tokenize.STRING and "\\d" in t.string]


def test_no_pattern_in_the_code_uses_backslash_d():
    found = {str(p.relative_to(ROOT)): lines for d in ("services", "shared", "ops") for p in (ROOT / d).rglob("*.py")
             if (lines := _string_literals_with_backslash_d(p))}
    assert found == {}, f"\\d takes full-width digits; write [0-9]: {found}"


@pytest.mark.parametrize("county", [FULL_WIDTH_COUNTY, ARABIC_INDIC_COUNTY])
def test_a_ledger_address_of_non_ascii_digits_is_malformed(county):
    assert address_kind("county:320612/pool") == "county"
    assert address_kind(f"county:{county}/pool") is None
    assert address_kind(f"township:{county}101") is None


@pytest.mark.parametrize("month", ["２０２５-03", "٢٠٢٥-03", "2025-０３"])
def test_a_settlement_month_of_non_ascii_digits_is_refused(month):
    good = dict(receipt_id="R1", enterprise_credit_code="91320612MA1W2B3C4D", tax_kind="VAT", amount="1.00")
    assert TaxReceiptReported(month="2025-03", **good).month == "2025-03"
    with pytest.raises(ValidationError):
        TaxReceiptReported(month=month, **good)
    with pytest.raises(PeriodError):
        Period.parse(month)


def test_an_assessment_township_of_non_ascii_digits_is_refused():
    fields = EnterpriseReported.model_fields
    assert "township_code" in fields
    base = {name: f.examples[0] for name, f in fields.items() if f.is_required() and f.examples}
    with pytest.raises(ValidationError) as caught:
        EnterpriseReported.model_validate({**base, "township_code": FULL_WIDTH_COUNTY + "101"})
    assert any(e["loc"] == ("township_code",) for e in caught.value.errors())

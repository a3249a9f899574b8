"""A tax bureau export whose header names one field twice — e.g. 金额 and 实缴金额, both read as ``amount`` — is
refused, not read with whichever column comes last: the amount recorded (and settled) must not depend on the
order of the columns."""
from __future__ import annotations

import io

import openpyxl
import pytest

from services.settlement.api.receipt_import import read_rows
from services.settlement.domain import ReceiptError

CODE = "91320612MA1W2B3C4D"


@pytest.mark.parametrize("amounts", [("金额", "实缴金额"), ("实缴金额", "金额"), ("amount", "金额(元)")])
def test_two_columns_for_one_field_are_refused_in_csv(amounts):
    first, second = amounts
    body = f"收据编号,统一社会信用代码,所属期,税种,{first},{second}\nT1,{CODE},2026-03,VAT,1250000.00,1000000.00\n"
    with pytest.raises(ReceiptError) as e:
        list(read_rows(body.encode(), "csv"))
    assert e.value.reason == "import_header_ambiguous"
    assert first in str(e.value) and second in str(e.value)


def test_two_columns_for_one_field_are_refused_in_xlsx():
    wb = openpyxl.Workbook()
    wb.active.append(["receipt_id", "票证号码", "enterprise_credit_code", "month", "tax_kind", "amount"])
    wb.active.append(["T2", "T2-OTHER", CODE, "2026-04", "CIT", "7.00"])
    buf = io.BytesIO()
    wb.save(buf)
    with pytest.raises(ReceiptError) as e:
        list(read_rows(buf.getvalue(), "xlsx"))
    assert e.value.reason == "import_header_ambiguous"


def test_unknown_columns_beside_the_fields_are_still_ignored():
    body = f"收据编号,备注,统一社会信用代码,所属期,税种,实缴金额,备注\nT1,x,{CODE},2026-03,VAT,12.50,y\n"
    assert list(read_rows(body.encode(), "csv")) == [(2, {
        "receipt_id": "T1", "enterprise_credit_code": CODE, "month": "2026-03", "tax_kind": "VAT", "amount": "12.50"})]

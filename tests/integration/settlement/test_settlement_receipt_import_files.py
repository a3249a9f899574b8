"""POST /v1/tax-receipts/import with the files a county's tax bureau produces: CSV saved by Excel on Chinese Windows
(GB18030), amounts typed in full width or with thousands separators, headers in full-width brackets. Amounts are
recorded exactly; a file that is neither UTF-8 nor GB18030 is refused whole (422 import_not_text); a bad row is
reported with its row number and reason, the others recorded. HTTP only, on SQLite and PostgreSQL."""
from __future__ import annotations

import io

import openpyxl

from tests.integration.settlement.support import FINANCE, OFFICE, TAX, credit_code, new_county
from tests.support.services import running_service

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def agreement(C: str, E: str) -> dict:
    return {"agreement_id": f"FD-{C}-1", "county_code": C, "enterprise_credit_code": E, "origin": f"township:{C}101",
            "destination": f"park:P{C}", "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
            "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
            "start": "2025-01-01", "end": "2026-12-31"}


def reason(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["message"]
    return r.json()["reason"]


def test_receipt_files_as_the_tax_bureau_saves_them(db_url, kafka_bootstrap):
    C = new_county()
    E1 = credit_code(C, 1)
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        assert api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1)).status_code == 201  # E1 is known

        def amount(rid: str) -> str:
            r = api.get(f"/v1/tax-receipts/{rid}-{C}", headers=FINANCE)
            assert r.status_code == 200, r.text
            return r.json()["amount"]

        # Excel on Chinese Windows, "CSV (逗号分隔)": GB18030/GBK, the header's unit in full-width brackets
        csv_body = ("收据编号,统一社会信用代码,所属期,税种,金额（元）,更正收据\n"
                    f"g1-{C},{E1},2025-02,VAT,\"1,234.56\",\n"           # a formatted cell, quoted by Excel
                    f"g2-{C},{E1},2025-02,CIT, １２３４５．６７ ,\n"    # full-width mode, with spaces
                    f"g3-{C},{E1},2025-02,VAT,1,234.56,\n"              # unquoted: the row is shifted
                    f"g4-{C},{E1},2025-02,VAT,1.005,\n"                 # more decimals than fen: not rounded
                    f"g5-{C},{E1},2025-02,VAT,\"12,5\",\n"              # not a thousands separator
                    f"g6-{C},{E1},２０２５－０２,VAT,０．０１,\n")
        r = api.post("/v1/tax-receipts/import", content=csv_body.encode("gb18030"),
                     headers={**TAX, "Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
        report = r.json()
        assert (report["rows"], report["recorded"], report["unchanged"]) == (6, 3, 0), report
        assert [(p["row"], p["receipt_id"], p["reason"]) for p in report["rejected"]] == [
            (4, f"g3-{C}", "too_many_cells"), (5, f"g4-{C}", "amount_exceeds_scale"), (6, f"g5-{C}", "invalid_row")]
        assert "1.005" in report["rejected"][1]["message"]
        assert (amount("g1"), amount("g2"), amount("g6")) == ("1234.56", "12345.67", "0.01")
        for rid in ("g3", "g4", "g5"):
            assert api.get(f"/v1/tax-receipts/{rid}-{C}", headers=FINANCE).status_code == 404

        # the same file again: recorded once
        again = api.post("/v1/tax-receipts/import", content=csv_body.encode("gb18030"),
                         headers={**TAX, "Content-Type": "text/csv"}).json()
        assert (again["recorded"], again["unchanged"], len(again["rejected"])) == (0, 3, 3)

        # neither UTF-8 nor GB18030 (Excel's "Unicode text" is UTF-16): refused whole, nothing recorded
        utf16 = f"receipt_id,enterprise_credit_code,month,tax_kind,amount\nu1-{C},{E1},2025-02,VAT,1.00\n"
        r = api.post("/v1/tax-receipts/import", content=utf16.encode("utf-16"), headers={**TAX, "Content-Type": "text/csv"})
        assert reason(r, 422) == "import_not_text"
        assert api.get(f"/v1/tax-receipts/u1-{C}", headers=FINANCE).status_code == 404

        # XLSX: text cells typed in full width, a header in full-width brackets, a number cell beyond fen
        wb = openpyxl.Workbook()
        wb.active.append(["收据编号", "统一社会信用代码", "所属期", "税种", "实缴金额（元）"])
        wb.active.append([f"x1-{C}", E1, "2025-03", "VAT", "２，０００．５０"])
        wb.active.append([f"x2-{C}", E1, "2025-03", "VAT", 99.999])
        buf = io.BytesIO()
        wb.save(buf)
        r = api.post("/v1/tax-receipts/import", content=buf.getvalue(), headers={**TAX, "Content-Type": XLSX})
        report = r.json()
        assert (report["rows"], report["recorded"]) == (2, 1), report
        assert [(p["row"], p["reason"]) for p in report["rejected"]] == [(3, "amount_exceeds_scale")]
        assert amount("x1") == "2000.50"


def test_a_workbook_sent_without_its_media_type_and_taxes_named_in_chinese(db_url, kafka_bootstrap):
    """``curl --data-binary @receipts.xlsx`` says application/x-www-form-urlencoded, other clients
    application/octet-stream or nothing: the zip signature says it is a workbook (it was refused
    unsupported_import_format, or read as CSV and refused import_not_csv). The bureau's files name the taxes
    (增值税, 企业所得税): they are recorded under the agreements' codes, and a file repeated is unchanged; a tax
    the county's agreements have no code for is still refused."""
    C = new_county()
    E1 = credit_code(C, 1)
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        assert api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1)).status_code == 201

        def workbook(prefix: str) -> bytes:
            wb = openpyxl.Workbook()
            wb.active.append(["收据编号", "统一社会信用代码", "所属期", "税种", "金额（元）"])
            wb.active.append([f"{prefix}1-{C}", E1, "2025-04", "增值税", "100.00"])
            wb.active.append([f"{prefix}2-{C}", E1, "2025-04", " 企业所得税 ", "200.00"])
            wb.active.append([f"{prefix}3-{C}", E1, "2025-04", "消费税", "300.00"])
            buf = io.BytesIO()
            wb.save(buf)
            return buf.getvalue()

        for prefix, ctype in (("f", "application/x-www-form-urlencoded"), ("o", "application/octet-stream"),
                              ("n", None)):
            headers = {**TAX, **({"Content-Type": ctype} if ctype else {})}
            body = workbook(prefix)
            r = api.post("/v1/tax-receipts/import", content=body, headers=headers)
            assert r.status_code == 200, (ctype, r.text)
            report = r.json()
            assert (report["rows"], report["recorded"]) == (3, 2), (ctype, report)
            assert [(p["row"], p["reason"]) for p in report["rejected"]] == [(4, "invalid_tax_kind")]
            kinds = [api.get(f"/v1/tax-receipts/{prefix}{i}-{C}", headers=FINANCE).json()["tax_kind"] for i in (1, 2)]
            assert kinds == ["VAT", "CIT"], ctype
            again = api.post("/v1/tax-receipts/import", content=body, headers=headers).json()
            assert (again["recorded"], again["unchanged"]) == (0, 2), again

        # one receipt posted as JSON takes the name too; a body that is neither CSV nor a workbook still says so
        r = api.post("/v1/tax-receipts", headers=TAX, json={
            "receipt_id": f"j1-{C}", "enterprise_credit_code": E1, "month": "2025-04", "tax_kind": "增值税",
            "amount": "5.00"})
        assert r.status_code == 201, r.text
        assert r.json()["tax_kind"] == "VAT"
        r = api.post("/v1/tax-receipts/import", content=b'{"a": 1}', headers={**TAX, "Content-Type": "application/json"})
        assert reason(r, 415 if r.status_code == 415 else 422) == "unsupported_import_format"

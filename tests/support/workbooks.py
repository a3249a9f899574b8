"""XLSX files as county offices send them, for import tests: with formulas, stored values or not."""
from __future__ import annotations

import io
import re
import zipfile

from openpyxl import Workbook


def workbook(rows: list[list], cached: dict[str, object] | None = None) -> bytes:
    """A one-sheet workbook of ``rows`` (a str starting with '=' is a formula, stored without a value, as openpyxl
    and pandas write them); ``cached`` gives some formula cells (e.g. {"C3": 260}) the value Excel would store."""
    wb = Workbook()
    for row in rows:
        wb.active.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    if not cached:
        return buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                for ref, value in cached.items():
                    text, n = re.subn(rf'(<c r="{ref}"[^>]*>\s*<f>[^<]*</f>)\s*(<v\s*/>|<v>\s*</v>)?',
                                      rf"\g<1><v>{value}</v>", text)
                    assert n == 1, f"no formula cell {ref}"
                data = text.encode()
            dst.writestr(item, data)
    return out.getvalue()

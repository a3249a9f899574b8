"""The first visible sheet of an XLSX workbook a county office sends, for every service's import.

The sheet the clerk sees: a hidden sheet before it (last year's figures, kept out of sight) was imported in its
place. Its rows are read to the last one there is, whatever the file declares: openpyxl trusts a sheet's declared
dimension, and a stale one (A1:D3 over 7 rows and 5 columns, as some exports leave it) lost rows and columns without
a word, while one declaring the whole grid (A1:XFD1048576, 5 KB) had each of a million rows padded to 16,384 cells.

A formula cell holds the value the saving program computed for it. Excel computes and stores it; a workbook
written by a script (openpyxl, pandas) or some exports stores the formula alone. Read for its values (openpyxl's
``data_only``), such a cell is empty: a tax of =B2*0.13 would be recorded as no tax, silently. So the sheet is read
twice, for values and for formulas, and a formula without a stored value is a :class:`FormulaWithoutValue`, which
each import refuses with its row (reason ``formula_without_value``)."""
from __future__ import annotations

import io
from typing import Iterator


class FormulaWithoutValue:
    """A cell holding a formula and no computed value."""

    __slots__ = ("formula",)

    def __init__(self, formula: str):
        self.formula = formula

    def __repr__(self) -> str:
        return f"FormulaWithoutValue({self.formula!r})"


def formula_message(column: object, cell: FormulaWithoutValue) -> str:
    return (f"{column}: the cell holds the formula {cell.formula[:60]} and no value (the program that saved the "
            "workbook did not compute it): open and save it in Excel or WPS, or paste the values")


class FirstSheet:
    """Opening raises what openpyxl raises for a file that is no workbook; ``rows()`` yields each row's values."""

    def __init__(self, data: bytes):
        from openpyxl import load_workbook

        self._values = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            self._formulas = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
        except Exception:
            self._values.close()
            raise
        if not self._values.worksheets:
            self.close()
            raise ValueError("the workbook has no sheet")

    def _sheet(self, workbook):
        visible = [ws for ws in workbook.worksheets if ws.sheet_state == "visible"] or workbook.worksheets
        ws = visible[0]
        ws.reset_dimensions()  # read to the last row and cell there is, not to the declared dimension
        return ws

    def rows(self) -> Iterator[tuple]:
        values = self._sheet(self._values).iter_rows(values_only=True)
        formulas = self._sheet(self._formulas).iter_rows(values_only=True)
        for row, written in zip(values, formulas):
            if any(v is None and isinstance(f, str) and f.startswith("=") for v, f in zip(row, written)):
                row = tuple(FormulaWithoutValue(f) if v is None and isinstance(f, str) and f.startswith("=") else v
                            for v, f in zip(row, written))
            yield row

    def close(self) -> None:
        self._values.close()
        self._formulas.close()

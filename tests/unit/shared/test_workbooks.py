"""shared.workbooks: a formula cell the saving program never computed is a FormulaWithoutValue, not an empty cell
(read for values alone, a tax of =B2*0.13 written by a script was recorded as no tax); a computed one is its value."""
import pytest

from shared.workbooks import FirstSheet, FormulaWithoutValue
from tests.support.workbooks import workbook


def test_formulas_without_a_stored_value_are_marked_and_stored_values_read():
    data = workbook([["id", "base", "tax"], ["a", 100, "=B2*0.13"], ["b", 200, "=B3*1.3"], ["c", 300, 39]],
                    cached={"C3": 260})
    sheet = FirstSheet(data)
    try:
        rows = list(sheet.rows())
    finally:
        sheet.close()
    assert rows[0] == ("id", "base", "tax")
    assert rows[1][:2] == ("a", 100) and isinstance(rows[1][2], FormulaWithoutValue)
    assert rows[1][2].formula == "=B2*0.13"
    assert rows[2] == ("b", 200, 260)
    assert rows[3] == ("c", 300, 39)


def test_a_file_that_is_no_workbook_raises_on_opening():
    with pytest.raises(Exception):
        FirstSheet(b"PK\x03\x04 not really a zip")

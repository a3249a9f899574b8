"""Receipt CSV rows whose figure the intake got was not the figure the file says (found by a review of 8c31af9,
each failing before its fix). Each test accepts either outcome the project allows: the row refused (a BadRow from the
reader, or an amount the intake refuses), or the amount read as the file writes it. Reading another number fails."""
from __future__ import annotations

import pytest

from services.settlement.api.receipt_import import BadRow, read_rows
from shared.amounts import AmountError, parse_amount

CODE = "91320612MA1W2B3C4D"


def _fen_read(body: str) -> int | None:
    """The fen the intake would record for the file's only row, or None when the row is refused."""
    (_, doc), = read_rows(body.encode("gb18030"), "csv")
    if isinstance(doc, BadRow):
        return None
    try:
        return parse_amount(doc["amount"], 2, allow_zero=True, allow_negative=True)
    except AmountError:
        return None


def test_a_figure_left_of_the_amount_split_by_an_unquoted_comma_does_not_give_the_amount():
    """计税依据 (tax base) "12,345.00" unquoted shifts the row by one: 8 cells under 7 headers, the extra one empty
    (the 备注 remark). split_number looks only at the amount column, so the row is read with 金额 = '345.00' (the
    tail of the tax base) while the file says 1604.85. README: a row with more cells than the header is refused."""
    body = ("收据编号,统一社会信用代码,所属期,税种,计税依据,金额,备注\n"
            f"T1,{CODE},2026-03,VAT,12,345.00,1604.85,\n")
    assert _fen_read(body) in (None, 160485)


def test_full_width_digits_split_by_a_half_width_comma_are_not_read_as_one_yuan():
    """'１,２３４．５６' unquoted (full-width digits, an ASCII comma): the cells are '１' and '２３４．５６';
    split_number's [0-9] does not match full-width digits, so the shifted row is read as 1 元."""
    body = ("收据编号,统一社会信用代码,所属期,税种,金额,备注\n"
            f"T1,{CODE},2026-03,VAT,１,２３４．５６,\n")
    assert _fen_read(body) in (None, 123456)


def test_half_width_digits_with_a_full_width_point_split_by_a_comma_are_not_read_as_one_yuan():
    """'1,234．56' unquoted: the tail '234．56' has a full-width point, _THOUSANDS_GROUP misses it -> 1 元."""
    body = ("收据编号,统一社会信用代码,所属期,税种,金额,备注\n"
            f"T1,{CODE},2026-03,VAT,1,234．56,\n")
    assert _fen_read(body) in (None, 123456)


def test_an_amount_split_into_a_column_with_no_header_is_not_read_as_one_yuan():
    """Excel pads the header row with empty cells when a column past the header was ever used
    ('...,金额,'): an unquoted '1,234.56' then fills exactly the header's width, _shifted never looks at
    the row (len(values) == len(header)), and '234.56' lands in the nameless column: 1 元 recorded."""
    body = ("收据编号,统一社会信用代码,所属期,税种,金额,\n"
            f"T1,{CODE},2026-03,VAT,1,234.56\n")
    assert _fen_read(body) in (None, 123456)


@pytest.mark.parametrize("figure", ["0,500", "0,125"])
def test_a_leading_zero_group_is_not_a_thousands_separator(figure):
    """No spreadsheet groups thousands as '0,500': that is a decimal comma (0.500 元). THOUSANDS
    (-?\\d{1,3}(,\\d{3})+) accepts a leading 0 group, so '0,500' becomes '0500' = 500 元, a thousand times
    the figure; any other decimal comma ('12,5') is refused."""
    body = ("收据编号,统一社会信用代码,所属期,税种,金额,备注\n"
            f"T1,{CODE},2026-03,VAT,\"{figure}\",\n")
    assert _fen_read(body) is None


def test_a_split_amount_whose_remark_cell_the_writer_left_out_is_not_read_as_one_yuan():
    """'…,金额,备注' and an unquoted '1,234.56' with the remark's empty cell left out: the row has the header's
    width, '234.56' lands in 备注 and the amount would be 1 yuan. Refused: an amount of 1-3 digits followed by a
    cell of three."""
    body = ("收据编号,统一社会信用代码,所属期,税种,金额,备注\n"
            f"T1,{CODE},2026-03,VAT,1,234.56\n")
    assert _fen_read(body) is None


def test_a_small_amount_beside_a_remark_is_read():
    """The control: an amount of three digits or fewer beside a remark that is not three digits is read."""
    body = ("收据编号,统一社会信用代码,所属期,税种,金额,备注\n"
            f"T1,{CODE},2026-03,VAT,12,补缴\n")
    assert _fen_read(body) == 1200

"""Text of the files a county's offices produce, read the same way by every service's import.

- Encoding: Excel on Chinese Windows saves "CSV (逗号分隔)" as GBK unless the user picks "CSV UTF-8", so a file is
  read as UTF-8 (with or without BOM) and, failing that, as GB18030 (a superset of GBK and GB2312). A file that is
  neither (UTF-16 "Unicode text", a binary file) is refused: :class:`NotText`; so is UTF-8 text with a few damaged
  bytes (:class:`DamagedUtf8`), which GB18030 would read as other characters.
- Headers and figures typed in a Chinese input method's full-width mode: '实缴税金（万元）', '１２３４．５６'.
- Thousands separators: a figure is read without its commas only when they group it in threes ('1,234,567.89');
  any other comma ('12,5', '1,23') leaves it as it is, and the amount parser refuses it. In a CSV an unquoted
  '1,234' is two cells: :func:`beyond_header` and :func:`split_number` find the rows it shifted.

Nothing here parses an amount: figures stay text until ``shared.amounts.parse_amount`` makes them exact integers.
"""
from __future__ import annotations

import re
from typing import Sequence

ENCODINGS = ("utf-8-sig", "gb18030")  # Excel in China saves CSV as GBK unless told otherwise


class NotText(ValueError):
    """The bytes are neither UTF-8 nor GB18030 text."""


class DamagedUtf8(NotText):
    """UTF-8 text with a few bytes that are not: GB18030 would read it, as other characters (mojibake)."""


def decode_text(data: bytes) -> str:
    """The file's text: UTF-8 (a BOM dropped), else GB18030; :class:`NotText` when it is neither, or when it is
    UTF-8 but for a few damaged bytes (:class:`DamagedUtf8`)."""
    try:
        return data.decode(ENCODINGS[0])
    except UnicodeDecodeError:
        pass
    _refuse_damaged_utf8(data)
    try:
        return data.decode(ENCODINGS[1])
    except UnicodeDecodeError:
        raise NotText("the file is neither UTF-8 nor GB18030 text") from None


def _refuse_damaged_utf8(data: bytes) -> None:
    # GBK's double bytes read as UTF-8 make about 0.4 valid non-ASCII characters per invalid sequence in Chinese
    # text (at most 6 in 200,000 random strings of up to 12 characters, none reaching 16 and 8 per invalid one in
    # 400,000 of up to 200); a UTF-8 file with a damaged byte makes all its Chinese characters per invalid one.
    # Read as GB18030, such a file would be recorded as other names, silently.
    text = data.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd")
    valid = sum(1 for c in text if c > "\x7f") - bad
    if bad and valid >= max(16, 8 * bad):
        line = text.count("\n", 0, text.index("\ufffd")) + 1
        raise DamagedUtf8(f"the file is UTF-8 text but for {bad} damaged byte sequence(s), the first on line {line} "
                          "(read as GB18030 it would be other characters): repair or save the file again")


def normalize_header(header: str) -> str:
    """Full-width to half-width, no spaces, lower case: '实缴税金（万元）' -> '实缴税金(万元)'."""
    out = []
    for ch in str(header):
        o = ord(ch)
        if 0xFF01 <= o <= 0xFF5E:
            ch = chr(o - 0xFEE0)
        elif ch == "\u3000":
            ch = " "
        out.append(ch)
    return re.sub(r"\s+", "", "".join(out)).lower()


_HALF_WIDTH = {o: o - 0xFEE0 for o in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def half_width(text: str) -> str:
    """Full-width ASCII forms and the ideographic space made ASCII: '２０２６－０３' -> '2026-03'."""
    return text.translate(_HALF_WIDTH)


# a Chinese input method's full-width mode: Decimal reads full-width digits but not the full-width point, comma
# or sign, so '１２．５' was refused while '１２.５' was taken as 12.5
FULL_WIDTH_NUMBER = str.maketrans("０１２３４５６７８９．，－＋", "0123456789.,-+")
# no group starts with 0: "0,500" is a decimal comma (0.5) in much of the world, never a way to write 500
THOUSANDS = re.compile(r"^-?[1-9][0-9]{0,2}(,[0-9]{3})+(\.[0-9]+)?$")


def number_text(text: str) -> str:
    """A figure as typed -> the plain decimal text to parse: full-width digits, point, comma and sign made ASCII,
    and commas dropped when they group the figure in threes. Anything else is left for the parser to refuse."""
    if not text.isascii():
        text = text.translate(FULL_WIDTH_NUMBER)
    if THOUSANDS.match(text):
        text = text.replace(",", "")
    return text


def named_headers(headers: list) -> list:
    """The header row without its trailing nameless cells: Excel writes ',' after the last name once a column past
    it was ever used, and a cell under no name is not a column (an amount split into it would be dropped)."""
    n = len(headers)
    while n and not str(headers[n - 1] or "").strip():
        n -= 1
    return headers[:n]


def beyond_header(headers: Sequence, cells: Sequence) -> bool:
    """Cells past the last header that hold something: an unquoted "1,234" shifts the row, and reading its
    first cells would take a wrong figure (empty trailing cells, as spreadsheets write them, are fine)."""
    return len(cells) > len(headers) and any(str(c).strip() for c in cells[len(headers):] if c is not None)


_THOUSANDS_HEAD = re.compile(r"[-+]?[0-9]{1,3}")
_THOUSANDS_GROUP = re.compile(r"[0-9]{3}(\.[0-9]*)?")


def split_number(cells: Sequence, figure_columns: frozenset[int]) -> bool:
    """A row wider than its header whose extra cells are empty may still be shifted: with the last column empty
    (a remark), an unquoted "1,234" puts "234" in the next column and only an empty cell beyond the header, so
    tax was taken as 1 元. Such a row is refused when a figure column holds 1-3 digits followed by a cell of
    three digits (where the number may have been split); a wider row without that pair is read as it is."""
    n = len(cells) - 1

    def plain(i: int) -> str:  # as number_text reads it: full-width digits and point too
        return str(cells[i]).strip().translate(FULL_WIDTH_NUMBER)

    return any(i < n and _THOUSANDS_HEAD.fullmatch(plain(i)) and _THOUSANDS_GROUP.fullmatch(plain(i + 1))
               for i in figure_columns)

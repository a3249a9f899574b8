"""What one money figure a department or service sends may be.

One receipt, report, allocation or buy-back of more than a trillion yuan is a typo (a credit code pasted into the
amount, digits doubled), not money a county moves: China's largest taxpayers pay less in a year. Such a figure is
refused where it enters (``amount_implausible``), because once recorded, figures of that size add up past what a
month's sum and a statement's totals can hold (BIGINT) and every draft of the county fails until they are corrected.
"""
from __future__ import annotations

MAX_FIGURE_FEN = 10**14


def implausible(what: str, fen: int) -> str | None:
    """Why ``fen`` cannot be one figure of ``what``, or None."""
    if fen > MAX_FIGURE_FEN:
        return f"{what}: {fen // 100:,}.{fen % 100:02d} CNY is more than one trillion yuan in one figure (a typo?)"
    return None

"""Every rounding rule of settlement, written down once. All money is integer fen; every split goes through
``shared.amounts.split_by_weights`` (floor each part, the named party takes the remainder), so the parts of a
split always add up to the whole, to the fen, deterministically.

1. Local retained tax. For one agreement, tax kind and tax month, the receipts are summed first and the local
   retained part is ``floor(month_total * share_bp / 10000)``; the fen left over stays with the upper levels of
   government (no line: that money never moves between our parties). Rounding per month aggregate, never per
   receipt, makes the result independent of how a month's tax was paid in instalments or corrected.
2. Origin/destination split. The local retained part is split by the schedule weights of the agreement year the
   tax month falls in; the remainder goes to the agreement's ``remainder_to`` party. Only the origin's part
   becomes a line (payer = destination, which collected the tax; payee = origin).
3. Statistics (value added, output) are split the same way with the statistics weights; same remainder party.
   Like tax, per agreement, measure and month aggregate (the reports summed first), never per report; a month
   whose reports arrive in several statements is settled by rule 6.
4. Guaranteed minimum. ``top-up = max(0, minimum - origin's share of the agreement year)``: exact, no rounding.
5. Quota proceeds. ``compensation = floor(amount_due * compensation_bp / 10000)`` (the fen left over stays in
   the rest). Compensation is split among the enterprises that freed the consumed lots pro rata to units consumed;
   the remainder goes to the largest contributor (ties: the smallest credit code), so the whole compensation
   reaches enterprises. The rest is split among origin townships (township weight x units from that township),
   the destination park (park weight x all units) and the county fund (fund weight x all units); the remainder
   goes to the county fund. Units of lots that earn no compensation (reclaimed land, which no enterprise freed;
   quota an enterprise saved by upgrading and stays, ``earns_compensation`` false on the lot) earn none: the
   compensation is then taken of ``floor(amount_due * compensable units / all units)`` only. A project entering no park
   leaves the park's weight to the county fund.
6. Adjustments are differences of recomputed figures, never a rounding of a delta:
   ``adjustment = share(new month total) - share already settled``. Summed over all periods, the origin receives
   exactly the share of the final total, whatever the order in which receipts and corrections arrived. Statistics
   alike: a statement taking reports of a month earlier statements settled attributes
   ``origin_statistics(statistic settled + new reports) - part already attributed`` (on a ``statistics_share`` line
   of that month: statistics are not money, so never an ``adjustment`` line), so the origin is attributed exactly
   the split of the month's total whatever the periods its reports arrived in.
7. A negative amount is never written: a line whose computed amount is negative swaps payer and payee; a zero
   line is dropped.
"""
from __future__ import annotations

from typing import Hashable, Mapping, TypeVar

from shared.amounts import split_by_weights

BASIS_POINTS = 10_000

K = TypeVar("K", bound=Hashable)

_LOCAL, _UPPER = "local", "upper"


def local_retained(month_total_fen: int, share_bp: int) -> int:
    """Rule 1: floor of the local share; the remainder goes to the upper levels. (The two-part split
    ``{local: bp, upper: 10000 - bp}`` with the remainder to ``upper``, written out: it runs once per line.)"""
    if month_total_fen < 0:
        raise ValueError("a month's tax total cannot be negative")
    return month_total_fen * share_bp // BASIS_POINTS


def two_way_part(total: int, mine: int, other: int, mine_takes_remainder: bool) -> int:
    """My part of a split of ``total >= 0`` in two by weights ``mine:other`` — exactly what ``split`` gives the
    first of two parties (floor of each part, the remainder to the named one), without building dictionaries."""
    if total < 0 or mine < 0 or other < 0 or mine + other <= 0:
        raise ValueError("a two-way split needs total >= 0 and weights >= 0, not both 0")
    if mine_takes_remainder:
        return total - total * other // (mine + other)
    return total * mine // (mine + other)


def basis_point_part(total_fen: int, share_bp: int) -> int:
    """Rule 5: floor(total * bp / 10000), computed as a split so the leftover is explicit."""
    return local_retained(total_fen, share_bp)


def split(total: int, weights: Mapping[K, int], remainder_to: K) -> dict[K, int]:
    """The one split used everywhere (rules 2, 3, 5)."""
    return split_by_weights(total, weights, remainder_to=remainder_to)


def exact_split(total: int, weights: Mapping[K, int], remainder_to: K) -> dict[K, int]:
    """``split`` for ``total >= 0`` and weights known to be valid (each >= 0, a positive sum, ``remainder_to``
    among them): the same parts, written out without the checks for the hot paths that guarantee them."""
    if len(weights) == 1:  # one part takes all
        return {remainder_to: total}
    wsum = sum(weights.values())
    out = {k: total * w // wsum for k, w in weights.items()}
    out[remainder_to] += total - sum(out.values())
    return out


def largest_contributor(units_by_party: Mapping[K, int]) -> K:
    """Rule 5 tie-break: most units, then the smallest id."""
    if len(units_by_party) == 1:
        return next(iter(units_by_party))
    return min(units_by_party, key=lambda p: (-units_by_party[p], str(p)))

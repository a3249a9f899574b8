"""Facts summed per enterprise, kind (tax kind or statistics measure) and month: all a statement needs of them.

Rounding rule 1 works on month totals, so a statement needs, per enterprise, tax kind and month, the sum of what
the receipts it takes change (a correction counts ``new - replaced``) and the ids behind that sum — not the
receipts. The service has the database sum them (``storage.inputs``); ``sum_receipts`` / ``sum_statistics`` do
the same for facts in memory, one pass, keeping per month the bounded ``SourceSet``. A repeated id is refused (the
database's primary keys refuse it there): that needs the ids taken, beyond any cap, unless the caller vouches they
are distinct (``distinct_ids``) — then memory does not grow with the number of facts. Both take exactly the facts
``history.placement`` gives the statement.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable, NamedTuple

from .errors import StatementError
from .history import SettlementHistory
from .lines import SourceSet
from .periods import Period
from .receipts import StatisticsReport, TaxReceipt


class MonthTotal(NamedTuple):
    enterprise: str
    kind: str  # tax kind (receipts) or measure (statistics)
    month: Period
    amount_fen: int  # receipts: sum of deltas; statistics: sum of amounts
    sources: tuple[str, ...]  # the smallest ids, sorted, at most the source cap
    source_count: int  # all ids
    sources_digest: str  # of all ids: hex of the sum of their sha256 mod 2**256 (``lines.SourceSet``)


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def require_aware(received_at: datetime, what: str) -> None:
    if not isinstance(received_at, datetime) or received_at.tzinfo is None:
        raise StatementError("received_at_not_timezone_aware", f"{what}: received_at must be timezone-aware")


def _refuse_repeated(source_id: str, seen: set[str] | None) -> None:
    """The same fact given twice is refused whatever the source cap: ``SourceSet`` only sees the ids it keeps.
    ``seen`` None: the caller vouches the ids are distinct (as a primary key does), nothing is remembered."""
    if seen is None:
        return
    if source_id in seen:
        raise StatementError("duplicate_input", f"{source_id} is given twice")
    seen.add(source_id)


def sum_receipts(receipts: Iterable[TaxReceipt], period: Period, history: SettlementHistory, as_of: datetime,
                 cap: int | None, *, distinct_ids: bool = False) -> list[MonthTotal]:
    sums: dict[tuple[str, str, str], list] = {}  # key -> [month, delta, SourceSet]
    seen: set[str] | None = None if distinct_ids else set()
    for r in receipts:
        require_aware(r.received_at, f"receipt {r.receipt_id}")
        if history.placement(period, r.month.start, r.received_at, as_of) is None:
            continue
        _refuse_repeated(r.receipt_id, seen)
        if not is_int(r.amount_fen) or r.amount_fen < 0:
            raise StatementError("negative_tax", f"receipt {r.receipt_id}: tax amount must be integer fen >= 0")
        if r.corrects is not None and r.replaced_amount_fen is None:
            raise StatementError("correction_not_resolved", f"receipt {r.receipt_id}: the replaced amount is missing")
        key = (r.enterprise, r.tax_kind, r.month.label)
        s = sums.get(key)
        if s is None:
            s = sums[key] = [r.month, 0, SourceSet(cap)]
        s[1] += r.delta_fen
        s[2].add(r.receipt_id)
    return [MonthTotal(e, k, m, amount, tuple(src.ids), src.count, src.digest())
            for (e, k, _), (m, amount, src) in sums.items()]


def sum_statistics(reports: Iterable[StatisticsReport], period: Period, history: SettlementHistory, as_of: datetime,
                   cap: int | None, *, distinct_ids: bool = False) -> list[MonthTotal]:
    sums: dict[tuple[str, str, str], list] = {}
    seen: set[str] | None = None if distinct_ids else set()
    for s in reports:
        require_aware(s.received_at, f"statistics report {s.report_id}")
        if history.placement(period, s.month.start, s.received_at, as_of) is None:
            continue
        _refuse_repeated(s.report_id, seen)
        if not is_int(s.amount_fen) or s.amount_fen < 0:
            raise StatementError("negative_statistic", f"statistics report {s.report_id}: amount must be integer >= 0")
        key = (s.enterprise, s.measure, s.month.label)
        agg = sums.get(key)
        if agg is None:
            agg = sums[key] = [s.month, 0, SourceSet(cap)]
        agg[1] += s.amount_fen
        agg[2].add(s.report_id)
    return [MonthTotal(e, k, m, amount, tuple(src.ids), src.count, src.digest())
            for (e, k, _), (m, amount, src) in sums.items()]

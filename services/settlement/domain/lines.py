"""Statement lines, party totals, and the bounded collector of a line's sources.

Every line moves a positive amount from ``payer`` to ``payee`` (a negative figure swaps them, a zero figure makes
no line) and names the events it came from. ``statistics_share`` lines move statistics (value added / output in
fen), not money: they are listed but never counted in money totals or ledger postings.
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from json.encoder import encode_basestring  # what json.dumps uses for str with ensure_ascii=False

from .errors import StatementError
from .parties import Party


class LineKind(str, Enum):
    REVENUE_SHARE = "revenue_share"
    GUARANTEED_MINIMUM_TOPUP = "guaranteed_minimum_topup"
    ADJUSTMENT = "adjustment"
    COMPENSATION = "compensation"
    PROCEEDS_SHARE = "proceeds_share"
    BUYBACK = "buyback"
    STATISTICS_SHARE = "statistics_share"

    @property
    def is_money(self) -> bool:
        return self is not LineKind.STATISTICS_SHARE


KIND_ORDER = {k: i for i, k in enumerate(LineKind)}


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: a county-year holds hundreds of thousands of lines
class StatementLine:
    line_no: int  # 1-based, after the deterministic sort
    kind: LineKind
    payer: Party
    payee: Party
    amount_fen: int  # > 0; for statistics_share: statistic units (fen of value added / output)
    agreement_id: str | None = None
    agreement_version: int | None = None
    tax_kind: str | None = None
    month: str | None = None  # the month the underlying facts belong to (tax month, allocation month, ...)
    agreement_year: int | None = None  # guaranteed-minimum lines and their adjustments
    adjusts: LineKind | None = None  # for adjustment lines: the kind of figure being corrected
    measure: str | None = None  # statistics lines
    allocation_id: str | None = None  # proceeds lines
    sources: tuple[str, ...] = ()  # ids of the events behind the line, sorted (maybe capped, see source_count)
    source_count: int = 0  # how many sources there are in all
    sources_digest: str = ""  # order-independent digest of all source ids

    @property
    def line_id(self) -> str:
        return f"L{self.line_no:05d}"

    def sort_key(self) -> tuple:
        return (
            KIND_ORDER[self.kind],
            self.month or "",
            self.agreement_id or "",
            self.tax_kind or "",
            self.measure or "",
            self.agreement_year or 0,
            self.adjusts.value if self.adjusts else "",
            self.allocation_id or "",
            self.payer,
            self.payee,
            self.sources_digest,
            self.amount_fen,
        )

    def canonical(self) -> dict:
        """What the content hash covers: every field but the (possibly capped) list of sources, which the
        digest and count stand for."""
        return {
            "line_no": self.line_no,
            "kind": self.kind.value,
            "payer": self.payer,
            "payee": self.payee,
            "amount_fen": self.amount_fen,
            "agreement_id": self.agreement_id,
            "agreement_version": self.agreement_version,
            "tax_kind": self.tax_kind,
            "month": self.month,
            "agreement_year": self.agreement_year,
            "adjusts": self.adjusts.value if self.adjusts else None,
            "measure": self.measure,
            "allocation_id": self.allocation_id,
            "source_count": self.source_count,
            "sources_digest": self.sources_digest,
        }


    def canonical_json(self) -> str:
        """``json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, written
        out in key order: the content hash of a county-year encodes every line, and this is several times faster."""
        adjusts = self.adjusts.value if self.adjusts else None
        return (
            f'{{"adjusts":{_js(adjusts)},"agreement_id":{_js(self.agreement_id)},'
            f'"agreement_version":{_ji(self.agreement_version)},"agreement_year":{_ji(self.agreement_year)},'
            f'"allocation_id":{_js(self.allocation_id)},"amount_fen":{self.amount_fen},"kind":{_js(self.kind.value)},'
            f'"line_no":{self.line_no},"measure":{_js(self.measure)},"month":{_js(self.month)},'
            f'"payee":{_js(self.payee)},"payer":{_js(self.payer)},"source_count":{self.source_count},'
            f'"sources_digest":{_js(self.sources_digest)},"tax_kind":{_js(self.tax_kind)}}}'
        )


def _js(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def _ji(value: int | None) -> str:
    return "null" if value is None else str(int(value))


@dataclass(frozen=True)
class PartyTotal:
    party: Party
    receivable_fen: int
    payable_fen: int

    @property
    def net_fen(self) -> int:
        return self.receivable_fen - self.payable_fen


@dataclass(frozen=True)
class StatisticsTotal:
    party: Party
    measure: str
    gained: int
    ceded: int


_MOD = 1 << 256


class SourceSet:
    """Sources of one line, in memory bounded by ``cap``: keeps the ``cap`` smallest ids (all if ``cap`` is None),
    the count of all, and an order-independent digest (sum of sha256 of each id, mod 2**256) of all.
    A repeated id among those kept is refused: the same event must not be counted twice."""

    __slots__ = ("cap", "ids", "count", "_digest")

    def __init__(self, cap: int | None):
        self.cap = cap
        self.ids: list[str] = []
        self.count = 0
        self._digest = 0

    def add(self, source_id: str) -> None:
        if not self.ids and self.cap != 0:  # the common case: a line of one receipt
            self.ids.append(source_id)
            self.count += 1
            self._digest = (self._digest + _id_hash(source_id)) % _MOD
            return
        i = bisect.bisect_left(self.ids, source_id)
        if i < len(self.ids) and self.ids[i] == source_id:
            raise StatementError("duplicate_input", f"{source_id} is given twice")
        if self.cap is None or i < self.cap:
            self.ids.insert(i, source_id)
            if self.cap is not None and len(self.ids) > self.cap:
                self.ids.pop()
        self.count += 1
        self._digest = (self._digest + _id_hash(source_id)) % _MOD

    def digest(self) -> str:
        return self._digest.to_bytes(32, "big").hex()  # == f"{digest:064x}", faster


@lru_cache(maxsize=256)  # bounded; the ids of one allocation and its lots recur across its lines
def _id_hash(source_id: str) -> int:
    return int.from_bytes(hashlib.sha256(source_id.encode()).digest(), "big")


def sources_of(ids: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], int, str]:
    """(sorted ids, count, digest) for a small, fixed list of sources."""
    s = SourceSet(None)
    for i in ids:
        s.add(i)
    return tuple(s.ids), s.count, s.digest()

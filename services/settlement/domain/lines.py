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
from collections.abc import Iterator, Sequence
from typing import NamedTuple
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


class StatementLine(NamedTuple):
    """A tuple, not a dataclass: a county-year builds half a million of them, and a tuple is built several times
    faster than a frozen dataclass. Build it with keywords; fields are never positional in this code base."""

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
        """``json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)``."""
        return canonical_line_json(self, {})


class StatementLines(Sequence):
    """A statement's lines, kept as records ``(county, period label, *StatementLine fields)`` — the rows they are
    stored as, so the service writes them as they are. A county-year has half a million lines; a ``StatementLine``
    is made only for the lines one looks at. Compares equal to any sequence of the same lines."""

    __slots__ = ("records",)

    def __init__(self, records: list[tuple] | None = None):
        self.records: list[tuple] = records if records is not None else []

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(map(_line_of, self.records[i]))
        return _line_of(self.records[i])

    def __iter__(self) -> Iterator[StatementLine]:
        return map(_line_of, self.records)

    def __eq__(self, other) -> bool:
        if isinstance(other, StatementLines):
            return len(self) == len(other) and all(a[2:] == b[2:] for a, b in zip(self.records, other.records))
        if isinstance(other, Sequence) and not isinstance(other, str):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StatementLines({len(self)} lines)"

    def capped(self) -> bool:
        """Whether some line keeps fewer source ids than it has (``max_sources_per_line``)."""
        return any(r[16] > len(r[15]) for r in self.records)


def _line_of(record: tuple) -> StatementLine:
    return tuple.__new__(StatementLine, record[2:])


def canonical_line_json(ln: StatementLine, cache: dict) -> str:
    """The canonical JSON of one line, written out in key order (the content hash encodes every line of a
    county-year, and this is several times faster than ``json.dumps``). ``cache`` maps strings already encoded
    to their JSON form: parties, agreements and months recur on many lines."""
    (line_no, kind, payer, payee, amount, agreement_id, version, tax_kind, month, year, adjusts, measure,
     allocation_id, _, count, digest) = ln
    get = cache.get
    return (
        f'{{"adjusts":{get(adjusts) or _enc(cache, adjusts)},"agreement_id":{get(agreement_id) or _enc(cache, agreement_id)},'
        f'"agreement_version":{"null" if version is None else int(version)},'
        f'"agreement_year":{"null" if year is None else int(year)},'
        f'"allocation_id":{get(allocation_id) or _enc(cache, allocation_id)},"amount_fen":{amount},'
        f'"kind":{get(kind) or _enc(cache, kind)},"line_no":{line_no},"measure":{get(measure) or _enc(cache, measure)},'
        f'"month":{get(month) or _enc(cache, month)},"payee":{get(payee) or _enc(cache, payee)},'
        f'"payer":{get(payer) or _enc(cache, payer)},"source_count":{count},'
        f'"sources_digest":{encode_basestring(digest)},"tax_kind":{get(tax_kind) or _enc(cache, tax_kind)}}}'
    )


def _enc(cache: dict, value) -> str:
    """JSON of a string field (a ``LineKind`` by its value), remembered in ``cache``."""
    if value is None:
        out = "null"
    else:
        out = encode_basestring(value.value if isinstance(value, LineKind) else value)
    cache[value] = out
    return out


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
        return digest_hex(self._digest)


def id_hash(source_id: str) -> int:
    """One id's part of a digest: its sha256 as an integer."""
    return int.from_bytes(hashlib.sha256(source_id.encode()).digest(), "big")


def digest_of(ids) -> int:
    """The digest of several ids (each counted once per occurrence), as an integer."""
    return sum(map(id_hash, ids)) % _MOD


def digest_hex(digest: int) -> str:
    return digest.to_bytes(32, "big").hex()  # == f"{digest:064x}", faster


_id_hash = lru_cache(maxsize=256)(id_hash)  # bounded; the ids of one allocation and its lots recur across its lines


def sources_of(ids: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], int, str]:
    """(sorted ids, count, digest) for a small, fixed list of sources."""
    s = SourceSet(None)
    for i in ids:
        s.add(i)
    return tuple(s.ids), s.count, s.digest()

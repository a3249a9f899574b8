"""The settlement statement of one county and period: lines, party totals, content hash; finalize -> postings.

``compute_statement`` reads its inputs once, as iterables, and keeps only aggregates — per enterprise, tax kind
and month (``aggregates``; and per allocation / buy-back, which are few) — so memory does not grow with the number
of receipts (bound the kept source ids with ``max_sources_per_line``; the count and digest still cover all of
them). The rules are applied by ``build.StatementBuilder``, which the service feeds with month totals summed by
the database instead; ``assemble`` numbers the lines and tallies them (``Tally``: hash and totals in one pass).

Which statement takes which event: see ``history``. Rounding: see ``rounding``.

Lines:
- revenue_share: per agreement, tax kind and tax month of the period; destination pays origin its share.
- guaranteed_minimum_topup: in the statement whose period holds the last month of an agreement year, if the
  origin's share for that year (all tax kinds, everything settled so far) is below the minimum; paid by the
  agreement's ``minimum_payer``, by default the destination (it collected the tax and made the promise). The last
  year closes with the agreement, however short, also when an amendment ended it there after that month was
  finalized (then an adjustment of the next statement); a version that an amendment extends does not end its year
  with its own terms (the year runs on under the amendment, which tops it up).
- adjustment: a late receipt or a correction of a month already finalized re-computes that month:
  ``share(new total) - share settled``; a changed year total re-computes that year's top-up the same way.
- compensation / proceeds_share: per allocation; the project pays, the parts sum to ``amount_due``, split by the
  policy version in force on the allocation's day (the header names the version in force on the period's last day).
- buyback: the county fund pays the enterprise.
- statistics_share: per agreement, measure and month; not money. For a month earlier statements settled, the
  line is the difference ``origin_statistics(total settled + late reports) - part settled`` (rounding rule 6), still
  a statistics_share line of that month (an ``adjustment`` is money and would be posted to the ledger).

Postings (``finalize``): one ledger transfer per money line, not per netted pair, so every ledger transfer traces
back to one line and its sources; netting is what ``totals`` report. Transfer ids are derived from county,
period and line number, so re-sending a finalization is idempotent and a different content under the same id is
refused by the ledger rather than posted twice.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Callable, Iterable, Iterator

from shared.china_time import cst_date

from .aggregates import sum_receipts, sum_statistics
from .agreements import AgreementBook, RevenueSharingAgreement
from .build import StatementBuilder
from .errors import StatementError
from .history import SettledMonth, SettledStatistic, SettledTopup, SettlementHistory
from .lines import LineKind, PartyTotal, StatementLine, StatementLines, StatisticsTotal, canonical_line_json
from .parties import Party, ledger_account
from .periods import Period
from .proceeds import BuyBack, PolicyBook, QuotaAllocation, SettlementPolicy
from .receipts import StatisticsReport, TaxReceipt

try:  # a dependency; the content hash is the same without it, only slower to compute
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

DRAFT = "draft"
# Source ids kept per line (the smallest ones; count and digest cover all). A line is one enterprise's tax of one
# kind for one month, so real lines have a handful; the cap only guards memory against pathological inputs.
DEFAULT_SOURCES_PER_LINE = 1000
FINALIZED = "finalized"


@dataclass(frozen=True, kw_only=True)
class Statement:
    county: str
    period: Period
    status: str  # "draft" | "finalized"
    as_of: datetime  # events received after this are not in it; becomes the cut-off when finalized
    policy_id: str  # the policy version in force on the period's last day (allocations: ``proceeds.PolicyBook``)
    policy_version: int
    lines: StatementLines  # a sequence of StatementLine
    totals: tuple[PartyTotal, ...]  # money lines only, sorted by party; nets sum to zero
    statistics_totals: tuple[StatisticsTotal, ...]
    content_hash: str  # sha256 of canonical JSON of county, period, lines and totals (not status or as_of)
    settled_months: tuple[SettledMonth, ...]  # history rows to store when finalized
    settled_topups: tuple[SettledTopup, ...]
    settled_statistics: tuple[SettledStatistic, ...] = ()  # history rows of statistics (rule 6), stored when finalized
    unmatched_receipts: int  # receipts taken in scope that no agreement shares (counted, not settled)
    finalized_at: datetime | None = None

    @property
    def statement_id(self) -> str:
        return f"{self.county}/{self.period.label}"

    def total_for(self, party: Party) -> PartyTotal:
        for t in self.totals:
            if t.party == party:
                return t
        return PartyTotal(party, 0, 0)

    def compensation_payable(self) -> dict[Party, int]:
        """Compensation per enterprise in this statement (what finance pays out to exiting enterprises)."""
        out: dict[Party, int] = {}
        for line in self.lines:
            if line.kind is LineKind.COMPENSATION:
                out[line.payee] = out.get(line.payee, 0) + line.amount_fen
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class Posting:
    transfer_id: str
    debit_account: str  # the payer's CNY account
    credit_account: str  # the payee's CNY account
    asset: str
    amount_fen: int
    statement_id: str
    line_no: int


def compute_statement(
    county: str,
    period: Period,
    *,
    agreements: AgreementBook | Iterable[RevenueSharingAgreement],
    policy: SettlementPolicy | PolicyBook | Iterable[SettlementPolicy],
    as_of: datetime,
    receipts: Iterable[TaxReceipt] = (),
    allocations: Iterable[QuotaAllocation] = (),
    buybacks: Iterable[BuyBack] = (),
    statistics: Iterable[StatisticsReport] = (),
    finalized_prior: SettlementHistory | None = None,
    max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE,
    distinct_ids: bool = False,
) -> Statement:
    """The draft statement of ``period`` as of ``as_of``.

    Inputs may be supersets (any order, any period): events another statement takes are skipped (see
    ``history``). Each input is read once; ``max_sources_per_line`` bounds the source ids kept per line
    (None: keep all); a receipt or report id given twice is refused whatever the cap, unless ``distinct_ids`` says
    the caller guarantees there is none (then memory does not grow with the inputs). ``finalized_prior`` is what
    earlier finalized statements settled; ``period`` must be the next one to close after them. Corrections must
    carry ``replaced_amount_fen`` (``receipts.resolve_correction``). ``policy`` is the county's policy, one version or
    all of them (``PolicyBook``): each allocation is split by the version in force on the day it was made.
    """
    history = finalized_prior if finalized_prior is not None else SettlementHistory.empty()
    book = agreements if isinstance(agreements, AgreementBook) else AgreementBook(agreements)
    b = StatementBuilder(county, period, agreements=book, policy=policy, as_of=as_of, history=history,
                         max_sources_per_line=max_sources_per_line)
    b.add_tax(sum_receipts(receipts, period, history, as_of, max_sources_per_line, distinct_ids=distinct_ids))
    b.add_statistics(sum_statistics(statistics, period, history, as_of, max_sources_per_line, distinct_ids=distinct_ids))
    b.add_allocations(allocations)
    b.add_buybacks(buybacks)
    return assemble(b)


def assemble(builder: StatementBuilder, write: Callable[[list[tuple]], None] | None = None) -> Statement:
    """The statement of a builder whose inputs are all added: its lines numbered and tallied (content hash, totals)
    in one pass, each batch of line records also handed to ``write`` (the service stores them meanwhile)."""
    b = builder
    tally = Tally(b.county, b.period)
    records: list[tuple] = []
    for batch in b.batches():
        tally.add(batch)
        if write is not None:
            write(batch)
        records.extend(batch)
    digest, totals, statistics_totals = tally.close()
    settled = sorted(b.settled_months, key=lambda m: (m.agreement_id, m.tax_kind, m.month.label))
    return Statement(
        county=b.county, period=b.period, status=DRAFT, as_of=b.as_of, policy_id=b.policy.policy_id,
        policy_version=b.policy.version, lines=StatementLines(records), totals=totals,
        statistics_totals=statistics_totals, content_hash=digest, settled_months=tuple(settled),
        settled_topups=tuple(b.settled_topups), unmatched_receipts=b.unmatched,
        settled_statistics=tuple(sorted(b.settled_statistics, key=lambda m: (m.agreement_id, m.measure, m.month.label))),
    )


class Tally:
    """What a statement sums over its lines, in one pass over them in order: the content hash (sha256 of the
    canonical JSON, see ``canonical_json``), the party totals (money lines) and the statistics totals."""

    __slots__ = ("_hash", "_cache", "_first", "_receivable", "_payable", "_gained", "_ceded", "_period")

    def __init__(self, county: str, period: Period):
        self._period = period
        self._hash = hashlib.sha256(f'{{"county":{encode_basestring(county)},"lines":['.encode())
        self._cache: dict = {}  # strings -> their JSON (parties, agreements, months recur)
        self._first = True
        self._receivable: dict[Party, int] = {}
        self._payable: dict[Party, int] = {}
        self._gained: dict[tuple[Party, str], int] = {}
        self._ceded: dict[tuple[Party, str], int] = {}

    def add(self, records: list[tuple]) -> None:
        """The next lines, in order, as records ``(county, period label, *StatementLine fields)``."""
        receivable, payable = self._receivable, self._payable
        received, paid = receivable.get, payable.get
        for kind, payer, payee, amount, measure in map(_TALLIED, records):
            if kind is _STATISTICS:
                assert measure is not None
                self._gained[(payee, measure)] = self._gained.get((payee, measure), 0) + amount
                self._ceded[(payer, measure)] = self._ceded.get((payer, measure), 0) + amount
            else:
                receivable[payee] = received(payee, 0) + amount
                payable[payer] = paid(payer, 0) + amount
        if records:
            data = _lines_json(records, self._cache)
            self._hash.update(data if self._first else b"," + data)
            self._first = False

    def close(self) -> tuple[str, tuple[PartyTotal, ...], tuple[StatisticsTotal, ...]]:
        receivable, payable = self._receivable, self._payable
        totals = tuple(PartyTotal(p, receivable.get(p, 0), payable.get(p, 0))
                       for p in sorted(set(receivable) | set(payable)))
        if sum(t.net_fen for t in totals) != 0:  # cannot happen: every line credits what it debits
            raise AssertionError("party nets do not sum to zero")
        gained, ceded = self._gained, self._ceded
        statistics = tuple(StatisticsTotal(p, m, gained.get((p, m), 0), ceded.get((p, m), 0))
                           for p, m in sorted(set(gained) | set(ceded)))
        self._hash.update(f'],"period":{encode_basestring(self._period.label)},"totals":['.encode())
        self._hash.update(_totals_json(totals).encode())
        self._hash.update(b"]}")
        return self._hash.hexdigest(), totals, statistics


_STATISTICS = LineKind.STATISTICS_SHARE
_TALLIED = itemgetter(3, 4, 5, 6, 13)  # of a record: kind, payer, payee, amount_fen, measure


def _lines_json(records: list[tuple], cache: dict) -> bytes:
    """The canonical JSON of the lines of these records, comma-separated, as UTF-8. orjson writes what
    ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` writes (keys given in sorted
    order; enums by value) in a fraction of the time; ``canonical_line_json`` does it where orjson is missing or
    refuses a value (an integer beyond 64 bits). Tests hold both to ``json.dumps``."""
    if orjson is not None:
        try:
            return orjson.dumps([
                {"adjusts": adjusts, "agreement_id": agreement_id, "agreement_version": version,
                 "agreement_year": year, "allocation_id": allocation_id, "amount_fen": amount, "kind": kind,
                 "line_no": n, "measure": measure, "month": month, "payee": payee, "payer": payer,
                 "source_count": count, "sources_digest": digest, "tax_kind": tax_kind}
                for (_, _, n, kind, payer, payee, amount, agreement_id, version, tax_kind, month, year, adjusts, measure,
                     allocation_id, _, count, digest) in records])[1:-1]
        except (orjson.JSONEncodeError, TypeError):
            pass
    return ",".join([canonical_line_json(r[2:], cache) for r in records]).encode()


def _totals_json(totals: Iterable[PartyTotal]) -> str:
    return ",".join(
        f'{{"net_fen":{t.net_fen},"party":{encode_basestring(t.party)},"payable_fen":{t.payable_fen},'
        f'"receivable_fen":{t.receivable_fen}}}' for t in totals)


def _canonical_chunks(county: str, period: Period, lines: Iterable[StatementLine],
                      totals: Iterable[PartyTotal]) -> Iterator[str]:
    """The canonical JSON document in pieces (so a county-year is hashed without one giant string):
    ``json.dumps({"county", "period", "lines": [line.canonical()...], "totals": [...]}, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)``, byte for byte."""
    yield f'{{"county":{encode_basestring(county)},"lines":['
    cache: dict = {}
    batch: list[str] = []
    for ln in lines:
        batch.append(canonical_line_json(ln, cache))
        if len(batch) == 2000:
            yield ",".join(batch)
            batch = [""]  # the next batch starts with the separating comma
    yield ",".join(batch)
    yield f'],"period":{encode_basestring(period.label)},"totals":['
    yield _totals_json(totals)
    yield "]}"


def canonical_json(county: str, period: Period, lines: Iterable[StatementLine], totals: Iterable[PartyTotal]) -> str:
    return "".join(_canonical_chunks(county, period, lines, totals))


def content_hash(county: str, period: Period, lines: Iterable[StatementLine], totals: Iterable[PartyTotal]) -> str:
    h = hashlib.sha256()
    for chunk in _canonical_chunks(county, period, lines, totals):
        h.update(chunk.encode("utf-8"))
    return h.hexdigest()


def finalize(statement: Statement) -> tuple[Statement, tuple[Posting, ...]]:
    """Freeze a draft: the cut-off is its ``as_of`` (so an event is in exactly one statement — compute the draft
    at the moment of finalizing, in the same unit of work). Returns the finalized statement and the ledger
    postings to send, one per money line (see the module docstring)."""
    if statement.status != DRAFT:
        raise StatementError("already_finalized", f"statement {statement.statement_id} is already finalized")
    if cst_date(statement.as_of) <= statement.period.end:  # ended in China, not in as_of's own offset
        raise StatementError(
            "period_not_ended", f"{statement.period.label} ends {statement.period.end}; the statement is as of {statement.as_of}"
        )
    final = replace(statement, status=FINALIZED, finalized_at=statement.as_of)
    return final, postings_for(final)


def postings_for(statement: Statement) -> tuple[Posting, ...]:
    return tuple(
        Posting(
            transfer_id=f"settlement:{statement.county}:{statement.period.label}:{ln.line_id}",
            debit_account=ledger_account(ln.payer),
            credit_account=ledger_account(ln.payee),
            asset="CNY",
            amount_fen=ln.amount_fen,
            statement_id=statement.statement_id,
            line_no=ln.line_no,
        )
        for ln in statement.lines
        if ln.kind.is_money
    )

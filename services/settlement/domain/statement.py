"""The settlement statement of one county and period: lines, party totals, content hash; finalize -> postings.

``compute_statement`` reads its inputs once, as iterables, and keeps only aggregates — per agreement, tax kind
and month (and per allocation / buy-back, which are few) — so memory does not grow with the number of receipts
(bound the kept source ids with ``max_sources_per_line``; the count and digest still cover all of them).

Which statement takes which event: see ``history``. Rounding: see ``rounding``.

Lines:
- revenue_share: per agreement, tax kind and tax month of the period; destination pays origin its share.
- guaranteed_minimum_topup: in the statement whose period holds the last month of an agreement year, if the
  origin's share for that year (all tax kinds, everything settled so far) is below the minimum; paid by the
  agreement's ``minimum_payer``, by default the destination (it collected the tax and made the promise).
- adjustment: a late receipt or a correction of a month already finalized re-computes that month:
  ``share(new total) - share settled``; a changed year total re-computes that year's top-up the same way.
- compensation / proceeds_share: per allocation; the project pays, the parts sum to ``amount_due``.
- buyback: the county fund pays the enterprise.
- statistics_share: per agreement, measure and month; not money.

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
from typing import Iterable, Iterator

from .agreements import AgreementBook, RevenueSharingAgreement
from .errors import PartyError, SettlementDomainError, StatementError
from .history import SettledMonth, SettledTopup, SettlementHistory
from .lines import LineKind, PartyTotal, SourceSet, StatementLine, StatisticsTotal, sources_of
from .parties import Party, county_fund, enterprise as enterprise_party, ledger_account, project as project_party
from .periods import Period, PeriodKind, ensure_next_to_close, month_index
from .proceeds import BuyBack, QuotaAllocation, SettlementPolicy, split_proceeds, validate_allocation, validate_buyback
from .receipts import StatisticsReport, TaxReceipt

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
    policy_id: str
    policy_version: int
    lines: tuple[StatementLine, ...]
    totals: tuple[PartyTotal, ...]  # money lines only, sorted by party; nets sum to zero
    statistics_totals: tuple[StatisticsTotal, ...]
    content_hash: str  # sha256 of canonical JSON of county, period, lines and totals (not status or as_of)
    settled_months: tuple[SettledMonth, ...]  # history rows to store when finalized
    settled_topups: tuple[SettledTopup, ...]
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


# -- aggregation ----------------------------------------------------------------------------------------


class _MonthAgg:
    __slots__ = ("agreement", "month", "late", "delta", "sources")

    def __init__(self, agreement: RevenueSharingAgreement, month: Period, late: bool, cap: int | None):
        self.agreement = agreement
        self.month = month
        self.late = late
        self.delta = 0
        self.sources = SourceSet(cap)


class _StatAgg:
    __slots__ = ("agreement", "month", "total", "sources")

    def __init__(self, agreement: RevenueSharingAgreement, month: Period, cap: int | None):
        self.agreement = agreement
        self.month = month
        self.total = 0
        self.sources = SourceSet(cap)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _line(kind: LineKind, payer: Party, payee: Party, amount: int, sources: SourceSet | tuple[str, ...], **fields) -> StatementLine | None:
    """Rule 7 of ``rounding``: negative swaps payer and payee, zero makes no line."""
    if amount == 0:
        return None
    if amount < 0:
        payer, payee, amount = payee, payer, -amount
    if isinstance(sources, SourceSet):
        ids, count, digest = tuple(sources.ids), sources.count, sources.digest()
    else:
        ids, count, digest = sources_of(sources)
    return StatementLine(line_no=0, kind=kind, payer=payer, payee=payee, amount_fen=amount, sources=ids,
                         source_count=count, sources_digest=digest, **fields)


def compute_statement(
    county: str,
    period: Period,
    *,
    agreements: AgreementBook | Iterable[RevenueSharingAgreement],
    policy: SettlementPolicy,
    as_of: datetime,
    receipts: Iterable[TaxReceipt] = (),
    allocations: Iterable[QuotaAllocation] = (),
    buybacks: Iterable[BuyBack] = (),
    statistics: Iterable[StatisticsReport] = (),
    finalized_prior: SettlementHistory | None = None,
    max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE,
) -> Statement:
    """The draft statement of ``period`` as of ``as_of``.

    Inputs may be supersets (any order, any period): events another statement takes are skipped (see
    ``history``). Each input is read once; ``max_sources_per_line`` bounds the source ids kept per line
    (None: keep all). ``finalized_prior`` is what earlier finalized statements settled; ``period`` must be the next
    one to close after them. Corrections must carry ``replaced_amount_fen`` (``receipts.resolve_correction``).
    """
    history = finalized_prior if finalized_prior is not None else SettlementHistory.empty()
    try:
        fund = county_fund(county)
    except PartyError as exc:
        raise StatementError(exc.reason, str(exc)) from None
    if policy.county != county:
        raise StatementError("policy_for_other_county", f"policy {policy.policy_id} is for county {policy.county}, not {county}")
    if not isinstance(as_of, datetime) or as_of.tzinfo is None:
        raise StatementError("as_of_not_timezone_aware", "as_of must be a timezone-aware datetime")
    if history.last_closed is not None:
        _reraise(lambda p: ensure_next_to_close(p, history.last_closed.period), period)
        if as_of <= history.last_closed.finalized_at:
            raise StatementError("as_of_before_last_cutoff", f"as_of {as_of} is not after the last cut-off")
    if max_sources_per_line is not None and (not _is_int(max_sources_per_line) or max_sources_per_line < 0):
        raise StatementError("invalid_source_cap", "max_sources_per_line must be None or an integer >= 0")
    book = agreements if isinstance(agreements, AgreementBook) else AgreementBook(agreements)
    cap = max_sources_per_line
    lines: list[StatementLine | None] = []

    # -- tax receipts: one pass, aggregated per (agreement, tax kind, month) -----------------------------
    months: dict[tuple[str, str, str], _MonthAgg] = {}
    unmatched = 0
    for r in receipts:
        _require_aware(r.received_at, f"receipt {r.receipt_id}")
        where = history.placement(period, r.month.start, r.received_at, as_of)
        if where is None:
            continue
        if not _is_int(r.amount_fen) or r.amount_fen < 0:
            raise StatementError("negative_tax", f"receipt {r.receipt_id}: tax amount must be integer fen >= 0")
        if r.corrects is not None and r.replaced_amount_fen is None:
            raise StatementError("correction_not_resolved", f"receipt {r.receipt_id}: the replaced amount is missing")
        agreement = book.resolve(r.enterprise, r.tax_kind, r.month)
        if agreement is None:
            unmatched += 1
            continue
        key = (agreement.agreement_id, r.tax_kind, r.month.label)
        agg = months.get(key)
        if agg is None:
            agg = months[key] = _MonthAgg(agreement, r.month, where == "late", cap)
        agg.delta += r.delta_fen
        agg.sources.add(r.receipt_id)

    settled_months: dict[tuple[str, str, str], SettledMonth] = {}
    months_of_agreement: dict[str, list[SettledMonth]] = {}  # the same, by agreement (top-ups look them up)
    for key in sorted(months):
        agg = months[key]
        a, tax_kind = agg.agreement, key[1]
        prior = history.month(a.agreement_id, tax_kind, agg.month)
        prior_tax = prior.tax_fen if prior else 0
        prior_share = prior.origin_share_fen if prior else 0
        new_tax = prior_tax + agg.delta
        if new_tax < 0:
            raise StatementError(
                "negative_month_total",
                f"{a.agreement_id} {tax_kind} {agg.month.label}: corrections bring the month's tax below zero "
                "(is the corrected receipt missing from the history?)",
            )
        new_share = a.origin_share(tax_kind, agg.month, new_tax)
        settled_months[key] = SettledMonth(a.agreement_id, tax_kind, agg.month, new_tax, new_share)
        months_of_agreement.setdefault(a.agreement_id, []).append(settled_months[key])
        lines.append(_line(
            LineKind.ADJUSTMENT if agg.late else LineKind.REVENUE_SHARE,
            a.destination, a.origin, new_share - prior_share, agg.sources,
            agreement_id=a.agreement_id, agreement_version=a.version, tax_kind=tax_kind, month=agg.month.label,
            adjusts=LineKind.REVENUE_SHARE if agg.late else None,
        ))

    # -- guaranteed minimum: years closing in this period, and closed years touched by late receipts -------
    candidates: set[tuple[str, int]] = set()  # (agreement id, month index of the year's last month)
    for agreement_id in book.agreement_ids():
        for m in period.months():
            v = book.governing(agreement_id, m)
            if v is not None and v.guaranteed_minimum_fen is not None and v.year_closed_by(m):
                candidates.add((agreement_id, month_index(m.start)))
    first_closed = history.first_closed_start
    for agg in months.values():
        if not agg.late:
            continue
        a = agg.agreement
        last = a.year_months(a.year_index(agg.month))[1]
        if last.start < period.start and first_closed is not None and last.start >= first_closed:
            candidates.add((a.agreement_id, month_index(last.start)))

    settled_topups: list[SettledTopup] = []
    for agreement_id, last_idx in sorted(candidates):
        last = Period.month(last_idx // 12, last_idx % 12 + 1)
        v = book.governing(agreement_id, last)
        year = v.year_closed_by(last) if v is not None else None
        if v is None or year is None or v.guaranteed_minimum_fen is None:
            continue
        first, _ = v.year_months(year)
        lo, hi = month_index(first.start), last_idx
        shares: dict[tuple[str, str, str], int] = {
            m.key: m.origin_share_fen for m in history.months_of(agreement_id) if lo <= month_index(m.month.start) <= hi
        }
        for m in months_of_agreement.get(agreement_id, ()):
            if lo <= month_index(m.month.start) <= hi:
                shares[m.key] = m.origin_share_fen
        due = max(0, v.guaranteed_minimum_fen - sum(shares.values()))
        prior_topup = history.topup(agreement_id, year)
        closing_now = period.contains(last)
        settled_topups.append(SettledTopup(agreement_id, year, due))
        lines.append(_line(
            LineKind.GUARANTEED_MINIMUM_TOPUP if closing_now else LineKind.ADJUSTMENT,
            v.topup_payer, v.origin, due - prior_topup, (f"agreement:{v.ref}/year:{year}",),
            agreement_id=agreement_id, agreement_version=v.version, month=last.label, agreement_year=year,
            adjusts=None if closing_now else LineKind.GUARANTEED_MINIMUM_TOPUP,
        ))

    # -- statistics ---------------------------------------------------------------------------------------
    stats: dict[tuple[str, str, str], _StatAgg] = {}
    for s in statistics:
        _require_aware(s.received_at, f"statistics report {s.report_id}")
        if history.placement(period, s.month.start, s.received_at, as_of) is None:
            continue
        if not _is_int(s.amount_fen) or s.amount_fen < 0:
            raise StatementError("negative_statistic", f"statistics report {s.report_id}: amount must be integer >= 0")
        agreement = book.resolve_statistics(s.enterprise, s.month)
        if agreement is None:
            continue
        key = (agreement.agreement_id, s.measure, s.month.label)
        sagg = stats.get(key)
        if sagg is None:
            sagg = stats[key] = _StatAgg(agreement, s.month, cap)
        sagg.total += s.amount_fen
        sagg.sources.add(s.report_id)
    for key in sorted(stats):
        sagg = stats[key]
        a = sagg.agreement
        lines.append(_line(
            LineKind.STATISTICS_SHARE, a.destination, a.origin, a.origin_statistics(sagg.total), sagg.sources,
            agreement_id=a.agreement_id, agreement_version=a.version, month=sagg.month.label, measure=key[1],
        ))

    # -- quota proceeds -------------------------------------------------------------------------------------
    seen_allocations: set[str] = set()
    for alloc in allocations:
        _reraise(validate_allocation, alloc)
        if history.placement(period, _month_of(alloc.allocated_on).start, alloc.received_at, as_of) is None:
            continue
        if alloc.allocation_id in seen_allocations:
            raise StatementError("duplicate_input", f"allocation {alloc.allocation_id} is given twice")
        seen_allocations.add(alloc.allocation_id)
        parts = split_proceeds(alloc, policy)
        payer = project_party(alloc.project_id)
        month = _month_of(alloc.allocated_on).label
        for credit_code, amount in parts.compensation.items():
            lines.append(_line(
                LineKind.COMPENSATION, payer, enterprise_party(credit_code), amount,
                (alloc.allocation_id, *parts.lots_by_enterprise[credit_code]), month=month,
                allocation_id=alloc.allocation_id,
            ))
        for party, amount in parts.shares.items():
            lines.append(_line(
                LineKind.PROCEEDS_SHARE, payer, party, amount,
                (alloc.allocation_id, *parts.lots_by_township.get(party, ())), month=month,
                allocation_id=alloc.allocation_id,
            ))

    seen_buybacks: set[str] = set()
    for b in buybacks:
        _reraise(validate_buyback, b)
        if history.placement(period, _month_of(b.agreed_on).start, b.received_at, as_of) is None:
            continue
        if b.buyback_id in seen_buybacks:
            raise StatementError("duplicate_input", f"buy-back {b.buyback_id} is given twice")
        seen_buybacks.add(b.buyback_id)
        lines.append(_line(LineKind.BUYBACK, fund, enterprise_party(b.enterprise), b.amount_fen,
                           (b.buyback_id, b.lot_id), month=_month_of(b.agreed_on).label))

    return _assemble(county, period, as_of, policy, [ln for ln in lines if ln is not None],
                     tuple(settled_months[k] for k in sorted(settled_months)),
                     tuple(sorted(settled_topups, key=lambda t: (t.agreement_id, t.agreement_year))), unmatched)


def _month_of(d) -> Period:
    return Period.containing(d, PeriodKind.MONTH)


def _require_aware(received_at: datetime, what: str) -> None:
    if not isinstance(received_at, datetime) or received_at.tzinfo is None:
        raise StatementError("received_at_not_timezone_aware", f"{what}: received_at must be timezone-aware")


def _reraise(check, item) -> None:
    try:
        check(item)
    except SettlementDomainError as exc:
        raise StatementError(exc.reason, str(exc)) from None


def _assemble(county: str, period: Period, as_of: datetime, policy: SettlementPolicy, raw: list[StatementLine],
              settled_months: tuple[SettledMonth, ...], settled_topups: tuple[SettledTopup, ...],
              unmatched: int) -> Statement:
    ordered = sorted(raw, key=StatementLine.sort_key)
    for i, ln in enumerate(ordered, start=1):
        # numbered in place: these lines were made by this computation and nobody else holds them yet, and a copy
        # per line (dataclasses.replace) costs more than the rest of a county-year's assembly
        object.__setattr__(ln, "line_no", i)
    lines = tuple(ordered)
    receivable: dict[Party, int] = {}
    payable: dict[Party, int] = {}
    gained: dict[tuple[Party, str], int] = {}
    ceded: dict[tuple[Party, str], int] = {}
    for ln in lines:
        if ln.kind.is_money:
            receivable[ln.payee] = receivable.get(ln.payee, 0) + ln.amount_fen
            payable[ln.payer] = payable.get(ln.payer, 0) + ln.amount_fen
        else:
            assert ln.measure is not None
            gained[(ln.payee, ln.measure)] = gained.get((ln.payee, ln.measure), 0) + ln.amount_fen
            ceded[(ln.payer, ln.measure)] = ceded.get((ln.payer, ln.measure), 0) + ln.amount_fen
    totals = tuple(
        PartyTotal(p, receivable.get(p, 0), payable.get(p, 0)) for p in sorted(set(receivable) | set(payable))
    )
    if sum(t.net_fen for t in totals) != 0:  # cannot happen: every line credits what it debits
        raise AssertionError("party nets do not sum to zero")
    stat_totals = tuple(
        StatisticsTotal(p, m, gained.get((p, m), 0), ceded.get((p, m), 0)) for p, m in sorted(set(gained) | set(ceded))
    )
    return Statement(
        county=county, period=period, status=DRAFT, as_of=as_of, policy_id=policy.policy_id,
        policy_version=policy.version, lines=lines, totals=totals, statistics_totals=stat_totals,
        content_hash=content_hash(county, period, lines, totals), settled_months=settled_months,
        settled_topups=settled_topups, unmatched_receipts=unmatched,
    )


def _canonical_chunks(county: str, period: Period, lines: Iterable[StatementLine],
                      totals: Iterable[PartyTotal]) -> Iterator[str]:
    """The canonical JSON document in pieces (so a county-year is hashed without one giant string):
    ``json.dumps({"county", "period", "lines": [line.canonical()...], "totals": [...]}, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)``, byte for byte."""
    yield f'{{"county":{encode_basestring(county)},"lines":['
    batch: list[str] = []
    for ln in lines:
        batch.append(ln.canonical_json())
        if len(batch) == 2000:
            yield ",".join(batch)
            batch = [""]  # the next batch starts with the separating comma
    yield ",".join(batch)
    yield f'],"period":{encode_basestring(period.label)},"totals":['
    yield ",".join(
        f'{{"net_fen":{t.net_fen},"party":{encode_basestring(t.party)},"payable_fen":{t.payable_fen},'
        f'"receivable_fen":{t.receivable_fen}}}' for t in totals)
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
    if statement.as_of.date() <= statement.period.end:
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

"""The rules of a statement (see ``statement``), from summed inputs to numbered lines in their final order.

``StatementBuilder`` takes month totals of tax and statistics (``aggregates``: summed in memory or by the
database), allocations and buy-backs, and hands the lines out in batches, numbered and in the order of
``StatementLine.sort_key`` — without sorting half a million lines by that key:

- each kind is built apart and the kinds are handed out in ``LineKind`` order;
- revenue-share lines are sorted by (month, agreement, tax kind), which is unique among them;
- compensation and proceeds-share lines are made allocation by allocation, allocations sorted by (month,
  allocation id) and an allocation's lines by payee (the payer, its project, is the same on all of them); the
  compensation lines are handed out as they are made, the proceeds-share lines once all compensation is out;
- the other kinds (few) are sorted by the full key.

Lines are handed out lazily, so the service can write them while the rest is still being computed; allocations are
even checked and split only then.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Iterable, Iterator

from .agreements import AgreementBook, RevenueSharingAgreement
from .aggregates import MonthTotal, is_int
from .errors import PartyError, SettlementDomainError, StatementError
from .history import SettledMonth, SettledStatistic, SettledTopup, SettlementHistory
from .lines import LineKind, StatementLine, _id_hash, digest_hex, digest_of, id_hash
from .parties import county_fund, enterprise as enterprise_party, project as project_party
from .periods import Period, PeriodKind, ensure_next_to_close, month_index
from .proceeds import (BuyBack, PolicyBook, QuotaAllocation, SettlementPolicy, proceeds_parts, validate_allocation,
                       validate_buyback)

_MOD = 1 << 256
REVENUE, TOPUP, ADJUSTMENT = LineKind.REVENUE_SHARE, LineKind.GUARANTEED_MINIMUM_TOPUP, LineKind.ADJUSTMENT
COMPENSATION, PROCEEDS, BUYBACK = LineKind.COMPENSATION, LineKind.PROCEEDS_SHARE, LineKind.BUYBACK
STATISTICS = LineKind.STATISTICS_SHARE
_ENTERPRISE = "enterprise:"  # + credit code == parties.enterprise(code), checked with its allocation already


def _fields(kind: LineKind, payer: str, payee: str, amount: int, sources: tuple[str, ...], count: int, digest: str,
            agreement_id=None, agreement_version=None, tax_kind=None, month=None, agreement_year=None, adjusts=None,
            measure=None, allocation_id=None) -> tuple | None:
    """A line without its number, in ``StatementLine`` field order. Rounding rule 7: a negative amount swaps payer
    and payee, a zero amount makes no line."""
    if amount == 0:
        return None
    if amount < 0:
        payer, payee, amount = payee, payer, -amount
    return (kind, payer, payee, amount, agreement_id, agreement_version, tax_kind, month, agreement_year, adjusts,
            measure, allocation_id, sources, count, digest)


def _by_full_key(fields: list[tuple]) -> list[tuple]:
    return sorted(fields, key=lambda f: tuple.__new__(StatementLine, (0, *f)).sort_key())


def _reraise(check, item) -> None:
    try:
        check(item)
    except SettlementDomainError as exc:
        raise StatementError(exc.reason, str(exc)) from None


def _month_of(d) -> Period:
    return Period.containing(d, PeriodKind.MONTH)


def _month_label(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"  # == _month_of(d).label


class StatementBuilder:
    def __init__(self, county: str, period: Period, *, agreements: AgreementBook,
                 policy: SettlementPolicy | PolicyBook | Iterable[SettlementPolicy], as_of: datetime,
                 history: SettlementHistory, max_sources_per_line: int | None):
        """``policy``: the county's policy versions (one version: in force throughout). Each allocation is split by
        the version in force on its ``allocated_on``; the statement names the version in force on the period's last
        day (``self.policy``)."""
        try:
            self.fund = county_fund(county)
        except PartyError as exc:
            raise StatementError(exc.reason, str(exc)) from None
        try:
            policies = PolicyBook.of(policy)
        except SettlementDomainError as exc:
            raise StatementError(exc.reason, str(exc)) from None
        if policies.county != county:
            raise StatementError("policy_for_other_county",
                                 f"policy {policies.latest.policy_id} is for county {policies.county}, not {county}")
        header = policies.version_in_force(period.end)
        if header is None:
            raise StatementError("policy_missing", f"county {county} has no settlement policy in force in {period.label} "
                                 f"(the earliest version takes effect {policies.first_effective})")  # not v1's: see PolicyBook
        if not isinstance(as_of, datetime) or as_of.tzinfo is None:
            raise StatementError("as_of_not_timezone_aware", "as_of must be a timezone-aware datetime")
        if history.last_closed is not None:
            _reraise(lambda p: ensure_next_to_close(p, history.last_closed.period), period)
            if as_of <= history.last_closed.finalized_at:
                raise StatementError("as_of_before_last_cutoff", f"as_of {as_of} is not after the last cut-off")
        cap = max_sources_per_line
        if cap is not None and (not is_int(cap) or cap < 0):
            raise StatementError("invalid_source_cap", "max_sources_per_line must be None or an integer >= 0")
        self.county, self.period, self.book, self.policy, self.policies = county, period, agreements, header, policies
        self.as_of, self.history, self.cap = as_of, history, cap
        self.unmatched = 0  # receipts taken in scope that no agreement shares
        self.settled_months: list[SettledMonth] = []
        self.settled_topups: list[SettledTopup] = []
        self.settled_statistics: list[SettledStatistic] = []
        # (month, agreement, tax kind, payer, payee, amount, version, sources, count, digest): sorted as they are
        self._revenue: list[tuple] = []
        self._adjustments: list[tuple] = []
        self._statistics: list[tuple] = []
        # agreements with a guaranteed minimum in some version: only their months are looked up again for top-ups
        self._minimum_ids = {i for i in agreements.agreement_ids()
                             if any(v.guaranteed_minimum_fen is not None for v in agreements.versions(i))}
        self._months_of: dict[str, list[SettledMonth]] = {}
        self._late_years: set[tuple[str, int]] = set()  # (agreement, month index of a year's last month)
        self._allocation_inputs: list[Iterable[QuotaAllocation]] = []
        self._buybacks: list[tuple] = []
        self._seen_buybacks: set[str] = set()
        self._handed_out = False

    # -- tax: one line per agreement, tax kind and month ------------------------------------------------
    def add_tax(self, totals: Iterable[MonthTotal]) -> None:
        """Each enterprise, tax kind and month at most once (``sum_receipts`` and the database's GROUP BY see to
        it), so each agreement, tax kind and month at most once: an agreement shares one enterprise's taxes."""
        resolve, prior_of, start = self.book.resolve, self.history.months.get, self.period.start
        first_closed = self.history.first_closed_start
        settled, revenue = self.settled_months, self._revenue
        minimum_ids, months_of = self._minimum_ids, self._months_of
        for enterprise, kind, month, amount, sources, count, digest in totals:
            a = resolve(enterprise, kind, month)
            if a is None:
                self.unmatched += count
                continue
            agreement_id, label = a.agreement_id, month.label
            prior = prior_of((agreement_id, kind, label))
            prior_tax, prior_share = (prior.tax_fen, prior.origin_share_fen) if prior else (0, 0)
            new_tax = prior_tax + amount
            if new_tax < 0:
                raise StatementError(
                    "negative_month_total",
                    f"{agreement_id} {kind} {label}: corrections bring the month's tax below zero "
                    "(is the corrected receipt missing from the history?)",
                )
            new_share = a.origin_share(kind, month, new_tax)
            m = SettledMonth(agreement_id, kind, month, new_tax, new_share)
            settled.append(m)
            if agreement_id in minimum_ids:
                months_of.setdefault(agreement_id, []).append(m)
            share = new_share - prior_share
            if month.start >= start:  # (month, agreement, tax kind) first: what revenue lines are sorted by
                if share:
                    payer, payee = (a.destination, a.origin) if share > 0 else (a.origin, a.destination)
                    revenue.append((label, agreement_id, kind, payer, payee, abs(share), a.version, sources, count,
                                    digest))
                continue
            if share:
                self._adjustments.append(_fields(
                    ADJUSTMENT, a.destination, a.origin, share, sources, count, digest, agreement_id=agreement_id,
                    agreement_version=a.version, tax_kind=kind, month=label, adjusts=REVENUE))
            # a late month may change the top-up of its (closed) agreement year
            last = self._year_end(a, month)
            if last is not None and last.start < start and first_closed is not None and last.start >= first_closed:
                self._late_years.add((agreement_id, month_index(last.start)))

    def _year_end(self, a: RevenueSharingAgreement, month: Period) -> Period | None:
        """The last month of ``month``'s agreement year as ``_topups`` counts it: by the version in force in that
        last month, which may have extended or shortened the year of ``a`` (the version governing ``month``)."""
        seen = set()
        while a.version not in seen:
            seen.add(a.version)
            year = a.year_index(month)
            if year < 1:
                return None
            last = a.year_months(year, self.book.final_month(a.agreement_id))[1]
            later = self.book.version_in_force(a.agreement_id, last.start)
            if later is None or later.version == a.version:
                return last
            a = later
        # versions that send the year's end back and forth: the agreement was ended before that end, in a month
        # of this year — the year closes there (``_closing``)
        final = self.book.final_month(a.agreement_id)
        closing = self._closing(a.agreement_id, final) if final is not None and final.index >= month.index else None
        return final if closing is not None and closing[0].year_index(month) == closing[1] else None

    def _closing(self, agreement_id: str, last: Period) -> tuple[RevenueSharingAgreement, int] | None:
        """(version, agreement year) when a year with a guaranteed minimum closes in ``last``, by the version in force
        then: twelve months from the agreement's start, or fewer where the agreement ends by all its versions (one
        that an amendment extends does not end the year with its own terms); or the agreement's last month (a short
        last year closes with the agreement, also when a later amendment ended it there, before its own
        ``effective_from``)."""
        v = self.book.governing(agreement_id, last)
        if v is None or v.guaranteed_minimum_fen is None:
            return None
        final = self.book.final_month(agreement_id)
        year = v.year_closed_by(last, final)
        if year is None and last == final:
            year = v.year_index(last)
        return (v, year) if year else None

    # -- statistics: like tax, not money ------------------------------------------------------------------
    def add_statistics(self, totals: Iterable[MonthTotal]) -> None:
        """Each enterprise, measure and month at most once (as for ``add_tax``). Rounding rule 6 as for tax: the
        origin's part is recomputed from the month's statistic settled so far plus what this statement takes, and
        the line carries the difference from the part already attributed — so, summed over all statements, the
        origin is attributed exactly the split of the month's total, whatever the periods its reports arrived in.
        A month settled before keeps its kind: a ``statistics_share`` line of that month (statistics are never
        money, so never an ``adjustment``, which the ledger would post)."""
        resolve, prior_of = self.book.resolve_statistics, self.history.statistics.get
        settled, lines = self.settled_statistics, self._statistics
        for enterprise, measure, month, amount, sources, count, digest in totals:
            a = resolve(enterprise, month)
            if a is None:
                continue
            agreement_id, label = a.agreement_id, month.label
            prior = prior_of((agreement_id, measure, label))
            prior_total, prior_part = (prior.total, prior.origin_part) if prior else (0, 0)
            new_total = prior_total + amount
            new_part = a.origin_statistics(new_total)
            settled.append(SettledStatistic(agreement_id, measure, month, new_total, new_part))
            f = _fields(STATISTICS, a.destination, a.origin, new_part - prior_part, sources, count, digest,
                        agreement_id=agreement_id, agreement_version=a.version, month=label, measure=measure)
            if f is not None:
                lines.append(f)

    # -- quota proceeds and buy-backs: checked and placed now, split when their lines are handed out -------
    def add_allocations(self, allocations: Iterable[QuotaAllocation]) -> None:
        """Read (checked, placed, split) when their lines are made: the service lets the database store the
        lines before them meanwhile."""
        self._allocation_inputs.append(allocations)

    def _taken_allocations(self) -> list[QuotaAllocation]:
        placement, period, as_of = self.history.placement, self.period, self.as_of
        taken, seen = [], set()
        for allocations in self._allocation_inputs:
            for alloc in allocations:
                _reraise(validate_allocation, alloc)
                on = alloc.allocated_on
                if placement(period, date(on.year, on.month, 1), alloc.received_at, as_of) is None:
                    continue
                if alloc.allocation_id in seen:
                    raise StatementError("duplicate_input", f"allocation {alloc.allocation_id} is given twice")
                seen.add(alloc.allocation_id)
                taken.append(alloc)
        self._allocation_inputs = []
        return taken

    def add_buybacks(self, buybacks: Iterable[BuyBack]) -> None:
        for b in buybacks:
            _reraise(validate_buyback, b)
            month = _month_of(b.agreed_on)
            if self.history.placement(self.period, month.start, b.received_at, self.as_of) is None:
                continue
            if b.buyback_id in self._seen_buybacks:
                raise StatementError("duplicate_input", f"buy-back {b.buyback_id} is given twice")
            self._seen_buybacks.add(b.buyback_id)
            ids = (b.buyback_id, b.lot_id)
            if b.buyback_id == b.lot_id:
                raise StatementError("duplicate_input", f"{b.lot_id} is given twice")
            self._buybacks.append(_fields(BUYBACK, self.fund, enterprise_party(b.enterprise), b.amount_fen,
                                          tuple(sorted(ids)), 2, digest_hex(digest_of(ids)), month=month.label))

    # -- the lines ---------------------------------------------------------------------------------------
    def batches(self, size: int = 2000) -> Iterator[list[tuple]]:
        """The lines as records ``(county, period label, *StatementLine fields)``, numbered from 1 in their final
        order, about ``size`` at a time (``lines.StatementLines`` holds them). Call once, after the ``add_*``."""
        if self._handed_out:
            raise RuntimeError("a builder hands its lines out once")
        self._handed_out = True
        county, label = self.county, self.period.label
        n = 0
        revenue, self._revenue = self._revenue, []
        revenue.sort()  # by (month, agreement, tax kind): unique, so nothing after them is compared
        for i in range(0, len(revenue), size):
            chunk = revenue[i : i + size]
            yield [(county, label, k, REVENUE, payer, payee, amount, agreement_id, version, kind, month, None, None,
                    None, None, sources, count, digest)
                   for k, (month, agreement_id, kind, payer, payee, amount, version, sources, count, digest)
                   in enumerate(chunk, n + 1)]
            n += len(chunk)
        del revenue
        topups, topup_adjustments = self._topups()
        for part in (_by_full_key(topups), _by_full_key(self._adjustments + topup_adjustments)):
            yield from self._numbered(part, n, size)
            n += len(part)
        allocations = sorted(self._taken_allocations(),
                             key=lambda a: (a.allocated_on.year, a.allocated_on.month, a.allocation_id))
        compensation: list[tuple] = []  # records: numbered as they are made
        proceeds: list[tuple] = []  # fields: numbered once all compensation is out
        for alloc in allocations:
            self._proceeds_lines(alloc, compensation, n + len(compensation) + 1, proceeds)
            if len(compensation) >= size:  # handed out while the next allocations are split
                yield compensation
                n += len(compensation)
                compensation = []
        if compensation:
            yield compensation
            n += len(compensation)
        for part in (proceeds, _by_full_key(self._buybacks), _by_full_key(self._statistics)):
            yield from self._numbered(part, n, size)
            n += len(part)

    def _numbered(self, fields: list[tuple], n: int, size: int) -> Iterator[list[tuple]]:
        county, label = self.county, self.period.label
        for i in range(0, len(fields), size):
            yield [(county, label, k, *f) for k, f in enumerate(fields[i : i + size], n + i + 1)]

    def _topups(self) -> tuple[list[tuple], list[tuple]]:
        """Guaranteed minimum: years closing in this period, and closed years touched by late receipts."""
        book, history, period = self.book, self.history, self.period
        candidates = set(self._late_years)
        months = list(period.months())
        first_closed = history.first_closed_start
        for agreement_id in self._minimum_ids:
            for m in months:
                if self._closing(agreement_id, m):
                    candidates.add((agreement_id, m.index))
            # an amendment recorded after a finalization may end the agreement in a closed month: the year it cut
            # short closed there unchecked, and is settled now (an adjustment) unless a statement checked it
            final = book.final_month(agreement_id)
            if (first_closed is not None and final is not None and first_closed <= final.start < period.start
                    and (c := self._closing(agreement_id, final)) and (agreement_id, c[1]) not in history.topups):
                candidates.add((agreement_id, final.index))
        topups, adjustments = [], []
        for agreement_id, last_idx in sorted(candidates):
            last = Period.month(last_idx // 12, last_idx % 12 + 1)
            closing = self._closing(agreement_id, last)
            if closing is None:
                continue
            v, year = closing
            first, _ = v.year_months(year)
            lo, hi = month_index(first.start), last_idx
            shares = {m.key: m.origin_share_fen for m in history.months_of(agreement_id)
                      if lo <= month_index(m.month.start) <= hi}
            for m in self._months_of.get(agreement_id, ()):
                if lo <= month_index(m.month.start) <= hi:
                    shares[m.key] = m.origin_share_fen
            due = max(0, v.guaranteed_minimum_fen - sum(shares.values()))
            closing_now = period.contains(last)
            payer, payee = v.topup_payer, v.origin
            self.settled_topups.append(SettledTopup(agreement_id, year, due, payer, payee))
            source = f"agreement:{v.ref}/year:{year}"
            digest = digest_hex(_id_hash(source))
            paid = history.topup(agreement_id, year)
            before = history.topup_parties(agreement_id, year)
            if paid and before is not None and before != (payer, payee):
                # settled before between other parties (an amendment since changed who tops the year up): what was
                # paid goes back the way it came, and the year's top-up is owed whole by the parties of now
                back = _fields(ADJUSTMENT, before[1], before[0], paid, (source,), 1, digest, agreement_id=agreement_id,
                               agreement_version=v.version, month=last.label, agreement_year=year, adjusts=TOPUP)
                if back is not None:
                    adjustments.append(back)
                paid = 0
            f = _fields(TOPUP if closing_now else ADJUSTMENT, payer, payee, due - paid, (source,), 1, digest,
                        agreement_id=agreement_id, agreement_version=v.version, month=last.label, agreement_year=year,
                        adjusts=None if closing_now else TOPUP)
            if f is not None:
                (topups if closing_now else adjustments).append(f)
        self.settled_topups.sort(key=lambda t: (t.agreement_id, t.agreement_year))
        return topups, adjustments

    def _proceeds_lines(self, alloc: QuotaAllocation, compensation: list[tuple], first_no: int,
                        shares: list[tuple]) -> None:
        """One allocation's lines, each kind sorted by payee: compensation records numbered from ``first_no`` and
        proceeds-share fields appended. A line's sources are the allocation and the lots behind that part (each lot
        is behind two lines)."""
        aid = alloc.allocation_id
        policy = self.policies.version_in_force(alloc.allocated_on)
        if policy is None:
            raise StatementError("policy_missing", f"allocation {aid} of {alloc.allocated_on}: no settlement policy was "
                                 f"in force then (the earliest version takes effect {self.policies.first_effective}: add a version "
                                 f"from that month or before)")
        enterprise_parts, share_parts = proceeds_parts(alloc, policy)
        payer = project_party(alloc.project_id)
        month = _month_label(alloc.allocated_on)
        county, label = self.county, self.period.label
        hashes = {aid: id_hash(aid)}
        no = first_no
        for who, amount, lots in enterprise_parts:
            if amount:
                sources, count, digest = _allocation_sources(aid, lots, hashes)
                compensation.append((county, label, no, COMPENSATION, payer, _ENTERPRISE + who, amount, None, None,
                                     None, month, None, None, None, aid, sources, count, digest))
                no += 1
        for who, amount, lots in share_parts:
            if amount:
                sources, count, digest = _allocation_sources(aid, lots, hashes)
                shares.append((PROCEEDS, payer, who, amount, None, None, None, month, None, None, None, aid, sources,
                               count, digest))


def _allocation_sources(aid: str, lots: tuple[str, ...], hashes: dict[str, int]) -> tuple[tuple[str, ...], int, str]:
    """(sorted ids, count, digest) of an allocation line's sources: the allocation and its lots (``sources_of``,
    with each id's hash computed once per allocation)."""
    if aid in lots:
        raise StatementError("duplicate_input", f"{aid} is given twice")
    digest = hashes[aid]
    for lot in lots:
        h = hashes.get(lot)
        if h is None:
            h = hashes[lot] = id_hash(lot)
        digest += h
    if len(lots) == 1:
        sources = (aid, lots[0]) if aid < lots[0] else (lots[0], aid)
    else:
        sources = tuple(sorted((aid, *lots)))
    return sources, len(sources), (digest % _MOD).to_bytes(32, "big").hex()

"""Rebuild settlement's read models from its own event store (the outbox) and compare them with the live tables.

Events folded (all written by ``statement_runs``): ``SettlementDrafted`` (replaces the period's draft),
``TransfersRequested`` (one transfer per money line of a finalized statement), ``AdjustmentRecorded`` (one per
adjustment line) and ``SettlementFinalized`` (freezes the period and, like ``StatementsRepository.drop_drafts``, removes
every draft of the county drafted before it). Read models, key -> row, money in integer fen, times ISO UTC:

- ``statements`` (county, period) -> status, content_hash, line_count, money_total_fen, as_of, finalized_at,
  policy_id, policy_version, unmatched_receipts — table ``statements`` (not computed_at/computed_by, not in events;
  period_kind/start/end follow from the label);
- ``party_totals`` (county, period, party) -> receivable, payable, net — ``statement_totals``; for finalized
  statements from their transfers, for drafts from ``SettlementDrafted.party_totals``;
- ``statistics_totals`` (county, period, party, measure) -> gained, ceded — ``statement_statistics``;
- ``party_positions`` (county, party) -> receivable, payable, net, periods over the finalized statements (the
  finalized figures of GET .../parties/{party}/position);
- ``money_lines`` (county, period, line_no) -> kind, payer, payee, amount, month, allocation_id — the money lines
  of finalized statements in ``statement_lines``;
- ``finalized_compensation`` (credit code, county, period) -> compensation, buy-back, line count (what GET
  /enterprises/{code}/compensation sums as finalized);
- ``adjustments`` (county, period, line_no) -> payer, payee, amount, agreement_id, tax_kind, month, adjusts,
  sources — the adjustment lines of finalized statements;
- ``ledger_postings`` transfer_id -> county, period, line_no, debit, credit, amount (not ``status``/``reason``:
  those are the ledger's answers, consumed through the inbox, not this service's events).

Not derivable from the events, so not covered: draft lines (a draft announces its hash, summary and totals,
never its lines); of finalized lines, agreement_version, agreement_year, sources, source_count, sources_digest
(adjustment lines have their sources), and statistics lines (their totals are covered); ``settled_months``,
``settled_topups`` and ``settled_statistics`` (history the next statement reads, never announced); the inputs — agreements, policies, tax
receipts, statistics reports, quota allocations, lots, buy-backs, the enterprise register — which other services
and departments sent and the inbox recorded, not events this service emits. Totals of a draft with more than
``TOTALS_IN_EVENT_MAX`` rows are not in its event (message size): such a statement's live totals are left out of
the comparison, as are columns an event written before the field existed does not carry.

Repair: refused (the default of ``Projection.repair``). A finalized statement is immutable — its hash, lines and
totals were announced and posted to the ledger — and the events do not hold all of its columns, so rewriting it
from a projection would hide the fault rather than fix it; a draft is repaired by running the draft again.
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timezone
from typing import Callable, Hashable

from sqlalchemy import text
from sqlalchemy.orm import Session

from services.settlement.domain.periods import Period
from shared.amounts import parse_amount
from shared.contracts.ledger import TransfersRequested
from shared.contracts.settlement import AdjustmentRecorded, SettlementDrafted, SettlementFinalized
from shared.db import Database
from shared.replay import Projection, ReadModels, ReplayReport, replay

DRAFT, FINALIZED = "draft", "finalized"
POSTING_PREFIX = "settlement:"
ACCOUNT_SUFFIX = "/CNY"
ENTERPRISE = "enterprise:"
COMPENSATION, BUYBACK, ADJUSTMENT = "compensation", "buyback", "adjustment"
_ENTERPRISE_KINDS = frozenset((COMPENSATION, BUYBACK))  # what an enterprise is paid (finalized_compensation)
UTC = timezone.utc

STATEMENTS, PARTY_TOTALS, STATISTICS = "statements", "party_totals", "statistics_totals"
POSITIONS, LINES, COMPENSATIONS = "party_positions", "money_lines", "finalized_compensation"
ADJUSTMENTS, POSTINGS = "adjustments", "ledger_postings"
MODELS = (STATEMENTS, PARTY_TOTALS, STATISTICS, POSITIONS, LINES, COMPENSATIONS, ADJUSTMENTS, POSTINGS)
# header columns an old SettlementDrafted/Finalized (before as_of and the policy fields) does not carry
_HEADER_OPTIONAL = (4, 6, 7, 8)
_LINE_OPTIONAL = (4, 5)  # month, allocation_id of a transfer written before they were in its metadata


def fen(s: str) -> int:
    """'-123.45' -> -12345. The events hold ``format_amount(fen, 2)`` strings: cut out the point; anything else
    goes through the exact parser."""
    if len(s) > 3 and s[-3] == "." and s[-2:].isdigit():
        return int(s[:-3] + s[-2:])
    return parse_amount(s, 2, allow_zero=True, allow_negative=True)


def iso(d: datetime | str | None) -> str | None:
    if d is None:
        return None
    if isinstance(d, str):  # an event's text, or a SQLite timestamp read by the raw SQL of ``live`` (no offset)
        d = datetime.fromisoformat(d)
    # naive (SQLite keeps UTC without an offset, storage.rows.to_db) is UTC: astimezone() would take it for the
    # host's local time, and on a host set to China time every statement differed by 8 hours
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.astimezone(UTC).isoformat()


_ENDS: dict[str, tuple[date, date]] = {}


def _span(label: str) -> tuple[date, date]:
    span = _ENDS.get(label)
    if span is None:
        p = Period.parse(label)
        span = _ENDS[label] = (p.start, p.end)
    return span


class SettlementProjection(Projection):
    """The fold keeps events' values as they come (decimal strings, ISO times) wherever a later event may replace
    them — most drafts are re-run or finalized — and converts what is left in ``rebuilt``."""

    name = "settlement read models"

    def __init__(self) -> None:
        self.headers: dict[tuple, tuple] = {}  # (county, period) -> header row, money and times still as text
        # (county, period) -> a draft event's party_totals list, or (receivable, payable) dicts of a finalization
        self.totals: dict[tuple, list | tuple[dict, dict]] = {}
        self.stats: dict[tuple, list] = {}  # the events' statistics_totals
        self.drafts: dict[str, set[str]] = {}  # county -> periods with a draft
        self.pending: dict[tuple, tuple[dict, dict]] = {}  # a finalization's totals, until its SettlementFinalized
        self.lines: dict[tuple, tuple] = {}
        self.compensation: dict[tuple, list[int]] = {}
        self.adjustments: dict[tuple, tuple] = {}
        self.postings: dict[str, tuple] = {}
        # facts the events do not carry: statements whose rows of a model are unknown, and unknown columns per row
        self.unknown: dict[str, set[tuple]] = {PARTY_TOTALS: set(), STATISTICS: set(), ADJUSTMENTS: set()}
        self.masks: dict[str, dict[Hashable, tuple[int, ...]]] = {STATEMENTS: {}, LINES: {}}

    def handlers(self) -> dict[str, Callable[[dict, dict], None]]:
        # the contracts imported here are registered, so replay finds their outbox rows by type
        return {SettlementDrafted.name: self._drafted, TransfersRequested.name: self._transfers,
                AdjustmentRecorded.name: self._adjustment, SettlementFinalized.name: self._finalized}

    # -- the fold -------------------------------------------------------------------------------------------
    def _statement(self, key: tuple, status: str, d: dict, as_of: str | None, finalized_at: str | None,
                   party_totals: list | tuple | None) -> None:
        self.headers[key] = (status, d["content_hash"], d["line_count"], d["total"], as_of, finalized_at,
                             d.get("policy_id"), d.get("policy_version"), d.get("unmatched_receipts"))
        if d.get("policy_id") is None:
            self.masks[STATEMENTS][key] = _HEADER_OPTIONAL
        else:
            self.masks[STATEMENTS].pop(key, None)
        for model, store, rows in ((PARTY_TOTALS, self.totals, party_totals),
                                   (STATISTICS, self.stats, d.get("statistics_totals"))):
            if rows is None:
                self.unknown[model].add(key)
                store[key] = []
            else:
                self.unknown[model].discard(key)
                store[key] = rows

    def _drafted(self, d: dict, env: dict) -> None:
        county, period = d["county_code"], d["period"]
        self._statement((county, period), DRAFT, d, d.get("as_of"), None, d.get("party_totals"))
        self.drafts.setdefault(county, set()).add(period)

    def _transfers(self, d: dict, env: dict) -> None:
        lines, postings, pending, comp = self.lines, self.postings, self.pending, self.compensation
        prefix, cut, kinds = POSTING_PREFIX, -len(ACCOUNT_SUFFIX), _ENTERPRISE_KINDS
        last_county = last_period = rec = pay = None
        for t in d["transfers"]:
            tid = t["transfer_id"]
            if not tid.startswith(prefix):
                continue
            md = t["metadata"]
            county, period, kind, no = md["county"], md["period"], md["kind"], int(md["line_no"])
            debit, credit = t["debit_account"], t["credit_account"]
            payer, payee = debit[:cut], credit[:cut]
            a = t["amount"]
            amount = int(a.replace(".", "")) if a[-3:-2] == "." else fen(a)  # fen(), inlined: once per money line
            month = md.get("month")
            lines[(county, period, no)] = (kind, payer, payee, amount, month, md.get("allocation_id"))
            postings[tid] = (county, period, no, debit, credit, amount)
            if month is None:
                self.masks[LINES][(county, period, no)] = _LINE_OPTIONAL
            if period != last_period or county != last_county:  # a command is one statement's: look up once
                last_county, last_period = county, period
                rec, pay = pending.get((county, period)) or pending.setdefault(
                    (county, period), (defaultdict(int), defaultdict(int)))
            rec[payee] += amount
            pay[payer] += amount
            if kind in kinds and payee.startswith(ENTERPRISE):
                c = comp.get(ck := (payee[len(ENTERPRISE):], county, period))
                if c is None:
                    c = comp[ck] = [0, 0, 0]
                c[kind == BUYBACK] += amount
                c[2] += 1

    def _adjustment(self, d: dict, env: dict) -> None:
        county, period, no = d["county_code"], d["period"], d.get("line_no")
        if no is None:  # written before AdjustmentRecorded named its line: cannot be matched to one
            self.unknown[ADJUSTMENTS].add((county, period))
            return
        self.adjustments[(county, period, no)] = (
            d.get("payer"), d.get("payee"), d["amount"], d.get("agreement_id"), d.get("tax_kind"),
            d["adjusts_period"], d.get("adjusts"), tuple(d["sources"]))

    def _finalized(self, d: dict, env: dict) -> None:
        county, period = d["county_code"], d["period"]
        key = (county, period)
        at = d["finalized_at"]
        self._drop_drafts(county)
        self._statement(key, FINALIZED, d, at, at, self.pending.pop(key, None) or ({}, {}))

    def _drop_drafts(self, county: str) -> None:
        """A finalization removes every draft of the county drafted before it (``StatementsRepository.drop_drafts``):
        the events come in the order the county's lock let them happen."""
        drafts = self.drafts.get(county)
        if not drafts:
            return
        for period in list(drafts):
            drafts.discard(period)
            key = (county, period)
            for m in (self.headers, self.totals, self.stats, self.masks[STATEMENTS]):
                m.pop(key, None)
            for s in self.unknown.values():
                s.discard(key)

    # -- read models ------------------------------------------------------------------------------------------
    def rebuilt(self) -> ReadModels:
        models = _empty()
        rows = models[STATEMENTS]
        for k, (st, h, n, total, as_of, fin, pid, pv, um) in self.headers.items():
            as_of = iso(as_of)  # a finalized statement's as_of is its finalized_at (see _finalized): converted once
            rows[k] = (st, h, n, fen(total), as_of, None if fin is None else as_of, pid, pv, um)
        tot, stats, pos = models[PARTY_TOTALS], models[STATISTICS], models[POSITIONS]
        for (county, period), parties in self.totals.items():
            if isinstance(parties, list):  # a draft's event rows
                for r in parties:
                    rec, pay = fen(r["receivable"]), fen(r["payable"])
                    tot[(county, period, r["party"])] = (rec, pay, rec - pay)
                continue
            receivable, payable = parties  # a finalized statement: its parties' positions move
            for party, rec, pay in _both(receivable, payable):
                tot[(county, period, party)] = (rec, pay, rec - pay)
                p = pos.get((county, party))
                if p is None:
                    pos[(county, party)] = [rec, pay, 1]
                else:
                    p[0] += rec
                    p[1] += pay
                    p[2] += 1
        for k, (rec, pay, n) in pos.items():
            pos[k] = (rec, pay, rec - pay, n)
        for (county, period), rows in self.stats.items():
            for r in rows:
                stats[(county, period, r["party"], r["measure"])] = (fen(r["gained"]), fen(r["ceded"]))
        models[LINES] = self.lines
        models[COMPENSATIONS] = {k: tuple(v) for k, v in self.compensation.items()}
        models[ADJUSTMENTS] = {k: (r[:2] + (fen(r[2]),) + r[3:]) for k, r in self.adjustments.items()}
        models[POSTINGS] = self.postings
        _apply_masks(models, self.masks)
        return models

    def live(self, session: Session) -> ReadModels:
        def q(sql: str):
            return session.execute(text(sql))

        models = _empty()
        models[STATEMENTS] = {(c, p): (st, h, n, total, iso(as_of), iso(fin), pid, pv, um)
                              for c, p, st, h, n, total, as_of, fin, pid, pv, um in q(_SQL_STATEMENTS)}
        models[PARTY_TOTALS] = {(c, p, party): (r, pay, r - pay) for c, p, party, r, pay in q(
            "SELECT county_code, period, party, receivable_fen, payable_fen FROM statement_totals")}
        models[STATISTICS] = {(c, p, party, m): (g, ce) for c, p, party, m, g, ce in q(
            "SELECT county_code, period, party, measure, gained, ceded FROM statement_statistics")}
        models[POSITIONS] = {(c, party): (int(r), int(pay), int(r) - int(pay), n)
                             for c, party, r, pay, n in q(_SQL_POSITIONS)}
        models[LINES] = {(c, p, no): (k, payer, payee, amt, m, a)
                         for c, p, no, k, payer, payee, amt, m, a in q(_SQL_LINES)}
        models[COMPENSATIONS] = {(payee[len(ENTERPRISE):], c, p): (int(cf), int(bf), n)
                                 for payee, c, p, cf, bf, n in q(_SQL_COMPENSATION)}
        models[ADJUSTMENTS] = {(c, p, no): (payer, payee, amt, a, tk, m or "", adj, tuple(json.loads(src)))
                               for c, p, no, payer, payee, amt, a, tk, m, adj, src in q(_SQL_ADJUSTMENTS)}
        models[POSTINGS] = {tid: (c, p, no, dr, cr, amt) for tid, c, p, no, dr, cr, amt in q(
            "SELECT transfer_id, county_code, period, line_no, debit_account, credit_account, amount_fen "
            "FROM ledger_postings")}
        for model, statements in self.unknown.items():  # rows the events cannot tell: left out of the comparison
            if statements:
                rows = models[model]
                for k in [k for k in rows if k[:2] in statements]:
                    del rows[k]
        _apply_masks(models, self.masks)
        return models


_SQL_STATEMENTS = ("SELECT county_code, period, status, content_hash, line_count, money_total_fen, as_of, "
                   "finalized_at, policy_id, policy_version, unmatched_receipts FROM statements")
_SQL_POSITIONS = (
    "SELECT t.county_code, t.party, sum(t.receivable_fen), sum(t.payable_fen), count(*) FROM statement_totals t "
    "JOIN statements s ON s.county_code = t.county_code AND s.period = t.period "
    f"WHERE s.status = '{FINALIZED}' GROUP BY t.county_code, t.party")
_FINALIZED_LINES = ("FROM statement_lines l JOIN statements s ON s.county_code = l.county_code "
                    f"AND s.period = l.period WHERE s.status = '{FINALIZED}' ")
_SQL_LINES = ("SELECT l.county_code, l.period, l.line_no, l.kind, l.payer, l.payee, l.amount_fen, l.month, "
              f"l.allocation_id {_FINALIZED_LINES} AND l.kind <> 'statistics_share'")
_SQL_COMPENSATION = (
    f"SELECT l.payee, l.county_code, l.period, sum(CASE WHEN l.kind = '{COMPENSATION}' THEN l.amount_fen ELSE 0 END), "
    f"sum(CASE WHEN l.kind = '{BUYBACK}' THEN l.amount_fen ELSE 0 END), count(*) {_FINALIZED_LINES} "
    f"AND l.kind IN ('{COMPENSATION}', '{BUYBACK}') AND l.payee LIKE '{ENTERPRISE}%' "
    "GROUP BY l.payee, l.county_code, l.period")
_SQL_ADJUSTMENTS = ("SELECT l.county_code, l.period, l.line_no, l.payer, l.payee, l.amount_fen, l.agreement_id, "
                    f"l.tax_kind, l.month, l.adjusts, l.sources {_FINALIZED_LINES} AND l.kind = '{ADJUSTMENT}'")


def _both(receivable: dict, payable: dict):
    """(party, receivable, payable) of every party in either."""
    for party, rec in receivable.items():
        yield party, rec, payable.get(party, 0)
    for party, pay in payable.items():
        if party not in receivable:
            yield party, 0, pay


def _empty() -> ReadModels:
    return {m: {} for m in MODELS}


def _apply_masks(models: ReadModels, masks: dict[str, dict[Hashable, tuple[int, ...]]]) -> None:
    """Columns an event does not carry become None on both sides (events written before the field existed)."""
    for model, keys in masks.items():
        rows = models[model]
        for key, cols in keys.items():
            row = rows.get(key)
            if row is not None:
                rows[key] = tuple(None if i in cols else v for i, v in enumerate(row))


def rebuild(db: Database, *, repair: bool = False, progress: Callable[[int], None] | None = None,
            total: Callable[[int], None] | None = None) -> ReplayReport:
    """Fold the outbox into the read models above and compare them with the live tables (``repair``: refused
    when rows differ, see the module docstring)."""
    return replay(db, SettlementProjection(), repair=repair, progress=progress, total=total)

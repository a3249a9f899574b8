"""Month totals summed by the database: what ``StatementBuilder.add_tax`` / ``add_statistics`` take.

A statement needs, per enterprise, tax kind (or measure) and month, the sum of what its receipts change and the
ids behind it (``domain.aggregates``). The database sums them, so Python sees one row per line instead of one per
receipt, whatever the number of instalments and corrections. The ids come along — every line cites the events it
came from: all of a month's ids when there are at most ``cap`` of them (sorted and digested here), otherwise the
month is read again afterwards, its ids streamed in order through a ``SourceSet`` that keeps ``cap`` of them, so
memory stays bounded however many receipts a month has.

Which facts: those of the period's months and earlier months' facts received after the last cut-off — all of them
while no period is closed (``inputs.in_scope``, the statement's placement); never facts received after ``as_of``.
"""
from __future__ import annotations

from hashlib import sha256
import json
from datetime import datetime
from typing import Iterator

from sqlalchemy import BigInteger, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session

from services.settlement.domain import StatementError
from services.settlement.domain.aggregates import MonthTotal
from services.settlement.domain.lines import SourceSet, digest_hex, digest_of
from services.settlement.domain.periods import Period
from services.settlement.storage import tables as t
from services.settlement.storage.inputs import in_scope
from services.settlement.storage.rows import fetch_rows, period


_new = tuple.__new__


def _flag(condition):
    return func.max(case((condition, 1), else_=0))


class MonthSums:
    def __init__(self, session: Session, county: str, p: Period, cutoff: datetime | None, as_of: datetime,
                 cap: int | None):
        self.s, self.county, self.p, self.cutoff, self.as_of, self.cap = session, county, p, cutoff, as_of, cap
        self.pg = session.get_bind().dialect.name == "postgresql"

    def _county_enterprises(self):
        av = t.agreement_versions
        return select(av.c.enterprise).where(av.c.county_code == self.county).distinct()

    def _ids(self, id_col, n):
        """The id of a one-fact month (most of them: plain text is cheaper to read than an array), and the ids of a
        month of several facts up to the cap."""
        ids = func.array_agg(id_col) if self.pg else func.json_group_array(id_col)
        several = n > 1 if self.cap is None else and_(n > 1, n <= self.cap)
        return case((n == 1, func.min(id_col)), else_=None), case((several, ids), else_=None)

    def tax(self) -> Iterator[MonthTotal]:
        tr = t.tax_receipts
        n = func.count()
        q = (select(tr.c.enterprise, tr.c.tax_kind, tr.c.month,
                    cast(func.sum(tr.c.amount_fen - func.coalesce(tr.c.replaced_amount_fen, 0)), BigInteger), n,
                    *self._ids(tr.c.receipt_id, n),
                    _flag(tr.c.amount_fen < 0),
                    _flag(and_(tr.c.corrects.is_not(None), tr.c.replaced_amount_fen.is_(None))))
             .where(tr.c.enterprise.in_(self._county_enterprises()), self._scope(tr))
             .group_by(tr.c.enterprise, tr.c.tax_kind, tr.c.month))
        return self._totals(q, tr, tr.c.receipt_id, tr.c.tax_kind)

    def statistics(self) -> Iterator[MonthTotal]:
        sr = t.statistics_reports
        n = func.count()
        q = (select(sr.c.enterprise, sr.c.measure, sr.c.month, cast(func.sum(sr.c.amount_fen), BigInteger), n,
                    *self._ids(sr.c.report_id, n), _flag(sr.c.amount_fen < 0), literal(0))
             .where(sr.c.enterprise.in_(self._county_enterprises()), self._scope(sr))
             .group_by(sr.c.enterprise, sr.c.measure, sr.c.month))
        return self._totals(q, sr, sr.c.report_id, sr.c.measure)

    def _scope(self, table):
        return in_scope(table.c.month_start, table.c.received_at, self.p, self.cutoff, self.as_of)

    def _totals(self, q, table, id_col, kind_col) -> Iterator[MonthTotal]:
        overflow, bad = [], None
        cap, pg = self.cap, self.pg
        for enterprise, kind, label, amount, n, single, ids, negative, unresolved in fetch_rows(self.s, q):
            if negative or unresolved:  # refused after the stream is read: the connection is free to say which
                bad = bad or (enterprise, kind, label)
            elif cap is not None and n > cap:  # more ids than the cap: read again below
                overflow.append((enterprise, kind, label, amount))
            elif n == 1:  # the digest of one id is its sha256 (a tuple built as such: most months are these)
                yield _new(MonthTotal, (enterprise, kind, period(label), amount, (single,), 1,
                                        sha256(single.encode()).hexdigest()))
            else:
                ids = sorted(ids if pg else json.loads(ids))
                yield MonthTotal(enterprise, kind, period(label), amount, tuple(ids), n, digest_hex(digest_of(ids)))
        if bad is not None:
            self._refuse(table, id_col, kind_col, *bad)
        for enterprise, kind, label, amount in overflow:
            sources = SourceSet(cap)
            q = (select(id_col).where(table.c.enterprise == enterprise, kind_col == kind, table.c.month == label,
                                      self._scope(table)).order_by(id_col))
            for (source_id,) in fetch_rows(self.s, q):
                sources.add(source_id)
            yield MonthTotal(enterprise, kind, period(label), amount, tuple(sources.ids), sources.count,
                             sources.digest())

    def _refuse(self, table, id_col, kind_col, enterprise: str, kind: str, label: str) -> None:
        """The refusal ``compute_statement`` gives for the first wrong fact of that month."""
        rows = self.s.execute(select(table).where(table.c.enterprise == enterprise, kind_col == kind,
                                                  table.c.month == label, self._scope(table)).order_by(id_col)).all()
        for r in rows:
            if table is t.statistics_reports:
                if r.amount_fen < 0:
                    raise StatementError("negative_statistic", f"statistics report {r.report_id}: amount must be integer >= 0")
            elif r.amount_fen < 0:
                raise StatementError("negative_tax", f"receipt {r.receipt_id}: tax amount must be integer fen >= 0")
            elif r.corrects is not None and r.replaced_amount_fen is None:
                raise StatementError("correction_not_resolved", f"receipt {r.receipt_id}: the replaced amount is missing")
        raise AssertionError("a flagged month without a wrong fact")

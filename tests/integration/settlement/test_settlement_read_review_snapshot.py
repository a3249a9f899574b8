"""A read of a draft statement sees one moment, however a re-draft commits meanwhile.

Finance systems reconcile a statement's lines against its header (content hash, line count, money total) and its
party totals. A draft is re-run at any time; a read that took the header in one read-committed statement and the
lines in another (or, for an export, in another session opened once the response had started) could pair the header
of one draft with the lines of the next. Here the re-draft is committed deterministically between the two: a
repository read of the lines is patched to run it first. Every answer must then be one draft throughout — the header,
totals and lines of the draft whose content hash it names (``Database.read_snapshot``: REPEATABLE READ). PostgreSQL.
"""
from __future__ import annotations

import csv
import gc
import io
import json
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import select

from services.settlement.api.routes_statements import _in_snapshot, line_out
from services.settlement.domain import VAT, RevenueSharingAgreement, ScheduleStep, SettlementPolicy, TaxReceipt
from services.settlement.domain.periods import Period
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import FINANCE, credit_code, new_county
from tests.support.services import running_service

PERIOD = "2025-01"


def _receipt(runtime, enterprise: str, rid: str, fen: int) -> None:
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_receipt(TaxReceipt(receipt_id=rid, enterprise=enterprise, month=Period.parse(PERIOD),
                                                   tax_kind=VAT, amount_fen=fen,
                                                   received_at=datetime.now(timezone.utc)), "http", None)


def _county(runtime) -> tuple[str, str]:
    C = new_county()
    E = credit_code(C, 1)
    before = datetime.now(timezone.utc) - timedelta(days=1)
    with runtime.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000, township_weight=4,
                                         park_weight=3, fund_weight=3), "test", before)
        repo.add_agreement(RevenueSharingAgreement(
            agreement_id=f"AG{C}", version=1, effective_from=date(2024, 1, 1), enterprise=E, origin=f"township:{C}101",
            destination=f"park:P{C}", local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),),
            start=date(2024, 1, 1), end=date(2027, 12, 31), remainder_to=f"park:P{C}"), C, "test", before)
    _receipt(runtime, E, f"r1-{C}", 100_000_000)
    return C, E


@pytest.fixture
def service(pg_url, kafka_bootstrap):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (runtime, api):
        yield runtime, api


def _redraft_before(monkeypatch, runtime, method: str, C: str, E: str, receipt: str = "r2") -> dict:
    """Patch ``StatementsRepository.<method>`` so that its first call commits a re-draft (a new receipt makes it a
    different statement) before reading: what a concurrent POST .../draft does between two reads."""
    original = getattr(StatementsRepository, method)
    redrafted: dict = {}

    def patched(self, *args, **kwargs):
        if not redrafted:
            _receipt(runtime, E, f"{receipt}-{C}", 50_000_000)
            redrafted["st"] = StatementRuns(runtime).draft(C, PERIOD, "test").statement
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StatementsRepository, method, patched)
    return redrafted


def _draft(runtime, C: str) -> dict:
    st = StatementRuns(runtime).draft(C, PERIOD, "test").statement
    return {"content_hash": st.content_hash, "lines": [line_out(ln).model_dump(mode="json") for ln in st.lines]}


def _reconciles(summary: dict, totals: list[dict], lines: list[dict], drafts: list[dict]) -> None:
    """What a finance system checks: the lines are those the content hash names, as many as the header says, and
    the money lines add up to the money total and to each party's receivable."""
    (named,) = [d for d in drafts if d["content_hash"] == summary["content_hash"]]
    assert lines == named["lines"], "the lines of another draft than the header's content hash"
    assert summary["line_count"] == len(lines)
    money = [ln for ln in lines if ln["kind"] != "statistics_share"]
    assert sum(Decimal(ln["amount"]) for ln in money) == Decimal(summary["money_total"])
    for t in totals:
        assert sum(Decimal(ln["amount"]) for ln in money if ln["payee"] == t["party"]) == Decimal(t["receivable"])


def test_a_statement_page_is_one_draft_while_a_redraft_commits(service, monkeypatch):
    runtime, api = service
    C, E = _county(runtime)
    first = _draft(runtime, C)
    redrafted = _redraft_before(monkeypatch, runtime, "lines_page", C, E)

    r = api.get(f"/v1/counties/{C}/periods/{PERIOD}/statement?limit=1000", headers=FINANCE)
    assert r.status_code == 200, r.text
    page = r.json()
    second = {"content_hash": redrafted["st"].content_hash,
              "lines": [line_out(ln).model_dump(mode="json") for ln in redrafted["st"].lines]}
    assert second["content_hash"] != first["content_hash"]  # the re-draft did commit in between
    assert r.headers["X-Content-Hash"] == page["content_hash"]
    _reconciles(page, page["totals"], page["lines"], [first, second])
    assert page["matching_lines"] == len(page["lines"])

    # the next read sees the new draft, whole
    page = api.get(f"/v1/counties/{C}/periods/{PERIOD}/statement?limit=1000", headers=FINANCE).json()
    assert page["content_hash"] == second["content_hash"]
    _reconciles(page, page["totals"], page["lines"], [second])


def test_an_export_streams_the_lines_of_the_draft_its_header_names(service, monkeypatch):
    runtime, api = service
    C, E = _county(runtime)
    drafts = [_draft(runtime, C)]
    url = f"/v1/counties/{C}/periods/{PERIOD}/statement/export"

    # JSON: summary, totals and lines in one document; the lines are read while the body streams
    redrafted = _redraft_before(monkeypatch, runtime, "stream_lines", C, E)
    r = api.get(f"{url}?format=json", headers=FINANCE)
    assert r.status_code == 200, r.text
    drafts.append({"content_hash": redrafted["st"].content_hash,
                   "lines": [line_out(ln).model_dump(mode="json") for ln in redrafted["st"].lines]})
    assert drafts[1]["content_hash"] != drafts[0]["content_hash"]
    doc = r.json()
    assert r.headers["X-Content-Hash"] == doc["content_hash"]
    _reconciles(doc, doc["totals"], doc["lines"], drafts)

    # CSV of the lines: the X-Content-Hash header names the draft whose lines follow
    monkeypatch.undo()
    redrafted = _redraft_before(monkeypatch, runtime, "stream_lines", C, E, receipt="r3")
    r = api.get(f"{url}?format=csv&headers=key", headers=FINANCE)
    assert r.status_code == 200, r.text
    assert redrafted["st"].content_hash not in {d["content_hash"] for d in drafts}
    (named,) = [d for d in drafts if d["content_hash"] == r.headers["X-Content-Hash"]]
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(int(row["line_no"]), row["amount"]) for row in rows] == \
        [(ln["line_no"], ln["amount"]) for ln in named["lines"]]
    drafts.append({"content_hash": redrafted["st"].content_hash,
                   "lines": [line_out(ln).model_dump(mode="json") for ln in redrafted["st"].lines]})

    # XLSX: the summary sheet's hash and line count, and the lines sheet, of one draft
    monkeypatch.undo()
    redrafted = _redraft_before(monkeypatch, runtime, "stream_lines", C, E, receipt="r4")
    r = api.get(f"{url}?format=xlsx&headers=key", headers=FINANCE)
    assert r.status_code == 200, r.text
    assert redrafted["st"].content_hash not in {d["content_hash"] for d in drafts}
    book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    summary = {k: v for k, v in book["Summary"].iter_rows(values_only=True)}
    (named,) = [d for d in drafts if d["content_hash"] == summary["Content hash"] == r.headers["X-Content-Hash"]]
    rows = list(book["Lines"].iter_rows(values_only=True))[1:]
    assert int(summary["Lines"]) == len(rows) == len(named["lines"])
    assert [(int(row[0]), row[4]) for row in rows] == [(ln["line_no"], ln["amount"]) for ln in named["lines"]]

    # each snapshot was closed with its response: its connection is back in the pool
    assert runtime.db.engine.pool.checkedout() == 0


def test_an_export_abandoned_by_its_client_gives_its_snapshot_back(service):
    """The body holds the snapshot; a client gone before the first chunk, or half way, must not keep it open (the
    server drops the body unfinished: a started generator is closed then, an unstarted one would not be)."""
    runtime, _ = service
    pool = runtime.db.engine.pool
    for sent in (0, 1, 2):
        snapshot = ExitStack()
        snapshot.enter_context(runtime.db.read_snapshot()).execute(select(1))
        assert pool.checkedout() == 1
        body = _in_snapshot(snapshot, iter([b"a", b"b"]))
        assert [next(body) for _ in range(sent)] == [b"a", b"b"][:sent]
        del body
        gc.collect()
        assert pool.checkedout() == 0, f"snapshot left open after {sent} chunk(s)"


def test_the_periods_list_and_the_stored_statement_agree(service):
    """Unpatched: the list, the page and the export of one unchanged draft give the same header."""
    runtime, api = service
    C, _ = _county(runtime)
    first = _draft(runtime, C)
    listed = api.get(f"/v1/counties/{C}/periods", headers=FINANCE).json()["statements"]
    page = api.get(f"/v1/counties/{C}/periods/{PERIOD}/statement", headers=FINANCE).json()
    doc = json.loads(api.get(f"/v1/counties/{C}/periods/{PERIOD}/statement/export?format=json", headers=FINANCE).content)
    assert [s["content_hash"] for s in listed] == [page["content_hash"]] == [doc["content_hash"]] == \
        [first["content_hash"]]
    _reconciles(doc, doc["totals"], doc["lines"], [first])

"""Review: read-modify-write races of the settlement service on PostgreSQL, over HTTP, between two replicas.

Production runs two settlement processes on one database (deploy/k8s), so two requests about the same county,
receipt or report can run at once in two processes. Every race here is sent to two services built on one
database (``replicas``), released at one moment (``together``) and repeated for several rounds (a fresh county
each). After each round the statements involved are checked: their stored lines and totals reproduce the stored
content hash, party nets sum to zero, a finalized statement asked the ledger for each money line once, and every
receipt is settled exactly once (in the finalized month, or as an adjustment of the next).

Figures: one agreement per county, VAT local share 50 %, origin:destination 6:4, so every 100.00 of January VAT
gives the origin township exactly 30.00 — a receipt lost or counted twice shows in its receivable.

Guards (passing when this review ran; each names what it guards) and the two findings of the review (marked
FINDING, fixed since; each failed before its fix) are in this order: finalizations, intake during a finalization,
corrections, policy, import, statistics."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import func, select

from services.settlement import intake
from services.settlement.domain import LineKind, PartyTotal, Period
from services.settlement.domain.statement import FINALIZED, content_hash
from services.settlement.storage import tables as t
from services.settlement.storage.rows import from_db
from services.settlement.storage.statements import StatementsRepository
from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
from shared.contracts.settlement import TaxReceiptReported
from shared.metrics import DB_RETRIES
from tests.integration.settlement.support import FINANCE, OFFICE, TAX, credit_code, new_county
from tests.support.concurrency import together
from tests.support.pg import fresh_database
from tests.support.services import auth, replicas_of

ROUNDS = 6
SHARE = 3000  # fen the origin gets of each 100.00 of VAT (50 % local, 6 of 10)
IMPORT_ROWS = 24
SPREAD = 0.001  # seconds between the single receipts' starts: they keep arriving while the import runs
STATISTICS = auth("dev-statistics-token")
USED: set[str] = set()  # counties drawn in this module


@pytest.fixture(scope="module")
def replicas(pg_server_url, kafka_bootstrap):
    """Two settlement services (runtime, client) on one fresh database; relay and consumer stopped (HTTP only)."""
    with fresh_database(pg_server_url) as url, replicas_of("settlement", url, kafka_bootstrap) as (a, b):
        yield a, b


@dataclass
class World:
    C: str
    E: str
    T1: str
    P: str


def new_world(api, *, statistics: bool = False, compensation_bp: int = 0) -> World:
    """A county with its first policy (from the beginning) and one agreement of one enterprise."""
    C = new_county()
    while C in USED:  # one database for the whole module: a county drawn twice would clash with itself
        C = new_county()
    USED.add(C)
    w = World(C, credit_code(C, 1), f"township:{C}101", f"park:P{C}")
    r = api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
        "compensation_bp": compensation_bp, "township_weight": 1, "park_weight": 1, "fund_weight": 1})
    assert r.status_code == 200, r.text
    agreement = {"agreement_id": f"FD-{C}", "county_code": C, "enterprise_credit_code": w.E, "origin": w.T1,
                 "destination": w.P, "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
                 "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
                 "start": "2024-01-01", "end": "2027-12-31"}
    if statistics:
        agreement["statistics_split"] = {"origin_weight": 6, "destination_weight": 4}
    r = api.post("/v1/agreements", headers=OFFICE, json=agreement)  # also makes the enterprise known
    assert r.status_code == 201, r.text
    return w


def receipt(api, w: World, rid: str, hundreds: int, *, month: str = "2025-01", corrects: str | None = None):
    body = {"receipt_id": rid, "enterprise_credit_code": w.E, "month": month, "tax_kind": "VAT",
            "amount": f"{hundreds * 100}.00"}
    if corrects:
        body["corrects"] = corrects
    return api.post("/v1/tax-receipts", headers=TAX, json=body)


def finalize(api, w: World, label: str):
    return api.post(f"/v1/counties/{w.C}/periods/{label}/finalize", headers=OFFICE)


def statement_holds(rt, api, C: str, label: str):
    """The stored statement is consistent: lines and totals reproduce its content hash, totals are its lines',
    nets sum to zero, the API answers that hash; a finalized one asked the ledger for each money line once.
    Returns (header, lines)."""
    with rt.db.sessions() as s:
        repo = StatementsRepository(s)
        h = repo.header(C, label)
        assert h is not None, f"no statement {C}/{label}"
        lines = list(repo.stream_lines(C, label))
        totals = [PartyTotal(x.party, x.receivable_fen, x.payable_fen) for x in repo.totals(C, label)]
        lp = t.ledger_postings
        postings = sorted(s.execute(select(lp.c.line_no, lp.c.amount_fen).where(
            lp.c.county_code == C, lp.c.period == label)).all())
        ob = t.metadata.tables["outbox"]
        finalized_events = s.execute(select(func.count()).select_from(ob).where(
            ob.c.event_type.like("%.SettlementFinalized.v%"), ob.c.key == f"{C}/{label}")).scalar_one()
    assert content_hash(C, Period.parse(label), lines, totals) == h.content_hash, f"{C}/{label}: hash does not reproduce"
    receivable: dict[str, int] = {}
    payable: dict[str, int] = {}
    for ln in lines:
        if ln.kind.is_money:
            receivable[ln.payee] = receivable.get(ln.payee, 0) + ln.amount_fen
            payable[ln.payer] = payable.get(ln.payer, 0) + ln.amount_fen
    assert {x.party: (x.receivable_fen, x.payable_fen) for x in totals} == {
        p: (receivable.get(p, 0), payable.get(p, 0)) for p in set(receivable) | set(payable)}
    assert sum(x.net_fen for x in totals) == 0
    assert (h.line_count, h.money_total_fen) == (len(lines), sum(receivable.values()))
    doc = api.get(f"/v1/counties/{C}/periods/{label}/statement", headers=FINANCE, params={"limit": 1000}).json()
    assert doc["content_hash"] == h.content_hash and len(doc["lines"]) == len(lines)
    if h.status == FINALIZED:
        assert postings == [(ln.line_no, ln.amount_fen) for ln in lines if ln.kind.is_money], "postings once per line"
        assert finalized_events == 1, f"{C}/{label} announced finalized {finalized_events} times"
    else:
        assert postings == [] and finalized_events == 0
    return h, lines


def sources(lines, kind: LineKind) -> list[str]:
    return sorted(s for ln in lines if ln.kind is kind for s in ln.sources)


def receipts_of(rt, w: World) -> list:
    tr = t.tax_receipts
    with rt.db.sessions() as s:
        return s.execute(select(tr).where(tr.c.enterprise == w.E).order_by(tr.c.receipt_id)).all()


# -- 1. finalizations --------------------------------------------------------------------------------------------

def test_two_finalizations_and_a_draft_at_once_finalize_once(replicas):
    """Guards: two finalizations of one county-period on two replicas (and a draft beside them) finalize it once —
    one hash, one set of postings, one SettlementFinalized — and the draft never overwrites the finalized rows."""
    (rt, a), (_, b) = replicas
    for n in range(ROUNDS):
        w = new_world(a)
        for i in range(3):
            assert receipt(a, w, f"f{n}-{i}-{w.C}", 1).status_code == 201
        calls = [lambda: finalize(a, w, "2025-01"), lambda: finalize(b, w, "2025-01"),
                 lambda: (a if n % 2 else b).post(f"/v1/counties/{w.C}/periods/2025-01/draft", headers=OFFICE)]
        fa, fb, draft = together(calls)
        assert (fa.status_code, fb.status_code) == (200, 200), (fa.text, fb.text)
        assert fa.json()["content_hash"] == fb.json()["content_hash"] and fa.json()["status"] == FINALIZED
        assert draft.status_code == 200 or draft.json()["reason"] == "already_finalized", draft.text
        h, lines = statement_holds(rt, a, w.C, "2025-01")
        assert h.status == FINALIZED and h.content_hash == fa.json()["content_hash"]
        assert [ln.amount_fen for ln in lines if ln.payee == w.T1] == [3 * SHARE]


# -- 2. intake while a month is finalized -------------------------------------------------------------------------

def test_receipts_and_a_correction_racing_a_finalization_land_in_exactly_one_statement(replicas):
    """Guards: receipts (and a correction of a January receipt) recorded on one replica while the other finalizes
    January are each settled once — in January if received by its cut-off, else as a February adjustment."""
    (rt, a), (_, b) = replicas
    for n in range(ROUNDS):
        w = new_world(a)
        for i in range(2):
            assert receipt(a, w, f"base{n}-{i}-{w.C}", 1).status_code == 201
        racing = [lambda i=i: receipt(b if i % 2 else a, w, f"race{n}-{i}-{w.C}", 1) for i in range(4)]
        # the correction brings base-0 from 100.00 to 300.00: +60.00 for the origin, in one statement only
        racing.append(lambda: receipt(b, w, f"corr{n}-{w.C}", 3, corrects=f"base{n}-0-{w.C}"))
        # the finalization starts a little later in some rounds, so receipts land on both sides of its cut-off
        late = (n % 3) * 0.003
        jan, *answers = together([lambda: (time.sleep(late), finalize(a if n % 2 else b, w, "2025-01"))[1], *racing])
        assert jan.status_code == 200, jan.text
        assert all(r.status_code == 201 for r in answers), [r.text for r in answers]
        assert finalize(a, w, "2025-02").status_code == 200

        jan_h, jan_lines = statement_holds(rt, a, w.C, "2025-01")
        _, feb_lines = statement_holds(rt, a, w.C, "2025-02")
        cutoff = from_db(jan_h.finalized_at)
        rows = receipts_of(rt, w)
        by_cutoff = sorted(r.receipt_id for r in rows if from_db(r.received_at) <= cutoff)
        after = sorted(r.receipt_id for r in rows if from_db(r.received_at) > cutoff)
        assert sources(jan_lines, LineKind.REVENUE_SHARE) == by_cutoff
        assert sources(feb_lines, LineKind.ADJUSTMENT) == after
        # 2 + 4 receipts of 100.00, base-0 corrected to 300.00: 800.00 of VAT, 240.00 to the origin
        settled = sum(ln.amount_fen for ln in (*jan_lines, *feb_lines) if ln.payee == w.T1)
        assert settled == 8 * SHARE, (settled, by_cutoff, after)


# -- 3. corrections -----------------------------------------------------------------------------------------------

def test_two_different_corrections_of_one_receipt_at_once_only_one_replaces_it(replicas):
    """Guards: two corrections naming the same receipt, on two replicas at once: one replaces it, the other is
    refused ``already_corrected``; the month is settled at the winner's amount."""
    (rt, a), (_, b) = replicas
    for n in range(ROUNDS):
        w = new_world(a)
        orig = f"orig{n}-{w.C}"
        assert receipt(a, w, orig, 1).status_code == 201
        ra, rb = together([lambda: receipt(a, w, f"ca{n}-{w.C}", 2, corrects=orig),
                           lambda: receipt(b, w, f"cb{n}-{w.C}", 5, corrects=orig)])
        codes = sorted((ra.status_code, rb.status_code))
        assert codes == [201, 409], (ra.text, rb.text)
        loser = ra if ra.status_code == 409 else rb
        assert loser.json()["reason"] == "already_corrected"
        winner, hundreds = (ra, 2) if ra.status_code == 201 else (rb, 5)
        rows = {r.receipt_id: r for r in receipts_of(rt, w)}
        assert rows[orig].corrected_by == winner.json()["receipt_id"] and len(rows) == 2
        assert finalize(b, w, "2025-01").status_code == 200
        _, lines = statement_holds(rt, a, w.C, "2025-01")
        assert [ln.amount_fen for ln in lines if ln.payee == w.T1] == [hundreds * SHARE]


def test_one_correction_sent_twice_at_once_is_recorded_once_and_both_copies_answered(replicas):
    """FINDING (fixed): a correction re-sent at once (a client's retry racing its first attempt, on the other
    replica) was answered 409 ``already_corrected`` instead of 200 "identical, already recorded", as plain receipts
    are (tests/integration/test_resends_at_once.py), in 4-6 of 6 rounds. In ``intake.record_tax_receipt`` both
    copies read "no receipt with this id"; the second waited on the original's row lock and then found it
    ``corrected_by`` its own id, and refused it as corrected by another. The money was right (stored once); the
    answer was wrong: a Kafka copy dead-lettered, an import row reported refused, an HTTP client told its correction
    was not taken. Now a copy of the correction found under the lock is answered as a re-send."""
    (rt, a), (_, b) = replicas
    answers = []
    for n in range(ROUNDS):
        w = new_world(a)
        orig = f"orig{n}-{w.C}"
        assert receipt(a, w, orig, 1).status_code == 201
        copies = together([lambda: receipt(a, w, f"fix{n}-{w.C}", 2, corrects=orig),
                           lambda: receipt(b, w, f"fix{n}-{w.C}", 2, corrects=orig)])
        answers.append(sorted((r.status_code, r.json().get("reason", "")) for r in copies))
        rows = {r.receipt_id: r for r in receipts_of(rt, w)}
        assert len(rows) == 2 and rows[orig].corrected_by == f"fix{n}-{w.C}"  # stored once either way
    assert answers == [[(200, ""), (201, "")]] * ROUNDS, answers


# -- 4. policy ------------------------------------------------------------------------------------------------------

def allocate(rt, w: World, n: int) -> None:
    """A January allocation of 1,000.00 to the park, its one lot freed by another enterprise (compensation)."""
    ev = QuotaAllocated(request_id=f"REQ{n}-{w.C}", project_id=f"PRJ{n}-{w.C}", county_code=w.C, asset="LAND",
                        amount="1.0000", price_per_unit="1000.00", amount_due="1000.00", park_id=f"P{w.C}",
                        allocated_on=date(2025, 1, 15), lots=[ConsumedLotOut(
                            lot_id=f"L{n}-{w.C}", source_kind="release", source_ref=credit_code(w.C, 2),
                            township_code=f"{w.C}102", amount="1.0000", amount_due="1000.00")])
    assert rt.transaction(lambda uow: intake.record_allocation(uow.session, ev, event_id=f"ev-{n}-{w.C}"))


def test_a_back_dated_policy_racing_a_finalization_is_in_it_or_refused(replicas):
    """Guards: a policy version from January PUT on one replica while the other finalizes January: either January
    is finalized under it (its compensation line there) or it is refused ``effective_in_closed_period`` — never
    recorded afterwards for a month already settled."""
    (rt, a), (_, b) = replicas
    for n in range(ROUNDS):
        w = new_world(a, compensation_bp=0)
        allocate(rt, w, n)
        put = lambda: b.put(f"/v1/counties/{w.C}/settlement-policy", headers=OFFICE, json={  # noqa: E731
            "compensation_bp": 3000, "township_weight": 1, "park_weight": 1, "fund_weight": 1,
            "effective_from": "2025-01-01"})
        policy, jan = together([put, lambda: finalize(a, w, "2025-01")] if n % 2 else
                               [put, lambda: finalize(b, w, "2025-01")])
        assert jan.status_code == 200, jan.text
        h, lines = statement_holds(rt, a, w.C, "2025-01")
        compensation = [ln.amount_fen for ln in lines if ln.kind is LineKind.COMPENSATION]
        if policy.status_code == 200:
            assert (h.policy_version, compensation) == (2, [30_000]), (h.policy_version, compensation)
        else:
            assert policy.json()["reason"] == "effective_in_closed_period", policy.text
            assert (h.policy_version, compensation) == (1, [])
            versions = a.get(f"/v1/counties/{w.C}/settlement-policy/versions", headers=FINANCE).json()["versions"]
            assert [v["version"] for v in versions] == [1]
        assert finalize(b, w, "2025-02").status_code == 200  # January's allocation is not split again
        _, feb = statement_holds(rt, a, w.C, "2025-02")
        assert not [ln for ln in feb if ln.allocation_id], feb


# -- 5. import --------------------------------------------------------------------------------------------------------

def key_races() -> float:
    """Transactions of this process run again because another writer took their new key (both replicas count)."""
    return DB_RETRIES.labels("settlement", "unique_violation")._value.get()


def test_an_import_racing_single_receipts_with_the_same_ids_records_each_once(replicas):
    """Guards: an import on one replica while the same receipts arrive one by one on the other: each stored once,
    the import answered per row (recorded / unchanged), January settling each once."""
    (rt, a), (_, b) = replicas
    problems, raced = [], key_races()
    for n in range(ROUNDS):
        w = new_world(a)
        ids = [f"imp{n}-{i:02d}-{w.C}" for i in range(IMPORT_ROWS)]
        csv = "receipt_id,enterprise_credit_code,month,tax_kind,amount\n" + "".join(
            f"{rid},{w.E},2025-01,VAT,100.00\n" for rid in ids)
        # every row but the first few also sent alone, on the other replica: the import meets them in flight
        single = [lambda i=i, rid=rid: (time.sleep(i * SPREAD), receipt(b, w, rid, 1))[1] for i, rid in enumerate(ids[4:])]
        imported, *singles = together([lambda: a.post("/v1/tax-receipts/import", content=csv.encode(),
                                                      headers={**TAX, "Content-Type": "text/csv"}), *single])
        assert all(r.status_code in (200, 201) for r in singles), [r.text for r in singles]
        stored = [r.receipt_id for r in receipts_of(rt, w)]
        if imported.status_code != 200:
            problems.append((n, imported.status_code, imported.json().get("reason"), len(stored)))
            continue
        report = imported.json()
        assert report["rejected"] == [] and report["recorded"] + report["unchanged"] == len(ids), report
        assert stored == ids
        assert finalize(a, w, "2025-01").status_code == 200
        _, lines = statement_holds(rt, a, w.C, "2025-01")
        assert [ln.amount_fen for ln in lines if ln.payee == w.T1] == [len(ids) * SHARE]
    assert problems == [], (f"imports refused whole (round, status, reason, receipts stored of {IMPORT_ROWS}); "
                            f"{key_races() - raced:.0f} key races retried: {problems}")


def held_insert(rt, w: World, rid: str) -> tuple[threading.Thread, threading.Event]:
    """A receipt recorded (as the Kafka consumer records it) in a transaction held open until the event is set."""
    inserted, go = threading.Event(), threading.Event()
    ev = TaxReceiptReported(receipt_id=rid, enterprise_credit_code=w.E, month="2025-01", tax_kind="VAT",
                            amount="100.00")

    def work(uow):
        intake.record_tax_receipt(uow.session, ev, channel="kafka")
        inserted.set()
        assert go.wait(30)

    th = threading.Thread(target=rt.transaction, args=(work,))
    th.start()
    assert inserted.wait(10)
    return th, go


def test_an_import_meeting_three_receipts_in_flight_answers_per_row(replicas):
    """FINDING (fixed): an import meeting three of its receipt ids being inserted at that moment by the other
    replica (its consumer taking the same receipts from Kafka, say) was refused whole, 409 ``concurrent_change``,
    its other rows not recorded — where the import promises good rows recorded and the others answered per row
    (``unchanged``). Each row ran in a savepoint catching only domain and validation errors: a row losing its key
    to a concurrent insert raised the unique violation out of the whole import, which ``shared.db.run_with_retry``
    runs again from the first row at most twice. Now the row alone is read again (``routes_inputs._import_row``).
    Forced here: each in-flight insert is committed only once the import waits on it."""
    (rt, a), (rt_b, _) = replicas
    w = new_world(a)
    ids = [f"inflight-{i}-{w.C}" for i in range(8)]
    held = [held_insert(rt_b, w, rid) for rid in ids[1::3]]  # 3 of the 8 rows, each inserted and uncommitted
    csv = "receipt_id,enterprise_credit_code,month,tax_kind,amount\n" + "".join(
        f"{rid},{w.E},2025-01,VAT,100.00\n" for rid in ids)
    out: dict = {}
    importer = threading.Thread(target=lambda: out.setdefault("r", a.post(
        "/v1/tax-receipts/import", content=csv.encode(), headers={**TAX, "Content-Type": "text/csv"})))
    importer.start()
    for th, go in held:  # the import (or its re-run) waits on this row's key by now: commit it
        time.sleep(0.5)
        go.set()
        th.join(10)
    importer.join(30)
    stored = [r.receipt_id for r in receipts_of(rt, w)]
    r = out["r"]
    assert r.status_code == 200, f"{r.status_code} {r.text}; stored {len(stored)} of {len(ids)}"
    assert r.json() == {"rows": 8, "recorded": 5, "unchanged": 3, "rejected": []} and stored == ids


# -- 6. statistics ------------------------------------------------------------------------------------------------------

def test_statistics_reports_at_once_are_each_stored_once(replicas):
    """Guards: one statistics report sent to both replicas at once is stored once (201 and 200), and different
    reports of one enterprise and month sent at once are all stored and settled in January's statistics share."""
    (rt, a), (_, b) = replicas
    for n in range(ROUNDS):
        w = new_world(a, statistics=True)

        def report(api, rid: str):
            return api.post("/v1/statistics-reports", headers=STATISTICS, json={
                "report_id": rid, "enterprise_credit_code": w.E, "month": "2025-01", "measure": "value_added",
                "amount": "1000.00"})

        same = f"va{n}-{w.C}"
        answers = together([lambda: report(a, same), lambda: report(b, same),
                            lambda: report(a, f"va{n}-x-{w.C}"), lambda: report(b, f"va{n}-y-{w.C}")])
        assert sorted(r.status_code for r in answers[:2]) == [200, 201], [r.text for r in answers]
        assert [r.status_code for r in answers[2:]] == [201, 201], [r.text for r in answers]
        sr = t.statistics_reports
        with rt.db.sessions() as s:
            assert s.execute(select(func.count()).where(sr.c.enterprise == w.E)).scalar_one() == 3
        assert finalize(b, w, "2025-01").status_code == 200
        _, lines = statement_holds(rt, a, w.C, "2025-01")
        shares = [ln for ln in lines if ln.kind is LineKind.STATISTICS_SHARE]
        assert [s.source_count for s in shares] == [3], shares

"""Review of settlement's postings to the ledger (tests first): a finalized statement becomes TransfersRequested
commands, the real ledger service posts them over Kafka and answers, settlement's real consumer records each answer
and the statement shows requested / posted / rejected.

Facts are stored as intake stores them and statements are finalized with a chosen clock (as in
test_review_reads.py); the ledger and settlement run side by side (isolated consumer groups, one PostgreSQL
database each, real Kafka). PostgreSQL only: these tests are about the services over Kafka, not the database.

The county: enterprise E left township T for park P (VAT 50 % local, 6:4, remainder to the park): January VAT
333,333.33; policy 30 % compensation, the rest 4:3:3; one quota allocation of project PRJ with n lots, each of its own
enterprise, alternately from T and T2; finalized 2025-02-05 12:00 CST."""
from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
from sqlalchemy import select

from services.settlement.domain import (
    VAT,
    ConsumedLot,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    TaxReceipt,
)
from services.settlement.domain.periods import Period
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage import tables
from services.settlement.storage.inputs import InputsRepository
from shared.contracts import topics
from shared.contracts.ledger import TransferPosted, TransferRejected
from shared.outbox import make_producer
from tests.integration.settlement.support import (
    FINANCE,
    end_offsets,
    envelope,
    isolated_service,
    new_county,
    publish,
    read_from,
)
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, wait_for
from tests.unit.settlement.settlement_factories import at

LABEL = "2025-01"
FINALIZED_AT = at(2025, 2, 5)
LEDGER = "/countypool/ledger"


@pytest.fixture
def settlement_db(pg_url):
    return pg_url


@pytest.fixture
def ledger_db(pg_server_url):
    with fresh_database(pg_server_url) as url:
        yield url


def _code(C: str, i: int) -> str:
    """An 18-character credit code of the GB 32100 alphabet (what the ledger's enterprise addresses take)."""
    return f"91{C}{i:08d}AB"


def _world(rt, n_lots: int = 3, C: str | None = None) -> dict:
    C = C or new_county()
    T, T2, P = f"township:{C}101", f"township:{C}102", f"park:P{C}"
    E = _code(C, 0)
    with rt.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000, township_weight=4,
                                         park_weight=3, fund_weight=3), "test", at(2025, 1, 1))
        repo.add_agreement(RevenueSharingAgreement(
            agreement_id=f"AG{C}", version=1, effective_from=date(2024, 1, 1), enterprise=E, origin=T, destination=P,
            local_shares_bp={VAT: 5000}, schedule=(ScheduleStep(1, None, 6, 4),), start=date(2024, 1, 1),
            end=date(2027, 12, 31), remainder_to=P), C, "test", at(2025, 1, 1))
        repo.add_receipt(TaxReceipt(receipt_id=f"vat-{C}", enterprise=E, month=Period.parse(LABEL), tax_kind=VAT,
                                    amount_fen=33_333_333, received_at=at(2025, 2, 2)), "http", None)
        lots = tuple(ConsumedLot(f"L{i}-{C}", _code(C, i), T if i % 2 else T2, 1) for i in range(1, n_lots + 1))
        alloc = QuotaAllocation(allocation_id=f"REQ{C}:LAND", project_id=f"PRJ{C}", asset="LAND", amount_units=n_lots,
                                price="1.00", amount_due_fen=1_000_001 * n_lots, destination=P, lots=lots,
                                allocated_on=date(2025, 1, 15), received_at=at(2025, 1, 20))
        repo.add_allocation(alloc, C, f"REQ{C}", f"ev-REQ{C}")
    return dict(C=C, T=T, T2=T2, P=P, FUND=f"county:{C}/fund", PRJ=f"project:PRJ{C}")


def _finalize(rt, C: str):
    return StatementRuns(rt, now=lambda: FINALIZED_AT).finalize(C, LABEL, "test")


def _postings(api, C: str) -> dict:
    r = api.get(f"/v1/counties/{C}/periods/{LABEL}/statement", params={"limit": 1}, headers=FINANCE)
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json()["postings"].items() if k != "rejected_lines"}  # the counts


def _rows(rt, C: str) -> dict[str, tuple]:
    lp = tables.ledger_postings
    with rt.db.sessions() as s:
        return {r.transfer_id: r for r in s.execute(select(lp).where(lp.c.county_code == C)).all()}


def _nets(rt, C: str) -> dict[str, int]:
    """The finalized statement's party totals: net = receivable - payable, in fen."""
    st = tables.statement_totals
    with rt.db.sessions() as s:
        return {r.party: r.receivable_fen - r.payable_fen for r in s.execute(
            select(st).where(st.c.county_code == C, st.c.period == LABEL)).all()}


def _fen(text: str) -> int:
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    v = int(whole) * 100 + int((frac + "00")[:2])
    return -v if neg else v


def _ledger_balances(ledger, parties) -> dict[str, dict] | None:
    ids = [f"{p}/CNY" for p in parties]
    out: dict[str, dict] = {}
    for i in range(0, len(ids), 1000):
        r = ledger.post("/v1/balances:query", json={"account_ids": ids[i:i + 1000]}, headers=FINANCE)
        if r.status_code != 200:
            return None  # not every account opened yet
        out.update({b["account_id"][: -len("/CNY")]: b for b in r.json()})
    return out


def _all_answered(api, C: str, n: int):
    p = _postings(api, C)
    return p if p.get("requested", 0) == 0 and p.get("posted", 0) + p.get("rejected", 0) == n else None


# -- many lines, more than one command, redelivery ----------------------------------------------------------------

def test_a_statement_of_several_commands_posts_every_line_once_and_the_ledger_holds_its_nets(
        settlement_db, ledger_db, kafka_bootstrap):
    """1,050 lots of 1,050 enterprises: more than 1,000 money lines, hence more than one command. Every line is
    posted exactly once; each party's ledger balance is its net to the fen. Then every command is delivered
    again (as Kafka may, and as the relay does after a restart between publish and recording it) and once more
    under a new event id: the ledger answers again, nothing moves twice, settlement still shows every line posted."""
    start = end_offsets(kafka_bootstrap, [topics.LEDGER_COMMANDS])
    with isolated_service("ledger", ledger_db, kafka_bootstrap) as (_, ledger), \
            isolated_service("settlement", settlement_db, kafka_bootstrap) as (rt, api):
        w = _world(rt, n_lots=1050)
        C, sid = w["C"], f"{w['C']}/{LABEL}"
        _finalize(rt, C)
        rows = _rows(rt, C)
        n = len(rows)
        assert n > 1000
        nets = _nets(rt, C)
        assert sum(nets.values()) == 0

        got = wait_for(lambda: _all_answered(api, C, n), timeout=120, what="the ledger's answer to every line")
        assert got == {"requested": 0, "posted": n, "rejected": 0}
        balances = _ledger_balances(ledger, nets)
        assert {p: _fen(b["balance"]) for p, b in balances.items()} == nets
        # each line exactly once: a party's posted debits and credits are its payable and receivable, not more
        for party in (w["PRJ"], w["P"], w["T"]):
            b = balances[party]
            assert _fen(b["credits_posted"]) - _fen(b["debits_posted"]) == nets[party]
        prj = balances[w["PRJ"]]
        assert _fen(prj["debits_posted"]) == sum(r.amount_fen for r in rows.values() if r.debit_account == f"{w['PRJ']}/CNY")
        assert _fen(prj["credits_posted"]) == 0

        cmds = [r for r in read_from(kafka_bootstrap, start, lambda rs: sum(
            1 for x in rs if x.key == sid.encode()) >= 2, timeout=30) if r.key == sid.encode()]
        assert len(cmds) >= 2
        assert sorted(t["transfer_id"] for c in cmds for t in envelope(c)["data"]["transfers"]) == sorted(rows)

        # redelivered as is, then under new event ids (same transfer ids)
        answers_start = end_offsets(kafka_bootstrap, [topics.LEDGER_EVENTS])
        p = make_producer(kafka_bootstrap)
        try:
            for c in cmds:
                p.send(topics.LEDGER_COMMANDS, key=c.key, value=c.value, headers=c.headers or None).get(timeout=30)
            for c in cmds:
                env = json.loads(c.value)
                env["id"] = str(uuid.uuid4())
                p.send(topics.LEDGER_COMMANDS, key=c.key, value=json.dumps(env).encode(),
                       headers=c.headers or None).get(timeout=30)
        finally:
            p.close()
        again = read_from(kafka_bootstrap, answers_start, lambda rs: len({
            envelope(x)["data"]["transfer_id"] for x in rs
            if envelope(x)["data"].get("transfer_id", "").startswith(f"settlement:{C}:")}) >= n, timeout=120)
        answered = [envelope(x) for x in again if envelope(x)["data"].get("transfer_id", "").startswith(f"settlement:{C}:")]
        assert {a["data"]["transfer_id"] for a in answered} == set(rows)
        assert {a["type"].split(".")[1] for a in answered} == {"TransferPosted"}
        after = _ledger_balances(ledger, nets)
        assert {p_: _fen(b["balance"]) for p_, b in after.items()} == nets
        assert after[w["PRJ"]]["debits_posted"] == prj["debits_posted"]
        assert _postings(api, C) == {"requested": 0, "posted": n, "rejected": 0}


# -- refused by the ledger ------------------------------------------------------------------------------------------

def test_postings_the_ledger_refuses_are_shown_rejected_with_their_lines_and_reasons(
        settlement_db, ledger_db, kafka_bootstrap):
    """The park's CNY account already exists at the ledger with the ledger's default flags (must not go negative),
    the county fund's with another asset (opened over the ledger's HTTP API, which settlement's insert-or-ignore
    opening leaves as it is). The park's payments are refused ``exceeds_credits``, the fund's receipts
    ``accounts_must_have_the_same_asset``: settlement must show exactly those lines rejected (the others posted, each as
    the ledger has it) and say which lines and why — it only counts them."""
    with isolated_service("ledger", ledger_db, kafka_bootstrap) as (_, ledger), \
            isolated_service("settlement", settlement_db, kafka_bootstrap) as (rt, api):
        C = new_county()
        P, FUND = f"park:P{C}", f"county:{C}/fund"
        r = ledger.post("/v1/accounts", headers=ADMIN, json={"accounts": [
            {"account_id": f"{P}/CNY", "asset": "CNY", "address": P},
            {"account_id": f"{FUND}/CNY", "asset": "LAND", "address": FUND}]})
        assert r.status_code in (200, 201), r.text
        _world(rt, n_lots=3, C=C)
        _finalize(rt, C)
        rows = _rows(rt, C)
        n = len(rows)
        wait_for(lambda: _all_answered(api, C, n), timeout=60, what="the ledger's answer to every line")

        rows = _rows(rt, C)
        refused = {tid for tid, r in rows.items() if r.debit_account == f"{P}/CNY" or r.credit_account == f"{FUND}/CNY"}
        assert refused and len(refused) < n
        # settlement's status per line is the ledger's: a rejected line has no transfer, a posted one its own amount
        for tid, r in rows.items():
            got = ledger.get(f"/v1/transfers/{tid}", headers=FINANCE)
            if r.status == "posted":
                assert got.status_code == 200 and _fen(got.json()["amount"]) == r.amount_fen, (tid, got.text)
            else:
                assert r.status == "rejected" and got.status_code == 404, (tid, got.text)
        assert {tid for tid, r in rows.items() if r.status == "rejected"} == refused
        assert {r.reason for r in rows.values() if r.status == "rejected"} == {"exceeds_credits",
                                                                               "accounts_must_have_the_same_asset"}
        assert _postings(api, C) == {"requested": 0, "posted": n - len(refused), "rejected": len(refused)}

        # the finance API must say which lines were refused and why (StatementsRepository.rejected_postings
        # exists for this and is called by nothing)
        doc = api.get(f"/v1/counties/{C}/periods/{LABEL}/statement", params={"limit": 1}, headers=FINANCE).json()
        shown = {(x["transfer_id"], x["reason"]) for x in doc["postings"]["rejected_lines"]}
        assert shown == {(tid, r.reason) for tid, r in rows.items() if r.status == "rejected"}, \
            "the statement showed only counts: no line, no reason for a rejected posting"
        assert [x["line_no"] for x in doc["postings"]["rejected_lines"]] == sorted(
            r.line_no for r in rows.values() if r.status == "rejected")


def test_rejected_or_unanswered_postings_are_exported_as_a_metric(settlement_db, kafka_bootstrap):
    """A rejected posting never converges by itself (a failed transfer id stays failed; finalizing again is answered,
    not repeated; nothing re-posts) — operators must at least be told: /metrics should count postings by status."""
    with isolated_service("settlement", settlement_db, kafka_bootstrap) as (rt, api):
        w = _world(rt)
        C = w["C"]
        _finalize(rt, C)
        rows = _rows(rt, C)
        first = min(rows)
        r = rows[first]
        publish(kafka_bootstrap, topics.LEDGER_EVENTS, TransferRejected(
            transfer_id=first, debit_account=r.debit_account, credit_account=r.credit_account, asset="CNY",
            amount=f"{r.amount_fen // 100}.{r.amount_fen % 100:02d}", code="settlement.x", at=FINALIZED_AT,
            reason="exceeds_credits"), subject=first, source=LEDGER)
        wait_for(lambda: _postings(api, C).get("rejected") == 1, what="the rejection recorded")
        metrics = api.get("/metrics").text
        assert any("posting" in ln and "rejected" in ln for ln in metrics.splitlines() if not ln.startswith("#")), \
            "no metric counts rejected (or still requested) ledger postings"


def test_an_answer_not_published_by_the_ledger_does_not_change_a_posting(settlement_db, kafka_bootstrap):
    """Settlement takes TransferPosted / TransferRejected of ``settlement:`` ids from any source on the ledger's
    topic (its authorizer checks only the intake topic; quota checks that a service topic's events come from its
    owner): another service's event turns a posted line into a rejected one."""
    with isolated_service("settlement", settlement_db, kafka_bootstrap) as (rt, api):
        w = _world(rt)
        C = w["C"]
        _finalize(rt, C)
        rows = _rows(rt, C)
        first = min(rows)
        r = rows[first]
        common = dict(transfer_id=first, debit_account=r.debit_account, credit_account=r.credit_account, asset="CNY",
                      amount=f"{r.amount_fen // 100}.{r.amount_fen % 100:02d}", code="settlement.x", at=FINALIZED_AT)
        publish(kafka_bootstrap, topics.LEDGER_EVENTS, TransferPosted(**common), subject=first, source=LEDGER)
        wait_for(lambda: _postings(api, C).get("posted") == 1, what="the ledger's answer recorded")
        publish(kafka_bootstrap, topics.LEDGER_EVENTS, TransferRejected(**common, reason="exceeds_credits"),
                subject=first, source="/countypool/quota")
        marker = str(uuid.uuid4())  # a later event on the same key: once it is consumed, so is the one before
        publish(kafka_bootstrap, topics.LEDGER_EVENTS, TransferPosted(**{**common, "transfer_id": f"quota/x/{marker}"}),
                subject=first, source=LEDGER, event_id=marker)
        wait_for(lambda: _consumed(rt, marker), what="the marker consumed")
        assert _rows(rt, C)[first].status == "posted", "a TransferRejected from quota overwrote the ledger's answer"


def _consumed(rt, event_id: str) -> bool:
    inbox = rt.tables["inbox"]
    with rt.db.sessions() as s:
        return s.execute(select(inbox.c.event_id).where(inbox.c.event_id == event_id)).first() is not None


# -- a finalization entered again after a restore ---------------------------------------------------------------------

def test_a_statement_finalized_again_after_a_restore_learns_the_ledgers_answers(
        settlement_db, ledger_db, kafka_bootstrap, pg_server_url):
    """Settlement finalizes and the ledger posts; settlement's database is then restored from a backup taken before
    the finalization and, as the README says ("enter them again with the same ids"), the operator finalizes again:
    the same statement (same facts, same clock), the same commands under the same event ids. The ledger's inbox
    drops them as repeats, so nothing answers; the answers it gave the first time were consumed before the
    postings rows existed again (here: before this database's consumer group began). The restored statement must
    not show its lines ``requested`` forever while the ledger has posted every one."""
    with fresh_database(pg_server_url) as restored_db, \
            isolated_service("ledger", ledger_db, kafka_bootstrap) as (_, ledger):
        with isolated_service("settlement", settlement_db, kafka_bootstrap) as (rt, api):
            w = _world(rt)
            C = w["C"]
            _finalize(rt, C)
            n = len(_rows(rt, C))
            wait_for(lambda: _postings(api, C).get("posted") == n, timeout=60, what="the first finalization posted")
            nets = _nets(rt, C)
            first_hash = api.get(f"/v1/counties/{C}/periods/{LABEL}/statement", headers=FINANCE).json()["content_hash"]
        with isolated_service("settlement", restored_db, kafka_bootstrap) as (rt2, api2):
            _world(rt2, C=C)  # the restored database: the facts, not the finalization
            start = end_offsets(kafka_bootstrap, [topics.LEDGER_COMMANDS])
            _finalize(rt2, C)
            doc = api2.get(f"/v1/counties/{C}/periods/{LABEL}/statement", headers=FINANCE).json()
            assert doc["content_hash"] == first_hash
            sid = f"{C}/{LABEL}".encode()
            assert read_from(kafka_bootstrap, start, lambda rs: any(x.key == sid for x in rs), timeout=30)
            balances = _ledger_balances(ledger, nets)
            assert {p: _fen(b["balance"]) for p, b in balances.items()} == nets  # the ledger has them all
            try:
                wait_for(lambda: _postings(api2, C).get("posted") == n, timeout=30, what="the answers")
            except AssertionError:
                pytest.fail(f"after the restore the statement shows {_postings(api2, C)} for ever: the re-sent "
                            "commands carry the first ones' event ids, which the ledger's inbox drops unanswered")

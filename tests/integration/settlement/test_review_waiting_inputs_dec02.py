"""Review (Dec 02) of inputs from the intake topic that wait for their enterprise (table waiting_inputs), on
PostgreSQL, with real Kafka where the consumer's own paths matter.

Most tests drive the intake functions the consumer's handlers call (``wait_for_enterprise=True`` is the intake
topic's path) inside ``runtime.transaction`` — fast, and the same code and locks; the poison and batch cases run the
real consumer against Kafka, since what happens to the event that makes the enterprise known is the consumer's
business (dead letter, stall, retry)."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from services.settlement import clock as settlement_clock
from services.settlement import intake
from services.settlement.domain import ReceiptError
from services.settlement.replay import rebuild
from services.settlement.storage import tables as T
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.quota import ConsumedLotOut, LotCreated, QuotaAllocated
from shared.contracts.settlement import StatisticsReported, TaxReceiptReported
from shared.contracts.topics import dlq
from shared.envelope import new_envelope
from shared.outbox import make_producer
from tests.integration.settlement.support import (
    FINANCE,
    OFFICE,
    TAX,
    credit_code,
    end_offsets,
    envelope,
    headers_of,
    isolated_service,
    new_county,
    read_from,
)
from tests.support.services import running_service, wait_for

TAX_SOURCE = "/departments/tax"


# -- helpers ---------------------------------------------------------------------------------------------------

def receipt(rid: str, enterprise: str, amount: str = "1000.00", month: str = "2025-06", tax_kind: str = "VAT",
            **kw) -> TaxReceiptReported:
    return TaxReceiptReported(receipt_id=rid, enterprise_credit_code=enterprise, month=month, tax_kind=tax_kind,
                              amount=amount, **kw)


def stat(rid: str, enterprise: str, amount: str = "500.00", month: str = "2025-06") -> StatisticsReported:
    return StatisticsReported(report_id=rid, enterprise_credit_code=enterprise, month=month, measure="value_added",
                              amount=amount)


def from_topic(rt, ev, event_id: str | None = None):
    """What on_tax_receipt / on_statistics do with an event of the intake topic."""
    if isinstance(ev, TaxReceiptReported):
        return rt.transaction(lambda uow: intake.record_tax_receipt(
            uow.session, ev, channel="kafka", event_id=event_id or str(uuid.uuid4()), wait_for_enterprise=True))
    return rt.transaction(lambda uow: intake.record_statistics(uow.session, ev, channel="kafka",
                                                               wait_for_enterprise=True))


def register(rt, code: str, county: str) -> None:
    """What on_enterprise does with assessment's EnterpriseRegistered."""
    ev = EnterpriseRegistered(credit_code=code, name="某某有限公司", county_code=county, township_code=f"{county}101",
                              in_park=False)
    rt.transaction(lambda uow: intake.record_enterprise(uow.session, ev))


def lot(lot_id: str, county: str, enterprise: str) -> LotCreated:
    return LotCreated(lot_id=lot_id, county_code=county, asset="COD", amount="2.0000", retired="0.4000",
                      source_kind="release", source_ref=enterprise, township_code=f"{county}101", dated="2025-05-01",
                      basis="free")


def waiting(api, **params) -> list[dict]:
    r = api.get("/v1/waiting-inputs", params=params, headers=FINANCE)
    assert r.status_code == 200, r.text
    return r.json()["inputs"]


def get_receipt(api, rid: str) -> dict | None:
    r = api.get(f"/v1/tax-receipts/{rid}", headers=FINANCE)
    return r.json() if r.status_code == 200 else None


def metric(api, kind: str, state: str) -> int:
    text = api.get("/metrics").text
    m = re.search(rf'^countypool_settlement_inputs_waiting{{kind="{kind}",state="{state}"}} (\S+)$', text, re.M)
    assert m, f"no countypool_settlement_inputs_waiting for {kind}/{state}"
    return int(float(m.group(1)))


def receipt_rows(rt, like: str) -> dict[str, tuple]:
    with rt.db.sessions() as s:
        tr = T.tax_receipts
        return {r.receipt_id: (r.amount_fen, r.corrects, r.replaced_amount_fen, r.corrected_by, r.received_at)
                for r in s.execute(select(tr).where(tr.c.receipt_id.like(like))).all()}


def agreement(api, C: str, E: str, aid: str, start: str = "2024-01-01"):
    return api.post("/v1/agreements", headers=OFFICE, json={
        "agreement_id": aid, "county_code": C, "enterprise_credit_code": E, "origin": f"township:{C}101",
        "destination": f"park:P{C}", "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
        "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
        "start": start, "end": "2027-12-31"})


def policy(api, C: str) -> None:
    r = api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE,
                json={"compensation_bp": 0, "township_weight": 1, "park_weight": 1, "fund_weight": 1})
    assert r.status_code == 200, r.text


def poison_waiting(rt, rid: str, enterprise: str) -> None:
    """A waiting correction whose ``corrects`` holds a NUL, as the service stored one before the contract took that
    field as an identifier (an intake event with it is now dead-lettered invalid_payload at once): taken in, its
    lookup of the original fails in the database (DataError), not with one of the domain's refusals."""
    payload = ('{"amount": "900.00", "corrects": "X\\u0000Y", "enterprise_credit_code": "%s", "month": "2025-06", '
               '"receipt_id": "%s", "tax_kind": "VAT"}' % (enterprise, rid))
    with rt.db.sessions() as s, s.begin():
        s.execute(T.waiting_inputs.insert().values(kind="tax_receipt", input_id=rid, enterprise=enterprise,
                                                   payload=payload, event_id=str(uuid.uuid4()),
                                                   waiting_since=datetime.now(timezone.utc)))


def publish_many(bootstrap: str, items: list[tuple[str, object, str, str]]) -> list[str]:
    """(topic, event, subject, source) each, through one producer: they arrive together (one poll)."""
    p = make_producer(bootstrap)
    ids = []
    try:
        futures = []
        for topic, ev, subject, source in items:
            env = new_envelope(ev, subject=subject, source=source, producer=source.rsplit("/", 1)[-1],
                               event_id=str(uuid.uuid4()), time=datetime.now(timezone.utc))
            ids.append(env.id)
            futures.append(p.send(topic, key=subject.encode(), value=env.to_json()))
        for f in futures:
            f.get(timeout=30)
    finally:
        p.close()
    return ids


# -- poison: a waiting input that cannot be taken in for an unexpected reason -------------------------------------

def test_a_poison_waiting_correction_does_not_make_the_enterprise_unknowable(pg_url, kafka_bootstrap):
    """A waiting correction whose ``corrects`` holds a NUL (poison_waiting). Taken in, its lookup of the original
    fails with a DataError — not one of the domain's refusals — and the event making the enterprise known failed as a
    whole. The README: one that fails when taken in "stays listed as refused with the reason"."""
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        C = new_county()
        E1, E2, E3, E4 = (credit_code(C, n) for n in (1, 2, 3, 4))
        for E in (E1, E2, E3, E4):
            assert from_topic(rt, receipt(f"ok-{E}", E)) == (None, False)
            poison_waiting(rt, f"bad-{E}", E)
        assert len(waiting(api, state="waiting")) == 8

        problems = []
        # the register's event
        try:
            register(rt, E1, C)
        except Exception as exc:  # noqa: BLE001 - reported below
            problems.append(f"EnterpriseRegistered of {E1} raised {type(exc).__name__}: {str(exc)[:120]}")
        # an agreement over HTTP: someone else's bad receipt must not refuse it
        policy(api, C)
        r = agreement(api, C, E2, f"FD-{C}")
        if r.status_code != 201:
            problems.append(f"POST /v1/agreements for {E2} answered {r.status_code} {r.text[:160]}")
        # a quota lot naming the enterprise
        try:
            rt.transaction(lambda uow: intake.record_quota_facts(
                uow.session, [intake.QuotaFact(lot(f"LOT-{C}", C, E3), str(uuid.uuid4()), settlement_clock.now())]))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"LotCreated naming {E3} raised {type(exc).__name__}: {str(exc)[:120]}")
        # a quota allocation whose lot names the enterprise: the county's proceeds (consumer: dead-lettered)
        alloc = QuotaAllocated(request_id=f"REQ-{C}", project_id=f"PRJ-{C}", county_code=C, asset="LAND",
                               amount="1.0000", price_per_unit="1000.00", amount_due="1000.00", park_id=f"P{C}",
                               allocated_on="2025-06-10", lots=[ConsumedLotOut(
                                   lot_id=f"L-{C}", source_kind="release", source_ref=E4, township_code=f"{C}101",
                                   amount="1.0000", amount_due="1000.00")])
        try:
            rt.transaction(lambda uow: intake.record_allocation(uow.session, alloc, event_id=str(uuid.uuid4())))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"QuotaAllocated naming {E4} (1000.00 due) raised {type(exc).__name__}: "
                            f"{str(exc)[:120]}")

        for E in (E1, E2, E3, E4):
            if get_receipt(api, f"ok-{E}") is None:
                problems.append(f"ok-{E} was not taken in")
            refused = [w["input_id"] for w in waiting(api, enterprise=E, state="refused")]
            if refused != [f"bad-{E}"]:
                problems.append(f"bad-{E} not listed as refused (refused: {refused})")
        assert not problems, ("DEFECT: a waiting input whose taking-in raises an unexpected (database) error is not "
                              "recorded as refused; it fails the event that makes its enterprise known:\n  "
                              + "\n  ".join(problems))


def test_poison_over_kafka_dead_letters_the_register_event_and_the_enterprise_stays_unknown(pg_url, kafka_bootstrap):
    """The same through the consumer: what becomes of the EnterpriseRegistered, and of the enterprise's later
    receipts."""
    C = new_county()
    E = credit_code(C, 1)
    dlq_start = end_offsets(kafka_bootstrap, [dlq(topics.ASSESSMENT_EVENTS), dlq(topics.QUOTA_EVENTS)])
    with isolated_service("settlement", pg_url, kafka_bootstrap) as (rt, api):
        publish_many(kafka_bootstrap, [(topics.INTAKE_SETTLEMENT, receipt(f"ok-{C}", E), E, TAX_SOURCE)])
        poison_waiting(rt, f"bad-{C}", E)
        wait_for(lambda: len(waiting(api, enterprise=E)) == 2, timeout=20, what="both waiting")
        reg = publish_many(kafka_bootstrap, [(topics.ASSESSMENT_EVENTS, EnterpriseRegistered(
            credit_code=E, name="某某化工有限公司", county_code=C, township_code=f"{C}101", in_park=False), E,
            "/countypool/assessment")])[0]
        try:
            wait_for(lambda: get_receipt(api, f"ok-{C}"), timeout=12, what="ok taken in")
            taken = True
        except AssertionError:
            taken = False
        dead = {envelope(r)["id"]: headers_of(r).get("dlq-reason")
                for r in read_from(kafka_bootstrap, dlq_start, lambda recs: len(recs) >= 1, timeout=3)}
        # the enterprise is known? a receipt over HTTP says so
        r = api.post("/v1/tax-receipts", headers=TAX, json={"receipt_id": f"h-{C}", "enterprise_credit_code": E,
                                                            "month": "2025-06", "tax_kind": "VAT", "amount": "1.00"})
        assert taken and reg not in dead and r.status_code == 201, (
            "DEFECT: one poison waiting input blocks its enterprise for good: the EnterpriseRegistered was "
            f"dead-lettered ({dead.get(reg)!r}), ok-{C} taken in: {taken}, a later HTTP receipt of the enterprise "
            f"answered {r.status_code} {r.text[:120]}, still waiting: "
            f"{[(w['input_id'], w['state']) for w in waiting(api, enterprise=E)]}")


# -- duplicates ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["amount_written_differently", "tax_kind_by_its_chinese_name",
                                     "statistics_amount_written_differently"])
def test_a_redelivered_copy_is_the_same_receipt_whether_or_not_its_enterprise_is_known(pg_url, kafka_bootstrap,
                                                                                        variant):
    """The same receipt sent again in another spelling of the same content ("1000.00" / "1000"; "增值税" / "VAT"):
    once recorded it is an unchanged re-send (``_resent`` compares fen and the tax kind code). While it waits, the
    JSON text of the payload is compared instead, and the copy is dead-lettered receipt_id_conflict."""
    first = dict(amount="1000.00", tax_kind="VAT")
    again = dict(amount="1000", tax_kind="VAT") if variant == "amount_written_differently" else dict(
        amount="1000.00", tax_kind="增值税")
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        C = new_county()
        known, unknown = credit_code(C, 1), credit_code(C, 2)
        register(rt, known, C)
        if variant.startswith("statistics"):
            assert from_topic(rt, stat(f"k-{C}", known, amount="500.00"))[1]
            assert not from_topic(rt, stat(f"k-{C}", known, amount="500"))[1], "recorded: an unchanged re-send"
            assert from_topic(rt, stat(f"u-{C}", unknown, amount="500.00")) == (None, False)
            try:
                from_topic(rt, stat(f"u-{C}", unknown, amount="500"))
                outcome = "accepted as the same"
            except ReceiptError as exc:
                outcome = f"refused {exc.reason}"
            assert outcome == "accepted as the same", (
                f"DEFECT: a copy of a waiting statistics report (500 for 500.00) is {outcome}, though the same copy "
                "of a recorded report is an unchanged re-send: intake._wait compares the payload's JSON text")
            return
        row, created = from_topic(rt, receipt(f"k-{C}", known, **first))
        assert created
        row, created = from_topic(rt, receipt(f"k-{C}", known, **again))
        assert not created, "recorded: the copy is an unchanged re-send"

        assert from_topic(rt, receipt(f"u-{C}", unknown, **first)) == (None, False)
        try:
            from_topic(rt, receipt(f"u-{C}", unknown, **again))
            outcome = "accepted as the same"
        except ReceiptError as exc:
            outcome = f"refused {exc.reason}"
        assert outcome == "accepted as the same", (
            f"DEFECT: a copy of a waiting receipt ({again}) is {outcome}, though the same copy of a recorded receipt "
            "is an unchanged re-send: intake._wait compares the payload's JSON text, not the content "
            "(the copy would be dead-lettered)")


def test_duplicates_of_a_waiting_receipt_before_and_after_it_is_taken_in(pg_url, kafka_bootstrap):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        C = new_county()
        E = credit_code(C, 1)
        ev = receipt(f"d1-{C}", E)
        assert from_topic(rt, ev, "e1") == (None, False)
        assert from_topic(rt, ev, "e2") == (None, False)  # the same under a new event id: still one waiting
        with pytest.raises(ReceiptError) as info:
            from_topic(rt, receipt(f"d1-{C}", E, amount="999.00"))
        assert info.value.reason == "receipt_id_conflict"
        rows = waiting(api, enterprise=E)
        assert [(w["input_id"], w["content"]["amount"]) for w in rows] == [(f"d1-{C}", "1000.00")]
        # over HTTP, while it waits: the enterprise is unknown
        body = {"receipt_id": f"d1-{C}", "enterprise_credit_code": E, "month": "2025-06", "tax_kind": "VAT",
                "amount": "1000.00"}
        r = api.post("/v1/tax-receipts", headers=TAX, json=body)
        assert (r.status_code, r.json()["reason"]) == (422, "unknown_enterprise"), r.text

        register(rt, E, C)
        before = receipt_rows(rt, f"d1-{C}")
        assert list(before) == [f"d1-{C}"] and before[f"d1-{C}"][0] == 100000
        with rt.db.sessions() as s:
            assert s.execute(select(T.tax_receipts.c.event_id).where(
                T.tax_receipts.c.receipt_id == f"d1-{C}")).scalar() == "e1", "the first event's id is kept"
        # after: the same again (kafka, new event id) and over HTTP
        row, created = from_topic(rt, ev, "e3")
        assert not created and row.receipt_id == f"d1-{C}"
        r = api.post("/v1/tax-receipts", headers=TAX, json=body)
        assert r.status_code == 200 and r.json()["created"] is False, r.text
        r = api.post("/v1/tax-receipts", headers=TAX, json={**body, "amount": "1001.00"})
        assert r.status_code == 409 and r.json()["reason"] == "receipt_id_conflict", r.text
        assert receipt_rows(rt, f"d1-{C}") == before, "a refused or repeated send changes nothing"
        assert waiting(api, enterprise=E) == []
        # registered again: nothing to take in, nothing changes
        register(rt, E, C)
        assert receipt_rows(rt, f"d1-{C}") == before

        # statistics: the same while waiting and after
        F = credit_code(C, 2)
        s1 = stat(f"s1-{C}", F)
        assert from_topic(rt, s1) == (None, False)
        assert from_topic(rt, s1) == (None, False)
        register(rt, F, C)
        row, created = from_topic(rt, s1)
        assert not created and row.amount_fen == 50000
        with pytest.raises(ReceiptError) as info:
            from_topic(rt, stat(f"s1-{C}", F, amount="1.00"))
        assert info.value.reason == "report_id_conflict"


# -- corrections -----------------------------------------------------------------------------------------------

def test_chains_of_corrections_waiting_and_a_refused_one(pg_url, kafka_bootstrap):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        C = new_county()
        E, F, G = credit_code(C, 1), credit_code(C, 2), credit_code(C, 3)
        # E: original, correction, correction of the correction, and a second correction of the original
        for ev in (receipt(f"o-{C}", E, amount="100.00"),
                   receipt(f"c1-{C}", E, amount="150.00", corrects=f"o-{C}"),
                   receipt(f"c2-{C}", E, amount="0", corrects=f"c1-{C}"),
                   receipt(f"c1b-{C}", E, amount="170.00", corrects=f"o-{C}")):
            assert from_topic(rt, ev) == (None, False)
        assert metric(api, "tax_receipt", "waiting") == 4
        register(rt, E, C)
        rows = receipt_rows(rt, f"%-{C}")
        assert {k: v[:4] for k, v in rows.items()} == {
            f"o-{C}": (10000, None, None, f"c1-{C}"),
            f"c1-{C}": (15000, f"o-{C}", 10000, f"c2-{C}"),
            f"c2-{C}": (0, f"c1-{C}", 15000, None)}, rows
        assert rows[f"o-{C}"][4] < rows[f"c1-{C}"][4] < rows[f"c2-{C}"][4], "taken in in the order they came"
        refused = waiting(api, enterprise=E, state="refused")
        assert [(w["input_id"], w["refused_reason"]) for w in refused] == [(f"c1b-{C}", "already_corrected")]
        assert (metric(api, "tax_receipt", "waiting"), metric(api, "tax_receipt", "refused")) == (0, 1)

        # F: a correction arriving after F is known, of an original that waited
        assert from_topic(rt, receipt(f"fo-{C}", F, amount="10.00")) == (None, False)
        register(rt, F, C)
        row, created = from_topic(rt, receipt(f"fc-{C}", F, amount="12.00", corrects=f"fo-{C}"))
        assert created and row.replaced_amount_fen == 1000

        # G (unknown) sends a correction of E's recorded receipt: refused when G is known, E's receipt untouched
        before = receipt_rows(rt, f"c2-{C}")
        assert from_topic(rt, receipt(f"gc-{C}", G, amount="1.00", corrects=f"c2-{C}")) == (None, False)
        register(rt, G, C)
        assert [(w["input_id"], w["refused_reason"]) for w in waiting(api, enterprise=G)] == [
            (f"gc-{C}", "correction_mismatch")]
        assert receipt_rows(rt, f"c2-{C}") == before
        assert get_receipt(api, f"gc-{C}") is None


# -- statements ------------------------------------------------------------------------------------------------

def test_a_receipt_waiting_across_a_finalization_lands_in_the_next_statement(pg_url, kafka_bootstrap):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        C = new_county()
        E1, E2 = credit_code(C, 1), credit_code(C, 2)
        policy(api, C)
        assert agreement(api, C, E1, f"FD1-{C}").status_code == 201
        row, created = from_topic(rt, receipt(f"a1-{C}", E1, amount="1000.00", month="2025-01"))
        assert created
        # E2 unknown: its January receipt and a late correction-free February one wait
        assert from_topic(rt, receipt(f"b1-{C}", E2, amount="2000.00", month="2025-01")) == (None, False)
        assert from_topic(rt, receipt(f"b2-{C}", E2, amount="3000.00", month="2025-02")) == (None, False)
        jan = api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE)
        assert jan.status_code == 200, jan.text
        jan_hash = jan.json()["content_hash"]

        # an agreement from February makes E2 known; both its receipts are taken in, stamped now
        r = agreement(api, C, E2, f"FD2-{C}", start="2025-02-01")
        assert r.status_code == 201, r.text
        rows = receipt_rows(rt, f"b%-{C}")
        assert set(rows) == {f"b1-{C}", f"b2-{C}"}, "nothing waiting across the finalization is lost"
        cutoff = datetime.fromisoformat(jan.json()["as_of"])
        assert all(v[4] > cutoff for v in rows.values()), "taken in after the cut-off: stamped then"

        d1 = api.post(f"/v1/counties/{C}/periods/2025-02/draft", headers=OFFICE)
        d2 = api.post(f"/v1/counties/{C}/periods/2025-02/draft", headers=OFFICE)
        assert d1.status_code == d2.status_code == 200, d1.text
        assert d1.json()["content_hash"] == d2.json()["content_hash"], "a draft re-run gives the same hash"
        feb = api.post(f"/v1/counties/{C}/periods/2025-02/finalize", headers=OFFICE)
        assert feb.status_code == 200, feb.text
        assert feb.json()["content_hash"] == d2.json()["content_hash"], "nothing came in between"
        assert feb.json()["unmatched_receipts"] == 1, feb.json()  # b1: late, January, no agreement then
        # E2's February 3000, local share 50% split 6:4: the origin's 900 is a line (the destination keeps its
        # 600); E2's January one (no agreement then) is a late receipt no agreement shares
        lines = api.get(f"/v1/counties/{C}/periods/2025-02/statement", headers=FINANCE).json()
        shares = sorted((ln["kind"], ln["payee"], ln["amount"]) for ln in lines["lines"] if ln["kind"] != "statistics_share")
        assert shares == [("revenue_share", f"township:{C}101", "900.00")], shares
        periods = {p["period"]: p for p in api.get(f"/v1/counties/{C}/periods", headers=FINANCE).json()["statements"]}
        assert periods["2025-01"]["content_hash"] == jan_hash, "a finalized statement's hash never changes"

        report = rebuild(rt.db)
        assert report.equal, report.differences[:5]


# -- many at once: one quota poll (apply_batch) ------------------------------------------------------------------

def test_one_quota_poll_naming_many_enterprises_takes_in_all_their_waiting_inputs(pg_url, kafka_bootstrap):
    C = new_county()
    codes = [credit_code(C, n) for n in range(1, 9)]
    with isolated_service("settlement", pg_url, kafka_bootstrap) as (rt, api):
        intake_items = []
        for E in codes:
            intake_items += [(topics.INTAKE_SETTLEMENT, receipt(f"o-{E}", E, amount="100.00"), E, TAX_SOURCE),
                             (topics.INTAKE_SETTLEMENT, receipt(f"c-{E}", E, amount="110.00", corrects=f"o-{E}"), E,
                              TAX_SOURCE),
                             (topics.INTAKE_SETTLEMENT, stat(f"s-{E}", E), E, "/departments/statistics")]
        publish_many(kafka_bootstrap, intake_items)
        wait_for(lambda: len(waiting(api, state="waiting", limit=1000)) == 24, timeout=25, what="24 waiting")
        assert (metric(api, "tax_receipt", "waiting"), metric(api, "statistics_report", "waiting")) == (16, 8)
        publish_many(kafka_bootstrap, [(topics.QUOTA_EVENTS, lot(f"LOT-{E}", C, E), f"LOT-{E}", "/countypool/quota")
                                       for E in codes])
        wait_for(lambda: waiting(api, limit=1000) == [], timeout=25, what="all taken in")
        rows = receipt_rows(rt, "%")
        for E in codes:
            assert rows[f"o-{E}"][3] == f"c-{E}" and rows[f"c-{E}"][2] == 10000, (E, rows.get(f"c-{E}"))
        with rt.db.sessions() as s:
            assert s.execute(select(T.statistics_reports.c.report_id)).scalars().all().__len__() == 8
        assert (metric(api, "tax_receipt", "waiting"), metric(api, "statistics_report", "waiting"),
                metric(api, "tax_receipt", "refused")) == (0, 0, 0)


# -- listing, auth, restart ------------------------------------------------------------------------------------

def test_waiting_inputs_paging_with_slashes_auth_metric_and_a_restart(pg_url, kafka_bootstrap):
    C = new_county()
    E, F = credit_code(C, 1), credit_code(C, 2)
    ids = [f"pg/a/{C}", f"pg/b-{C}", f"pg-{C}", f"pg.{C}", f"pg/{C}/z", f"pg:{C}"]
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        for rid in ids:
            assert from_topic(rt, receipt(rid, E)) == (None, False)
        assert from_topic(rt, stat(f"st/1-{C}", E)) == (None, False)
        assert from_topic(rt, receipt(f"other-{C}", F)) == (None, False)
        seen, after, pages = [], "", 0
        while True:
            params = {"enterprise": E, "limit": 2, **({"after": after} if after else {})}
            r = api.get("/v1/waiting-inputs", params=params, headers=FINANCE)
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [(w["kind"], w["input_id"]) for w in page["inputs"]]
            pages += 1
            if page["next_after"] is None:
                break
            after = page["next_after"]
            assert pages < 10
        want = sorted([("tax_receipt", i) for i in ids] + [("statistics_report", f"st/1-{C}")])
        assert sorted(seen) == want and len(seen) == len(set(seen)), f"paging lost or repeated rows: {seen}"
        assert api.get("/v1/waiting-inputs").status_code == 401
        assert api.get("/v1/waiting-inputs", headers={"Authorization": "Bearer nonsense"}).status_code == 401
        assert api.get("/v1/waiting-inputs", headers=TAX).status_code == 403
        assert api.get("/v1/waiting-inputs", headers=OFFICE).status_code == 200
        assert api.get("/v1/waiting-inputs", params={"after": "x" * 231}, headers=FINANCE).status_code == 422
        assert (metric(api, "tax_receipt", "waiting"), metric(api, "statistics_report", "waiting"),
                metric(api, "tax_receipt", "refused"), metric(api, "statistics_report", "refused")) == (7, 1, 0, 0)

    # the service restarts with inputs waiting: a new instance takes them in
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, api):
        assert len(waiting(api, enterprise=E)) == 7
        register(rt, E, C)
        assert waiting(api, enterprise=E) == []
        assert set(receipt_rows(rt, "pg%")) == set(ids)
        assert [w["input_id"] for w in waiting(api)] == [f"other-{C}"]
        assert (metric(api, "tax_receipt", "waiting"), metric(api, "statistics_report", "waiting")) == (1, 0)

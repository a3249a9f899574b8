"""An allocation lists every lot it consumes in its QuotaAllocated, and a pool can hold thousands of small lots: on
the real service (HTTP, the consumer's batch path, the real outbox and its 900 KiB limit; SQLite and PostgreSQL),
a request whose allocation would list more lots than one event can carry is refused in the round
(``too_many_lots``), never reserved only to be unable to confirm; and where the lots changed after the round, the
allocation cancels the reservation (voided, ``too_many_lots``) instead of failing the approval or the ledger's
answer that triggered it. Lots are written straight into the pool, booked: how they came in is not the point."""
from __future__ import annotations

import json
from collections import namedtuple
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from services.quota.application import assessment_facts
from services.quota.application.ledger_answers import on_ledger_outcome
from services.quota.application.tx import Tx
from services.quota.domain.lots import Basis, SourceKind, new_lot
from services.quota.domain.policy import PoolPolicy
from services.quota.replay import QuotaProjection
from services.quota.storage import intake_store, request_store
from services.quota.storage import tables as T
from services.quota.storage.counties import save_policy
from shared.contracts import topics
from shared.contracts.assessment import ProjectEvaluated
from shared.contracts.ledger import TransferPending
from shared.envelope import new_envelope
from shared.outbox import MAX_EVENT_BYTES
from shared.replay import replay
from tests.integration.quota.harness import credit_code, new_county
from tests.support.services import ADMIN, auth, running_service

Rec = namedtuple("Rec", "topic partition offset key value headers", defaults=[()])  # a Kafka record, as read
ECOLOGY = auth("dev-ecology-token")
LONGEST = 150  # release ids: shared.contracts.types.SourceIdentifier
TINY = 3_200  # lots of 0.1 t with the longest ids: ~300 bytes each in QuotaAllocated, ~3,000 fit in one


@pytest.fixture
def quota(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        yield Service(rt, client, new_county())


class Service:
    def __init__(self, rt, client, county: str):
        self.rt, self.client, self.county = rt, client, county
        self.tx(lambda tx: save_policy(tx.session, PoolPolicy(county, retire_share_bp={"COD": 0}), "test", tx.now))

    def tx(self, fn):
        return self.rt.transaction(lambda uow: fn(Tx.of_uow(uow)))

    def evaluate(self, project_id: str, project_class: str = "A") -> None:
        self.tx(lambda tx: assessment_facts.project_evaluated(tx, ProjectEvaluated(
            project_id=project_id, applicant_credit_code=credit_code(self.county, 9999), county_code=self.county,
            park_id="park-1", admitted=True, land="10.0000", investment_per_mu="3000000.00", tax_per_mu="150000.00",
            industry_code="C39", project_class=project_class, policy_hash="h")))

    def lots(self, n: int, amount: int, dated: date, prefix: str) -> None:
        """``n`` booked COD lots of ``amount`` smallest units, release ids of ``prefix`` padded to the longest."""
        policy = PoolPolicy(self.county, retire_share_bp={"COD": 0})
        lots = [new_lot(lot_id=f"release:{rid}", county_code=self.county, asset="COD", amount=amount,
                        source_kind=SourceKind.ENTERPRISE, source_ref=credit_code(self.county, 1),
                        township_code=f"{self.county}100", dated=dated, basis=Basis.FREE,
                        buyback_price_fen_per_unit=None, origin_id=rid, policy=policy)
                for rid in (f"{prefix}{i:05d}".ljust(LONGEST, "x") for i in range(n))]

        def write(tx):
            intake_store.insert_lots(tx.session, lots, tx.now)
            intake_store.set_lots_ledger_state(tx.session, [lot.lot_id for lot in lots], "booked")
        self.tx(write)

    def request(self, request_id: str, project_id: str, amount: str) -> None:
        r = self.client.post("/v1/requests", headers=ADMIN, json={
            "request_id": request_id, "project_id": project_id, "county_code": self.county,
            "lines": [{"asset": "COD", "amount": amount}]})
        assert r.status_code == 201, r.text

    def round(self) -> dict:
        r = self.client.post(f"/v1/counties/{self.county}/rounds", headers=ADMIN)
        assert r.status_code == 201, r.text
        return r.json()

    def pending(self, request_id: str, project_id: str, amount: str) -> TransferPending:
        return TransferPending(transfer_id=f"quota/reserve/{request_id}/COD",
                               debit_account=f"county:{self.county}/pool/COD",
                               credit_account=f"project:{project_id}/COD", asset="COD", amount=amount,
                               code="quota_reserve", at=datetime.now(timezone.utc))

    def approve(self, project_id: str):
        return self.client.post("/v1/approvals", headers=ECOLOGY, json={
            "project_id": project_id, "kind": "environmental_impact", "granted_on": "2024-06-01"})

    def state(self, request_id: str) -> tuple[str, str | None]:
        r = self.client.get(f"/v1/requests/{request_id}", headers=ADMIN)
        return r.json()["state"], r.json()["reason"]

    def outbox(self) -> list[dict]:
        out = T.messaging["outbox"]
        with self.rt.db.sessions() as s:
            return [json.loads(e) for e in s.execute(select(out.c.envelope).order_by(out.c.position)).scalars()]

    def events(self, name: str) -> list[dict]:
        return [d["data"] for d in self.outbox() if d["type"] == f"countypool.{name}.v1"]

    def commands(self) -> list[list[str]]:
        return [[t["transfer_id"] for t in d["transfers"]] for d in self.events("TransfersRequested")]

    def replay_differences(self) -> list:
        """What the events say against the live rows, but of the lots (written here without their events)."""
        return [str(d) for d in replay(self.rt.db, QuotaProjection()).differences if d.model not in ("lots", "pool")]

    def remaining(self) -> dict[str, int]:
        with self.rt.db.sessions() as s:
            return {r.lot_id: r.remaining for r in s.execute(select(T.lots.c.lot_id, T.lots.c.remaining))}


def test_a_round_refuses_a_request_whose_allocation_would_list_too_many_lots(quota):
    quota.lots(TINY, 1_000, date(2024, 1, 1), "T")  # 320 t in 3,200 lots of 0.1 t
    quota.evaluate("P1", "A")
    quota.evaluate("P2", "B")
    quota.request("R1", "P1", "320")  # first in the policy's order: would consume every lot
    quota.request("R2", "P2", "10")

    run = quota.round()
    decisions = {d["request_id"]: d for d in run["decisions"]}
    assert (decisions["R1"]["outcome"], decisions["R1"]["reason"]) == ("refused", "too_many_lots")
    [short] = decisions["R1"]["shortfalls"]
    assert short["asset"] == "COD" and short["requested"] == "320.0000"
    assert 250 < float(short["available"]) < 320, "about the most one allocation can take now"
    assert (decisions["R2"]["outcome"], decisions["R2"]["reason"]) == ("granted", "granted")
    assert quota.state("R1") == ("rejected", "too_many_lots")
    assert [e["reason"] for e in quota.events("QuotaRequestRejected") if e["request_id"] == "R1"] == ["too_many_lots"]
    assert ["quota/reserve/R1/COD"] not in quota.commands(), "never reserved in the ledger"
    again = quota.client.get(f"/v1/rounds/{run['round_id']}", headers=ADMIN).json()
    assert again["reproducible"] is True

    # R2 is allocated from the first lots as usual, and the most the round named does fit in one event
    quota.tx(lambda tx: on_ledger_outcome(tx, quota.pending("R2", "P2", "10")))
    assert quota.approve("P2").status_code == 200
    [allocated] = quota.events("QuotaAllocated")
    assert (allocated["request_id"], len(allocated["lots"])) == ("R2", 100)
    quota.request("R3", "P1", short["available"])
    assert [d["outcome"] for d in quota.round()["decisions"]] == ["granted"]


def test_an_approval_whose_allocation_cannot_be_written_cancels_that_reservation_and_confirms_the_rest(quota):
    quota.lots(1, 4_000_000, date(2024, 2, 1), "BIG")  # 400 t in one lot
    quota.lots(1, 10_000, date(2024, 3, 1), "SMALL")  # 1 t
    quota.evaluate("P1")
    quota.request("R1", "P1", "400")
    quota.request("R2", "P1", "0.5")
    assert [d["outcome"] for d in quota.round()["decisions"]] == ["granted", "granted"], "one lot each: they fit"
    for rid, amount in (("R1", "400"), ("R2", "0.5")):
        quota.tx(lambda tx: on_ledger_outcome(tx, quota.pending(rid, "P1", amount)))
    # then older quota comes in, in small lots: FIFO takes them first, 3,201 lots for R1's 400 t
    quota.lots(TINY, 1_000, date(2020, 1, 1), "T")

    r = quota.approve("P1")
    assert r.status_code == 200, r.text  # was 413 event_too_large: the approval lost for both requests
    assert {x["request_id"]: (x["state"], x["outcome"]) for x in r.json()["requests"]} == {
        "R1": ("cancelled", "too_many_lots"), "R2": ("allocated", "allocated")}
    assert quota.state("R1") == ("cancelled", "too_many_lots")
    assert [e["reason"] for e in quota.events("QuotaReservationCancelled")] == ["too_many_lots"]
    assert ["quota/void/R1/COD"] in quota.commands() and ["quota/post/R1/COD"] not in quota.commands()
    [allocated] = quota.events("QuotaAllocated")
    assert allocated["request_id"] == "R2" and len(allocated["lots"]) == 5, "R2 from the oldest lots"
    left = quota.remaining()
    assert left[f"release:{'BIG00000'.ljust(LONGEST, 'x')}"] == 4_000_000 and sum(left.values()) == 4_000_000 + 10_000 + 3_195_000
    with quota.rt.db.sessions() as s:
        assert request_store.approvals_of(s, "P1") == {"environmental_impact"}, "the approval is recorded"
    assert max(len(json.dumps(d, ensure_ascii=False).encode()) for d in quota.outbox()) < MAX_EVENT_BYTES
    assert quota.replay_differences() == []


def test_a_ledger_answer_that_would_allocate_too_many_lots_is_applied_and_cancels(quota):
    """On the consumer's batch path: the ledger's TransferPending, the approval already in."""
    quota.lots(1, 4_000_000, date(2024, 2, 1), "BIG")
    quota.evaluate("P1")
    quota.request("R1", "P1", "400")
    quota.round()
    assert quota.approve("P1").json()["requests"] == [
        {"request_id": "R1", "state": "reserving", "outcome": "approval_remembered"}]
    quota.lots(TINY, 1_000, date(2020, 1, 1), "T")

    answer = quota.pending("R1", "P1", "400")
    env = new_envelope(answer, subject=answer.transfer_id, source="/countypool/ledger", event_id="pending-R1")
    quota.rt.consumer._apply([Rec(topics.LEDGER_EVENTS, 0, 0, b"k", env.to_json())])
    assert (quota.rt.consumer.stats.applied, quota.rt.consumer.stats.dead_lettered) == (1, 0)  # was event_too_large
    assert quota.state("R1") == ("cancelled", "too_many_lots")
    named = [(d["type"].split(".")[1], d["data"].get("reason")) for d in quota.outbox()
             if d["type"] in ("countypool.QuotaReserved.v1", "countypool.QuotaReservationCancelled.v1")]
    assert named == [("QuotaReserved", None), ("QuotaReservationCancelled", "too_many_lots")]
    assert quota.commands()[-1] == ["quota/void/R1/COD"] and not quota.events("QuotaAllocated")
    assert quota.replay_differences() == []


def test_the_round_foresees_the_lots_after_what_reservations_already_hold(quota):
    """Reservations held now are allocated from the first lots: a new request's allocation starts after them."""
    quota.lots(1, 1_000_000, date(2020, 1, 1), "OLD")  # 100 t, the first lot in FIFO
    quota.lots(TINY, 1_000, date(2024, 1, 1), "T")  # then 320 t in 3,200 lots
    quota.evaluate("P0")
    quota.evaluate("P1")
    quota.request("R0", "P0", "100")
    assert [d["outcome"] for d in quota.round()["decisions"]] == ["granted"]  # R0 holds the old lot's 100 t
    quota.request("R1", "P1", "310")  # 310 t: from the old lot it would be 1 + 2,100 lots; after R0, 3,100
    [decision] = quota.round()["decisions"]
    assert (decision["request_id"], decision["outcome"], decision["reason"]) == ("R1", "refused", "too_many_lots")

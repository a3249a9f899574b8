"""Review (Dec 01): ids that one service takes and hands on, and that another service further down the flow cannot take.

The four services run in process on real Kafka and PostgreSQL (a fresh database each, a consumer group of their own
starting at the topics' ends, as tests/integration/settlement/support.isolated_service sets them up). Each test
drives a flow through the services' own doors (HTTP), and asserts what the flow must end with, not how:

- a project that assessment admits (ProjectEvaluated admitted=true) may ask the pool for quota: either assessment
  refuses an id the pool will never take, or the pool takes the request;
- a release the pool takes in (a lot) whose quota is allocated ends up in settlement: the proceeds' compensation to
  the enterprise that freed it, and the buy-back the county owes it for the paid right, are in the statement.
"""
from __future__ import annotations

import random
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest

from shared.china_time import cst_date
from tests.integration.assessment.conftest import County
from shared.contracts import topics
from tests.integration.settlement.support import end_offsets, isolated_service
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, auth, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ECOLOGY = auth("dev-ecology-token")
OFFICE = auth("dev-settlement-admin-token")
NAMES = ("ledger", "quota", "settlement", "assessment")
_BOOTSTRAP: list[str] = []


@pytest.fixture(scope="module")
def services(pg_server_url, kafka_bootstrap):
    _BOOTSTRAP[:] = [kafka_bootstrap]
    with ExitStack() as stack:
        urls = {n: stack.enter_context(fresh_database(pg_server_url)) for n in NAMES}
        extra = {"ledger": {"expiry_interval_seconds": 0.5}, "quota": {"expiry_interval_seconds": 0.5}}
        yield {n: stack.enter_context(isolated_service(n, urls[n], kafka_bootstrap, **extra.get(n, {})))
               for n in NAMES}


def _county() -> County:
    return County(f"{random.randint(110000, 659999)}")


def _admit(a, county: County, project_id: str):
    """Ask assessment to admit a project that clears every threshold (10 亩, 2.5 亿 investment, 150 万 tax)."""
    return a.post("/v1/projects", headers=ADMIN, json={
        "project_id": project_id, "applicant_credit_code": county.code(1), "county_code": county.code_,
        "park_id": "P-A", "land": "10", "investment": "30000000.00", "expected_yearly_tax": "2000000.00",
        "energy_need": "0", "emission_needs": {"COD": "0.8"}, "industry_code": "C3311"})


def _known_to_quota(q, project_id: str) -> None:
    wait_for(lambda: q.get(f"/v1/projects/{project_id}/provenance", headers=ADMIN).status_code == 200, timeout=30,
             what=f"quota took ProjectEvaluated of {project_id}")


def _state(q, rid: str, want: str, timeout: float = 30) -> None:
    try:
        wait_for(lambda: q.get(f"/v1/requests/{rid}", headers=ADMIN).json().get("state") == want, timeout=timeout,
                 what=f"{rid} {want}")
    except AssertionError:
        raise AssertionError(f"{rid} not {want}: {q.get(f'/v1/requests/{rid}', headers=ADMIN).text}") from None


def _settlement_read_all_quota_published(services, timeout: float = 30) -> None:
    """Quota's outbox is on Kafka, and settlement's consumer is past the end quota's topic had then (whatever it
    made of those events: applied, or dead-lettered)."""
    from sqlalchemy import select

    quota_rt, (settlement_rt, _) = services["quota"][0], services["settlement"]
    wait_for(lambda: quota_rt.relay.backlog() == 0, timeout=timeout, what="quota's outbox published")
    ends = end_offsets(_BOOTSTRAP[0], [topics.QUOTA_EVENTS])
    positions = settlement_rt.tables["consumer_positions"]

    def caught_up() -> bool:
        with settlement_rt.db.sessions() as s:
            have = {(r.topic, r.partition): r.next_offset for r in s.execute(
                select(positions.c.topic, positions.c.partition, positions.c.next_offset)
                .where(positions.c.topic == topics.QUOTA_EVENTS))}
        return all(have.get(tp, 0) >= end for tp, end in ends.items())

    wait_for(caught_up, timeout=timeout, what="settlement read quota's events")


# -- 1. an admitted project's id --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["colon", "chinese", "long"])
def test_a_project_assessment_admits_can_request_quota_from_the_pool(services, shape):
    """Assessment takes any id without whitespace (``Identifier``) for a project and admits it; quota's POST
    /v1/requests takes only ``SafeId`` project ids (ASCII letters, digits, '._-', at most 100). An id such as
    'PRJ:320612:1', '园区项目-1' or one of 107 characters is
    admitted, announced, stored by quota as admitted, and then every request of it is refused 422: the admitted
    project can never receive quota. Correct: assessment refuses such an id when it is applied for, or the pool
    takes the request."""
    a, q = services["assessment"][1], services["quota"][1]
    county = _county()
    C = county.code_
    r = q.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={"prices": {"COD": "12000.00"}})
    assert r.status_code == 200, r.text
    project_id = {"colon": f"PRJ:{C}:1", "chinese": f"园区项目-{C}-1", "long": f"PRJ-{C}-" + "9" * 100}[shape]
    r = _admit(a, county, project_id)
    if r.status_code == 422:
        return  # refused where it enters, with its reason: nothing downstream is promised
    assert r.status_code == 201, r.text
    assert r.json()["admitted"] is True, r.text
    _known_to_quota(q, project_id)
    r = q.post("/v1/requests", headers=ADMIN, json={"request_id": f"Q{C}-{shape}", "project_id": project_id,
                                                    "county_code": C, "lines": [{"asset": "COD", "amount": "1"}]})
    assert r.status_code == 201, (f"assessment admitted {project_id!r} (ProjectEvaluated admitted=true), "
                                  f"but the pool refuses its request: {r.status_code} {r.text}")


# -- 2. a lot's id, from the department's release id ------------------------------------------------------------------

@pytest.mark.parametrize("release_id", ["REL-{C}-1", "通环收〔2024〕{C}号", "REL#{C}(1)"],
                         ids=["plain", "document-number", "punctuation"])
def test_an_allocated_lot_of_a_paid_release_reaches_settlement_whatever_its_release_id(services, release_id):
    """A department's release id is any text without whitespace (QuotaReleaseSubmitted.release_id,
    ``SourceIdentifier``, up to 150 characters), e.g. the document number of the buy-back. Quota takes it in as lot
    'release:<release id>', books it in the ledger, allocates it and publishes QuotaAllocated and BuybackOwed naming
    that lot. Settlement checks every lot id against ^[A-Za-z0-9][A-Za-z0-9_.:\\-/]*$ (domain/proceeds._check_id)
    and dead-letters both (invalid_id): the allocation's proceeds, the enterprise's compensation and the buy-back the
    county owes it never enter any statement."""
    a, q, s = services["assessment"][1], services["quota"][1], services["settlement"][1]
    county = _county()
    C = county.code_
    enterprise = county.code(3)
    rid = release_id.format(C=C)
    r = q.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={
        "prices": {"COD": "12000.00"}, "retire_share_bp": {"COD": 0}, "verification": "accept",
        "reservation_timeout_seconds": 3600})
    assert r.status_code == 200, r.text
    r = s.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
        "compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3})
    assert r.status_code == 200, r.text

    today = cst_date(datetime.now(timezone.utc))
    r = q.post("/v1/releases", headers=ECOLOGY, json={
        "release_id": rid, "enterprise_credit_code": enterprise, "township_code": county.township, "county_code": C,
        "asset": "COD", "amount": "10", "reason": "closure", "basis": "paid", "buyback_price_per_unit": "1000.00",
        "document_ref": "通环收〔2024〕1号", "released_on": (today - timedelta(days=1)).isoformat()})
    assert r.status_code in (200, 201) and r.json()["status"] == "accepted", r.text
    lot_id = r.json()["lot_id"]
    wait_for(lambda: {x["asset"]: x for x in q.get(f"/v1/counties/{C}/pool", headers=ADMIN).json()["assets"]}
             .get("COD", {}).get("available") == "10.0000", timeout=30, what="the lot booked by the ledger")

    project_id = f"PRJ-{C}-{abs(hash(rid)) % 1000}"
    r = _admit(a, county, project_id)
    assert r.status_code == 201 and r.json()["admitted"] is True, r.text
    _known_to_quota(q, project_id)
    request_id = f"Q{C}-{abs(hash(rid)) % 1000}"
    r = q.post("/v1/requests", headers=ADMIN, json={"request_id": request_id, "project_id": project_id,
                                                    "county_code": C, "lines": [{"asset": "COD", "amount": "2"}]})
    assert r.status_code == 201, r.text
    assert q.post(f"/v1/counties/{C}/rounds", headers=ADMIN).status_code == 201
    _state(q, request_id, "reserved")
    r = q.post("/v1/approvals", headers=ECOLOGY,
               json={"project_id": project_id, "kind": "environmental_impact", "granted_on": today.isoformat()})
    assert r.status_code == 200, r.text
    _state(q, request_id, "allocated")
    prov = q.get(f"/v1/projects/{project_id}/provenance", headers=ADMIN).json()
    (alloc,) = prov["allocations"]
    assert [c["lot_id"] for c in alloc["lots"]] == [lot_id] and alloc["amount_due"] == "24000.00", alloc

    _settlement_read_all_quota_published(services)
    month = today.strftime("%Y-%m")
    d = s.post(f"/v1/counties/{C}/periods/{month}/draft", headers=OFFICE)
    assert d.status_code == 200, d.text
    got = s.get(f"/v1/enterprises/{enterprise}/compensation", headers=OFFICE, params={"county": C}).json()
    assert {ln["kind"] for ln in got["lines"]} == {"compensation", "buyback"}, (
        f"lot {lot_id!r}: quota allocated it ({alloc['amount_due']} due) and owes a buy-back of 10000.00, but "
        f"settlement, having read every event quota published, pays the enterprise in {month}: {got}")
    by_kind = {ln["kind"]: ln["amount"] for ln in got["lines"]}
    # 30 % of the 24,000.00 the project pays, to the one enterprise whose lot it consumed; the whole right bought back
    assert by_kind == {"compensation": "7200.00", "buyback": "10000.00"}, got

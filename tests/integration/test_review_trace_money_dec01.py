"""Review (Dec 01): a county finance officer traces one exiting enterprise's money end to end.

The four services run in process on real Kafka and PostgreSQL (a fresh database each, a consumer group of their own
starting at the topics' ends: tests/integration/settlement/support.isolated_service), as
tests/integration/test_review_flows_dec01.py runs them. One small, realistic history is driven through the services'
own doors, once for the module:

- assessment (HTTP): enterprise E (township T1, in an ecological control zone) and two others are registered and
  reported; a run recommends closing E; the county confirms it and records the closure: EnterpriseExited;
- quota: the ecology bureau releases E's quota before the exit is known (held ``pending_verification``, the
  default policy): R1 10 t COD *paid* at 1,000.00/t (HTTP), R2 5.0003 t COD free and R3 1.2345 t NH3-N *paid*
  at 800.00/t (both on countypool.intake.quota); enterprise F (township T2) releases 3 t COD of upgrade savings
  (earns no compensation) dated earliest. The policy retires 10 % of COD (ceil) and prices COD at 12,345.67/t;
- projects P1 (4 t COD) then P2 (9 t COD) of park PK are admitted (assessment), request, are granted in a round
  and approved (环评): FIFO gives P1 F's lot 2.7 t and 1.3 t of R1, and P2 7.7 t of R1 and 1.3 t of R2;
- settlement (policy: 30 % compensation, rest 4:3:3) drafts and finalizes the month; the ledger posts the lines.

Figures computed by hand (fen; rounding as quota's provenance note and settlement's rounding rule 5 write them):

  lots          F: 3.0000, retired 0.3000 | R1: 10.0000, retired 1.0000 | R2: 5.0003, retired ceil(0.50003)=0.5001
                R3 (NH3N): 1.2345, retired 0
  P1 due        4 x 1,234,567 = 4,938,268: F's lot 3,333,331 (27000/40000, + the 1 fen remainder), R1 1,604,937
  P2 due        9 x 1,234,567 = 11,111,103: R1 9,506,166 (77000/90000, + remainder), R2 1,604,937
  compensation  P1: compensable floor(4,938,268 x 13000/40000) = 1,604,937 -> 30 % floor = 481,481 (4,814.81)
                P2: all of it E's: floor(11,111,103 x 0.3) = 3,333,330 (33,333.30)
  buy-backs     R1: 10 x 1,000.00 = 10,000.00 (the whole right, retired share included); R3: 1.2345 x 800 = 987.60
  E is owed     4,814.81 + 33,333.30 + 10,000.00 + 987.60 = 49,135.71
  COD pool      released 18.0003, retired 1.8001, allocated 13.0000, available 3.2002 (R2's remainder)
"""
from __future__ import annotations

import json
import random
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaProducer
from sqlalchemy import select

from services.quota.application.reconciliation import LedgerBalances
from shared.china_time import CST, cst_date
from shared.contracts import topics
from shared.contracts.quota import QuotaReleaseSubmitted
from tests.integration.assessment.conftest import County
from tests.integration.assessment.test_evaluation_api import BIG
from tests.integration.settlement.support import end_offsets, isolated_service, publish
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, auth, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ECOLOGY = auth("dev-ecology-token")
OFFICE = auth("dev-settlement-admin-token")
FINANCE = auth("dev-finance-token")
NAMES = ("ledger", "quota", "settlement", "assessment")
YEAR = 2023
ECOLOGY_SOURCE = "/departments/ecology"

# -- the hand-computed figures ---------------------------------------------------------------------------------------
P1_DUE, P2_DUE = "49382.68", "111111.03"
COMP_P1, COMP_P2 = "4814.81", "33333.30"
BUYBACK_R1, BUYBACK_R3 = "10000.00", "987.60"
E_OWED = "49135.71"


@dataclass
class Story:
    C: str
    E: str  # the exiting enterprise
    F: str  # the upgrading enterprise (no compensation)
    T1: str
    T2: str
    park: str
    P1: str
    P2: str
    Q1: str
    Q2: str
    R1: str
    R2: str
    R3: str
    RF: str
    month: str
    held_before_exit: dict = field(default_factory=dict)
    draft: dict = field(default_factory=dict)


_BOOT: list[str] = []


@pytest.fixture(scope="module")
def services(pg_server_url, kafka_bootstrap):
    _BOOT[:] = [kafka_bootstrap]
    with ExitStack() as stack:
        urls = {n: stack.enter_context(fresh_database(pg_server_url)) for n in NAMES}
        extra = {"ledger": {"expiry_interval_seconds": 0.5}, "quota": {"expiry_interval_seconds": 0.5}}
        svc = {n: stack.enter_context(isolated_service(n, urls[n], kafka_bootstrap, **extra.get(n, {}))) for n in NAMES}
        # quota reads the ledger's balances for its reconciliation: the ledger running beside it
        svc["quota"][1].app.state.ledger_balances = LedgerBalances("", "dev-admin-token", client=svc["ledger"][1])
        yield svc


# -- waiting ---------------------------------------------------------------------------------------------------------

def _caught_up(runtime, topic_names: list[str], timeout: float = 40) -> None:
    """The service's consumer is past the end the topics have now (whatever it made of what it read)."""
    ends = end_offsets(_BOOT[0], topic_names)
    positions = runtime.consumer.positions

    def done() -> bool:
        with runtime.db.sessions() as s:
            have = {(r.topic, r.partition): r.next_offset for r in s.execute(
                select(positions.c.topic, positions.c.partition, positions.c.next_offset)
                .where(positions.c.topic.in_(topic_names)))}
        return all(have.get(tp, 0) >= end for tp, end in ends.items())

    wait_for(done, timeout=timeout, what=f"{runtime.name} read {topic_names}")


def _published(runtime, timeout: float = 30) -> None:
    wait_for(lambda: runtime.relay.backlog() == 0, timeout=timeout, what=f"{runtime.name}'s outbox published")


def _settle(services) -> None:
    """Everything each service wrote is on Kafka and read by the services downstream of it."""
    a, q, l, s = (services[n][0] for n in ("assessment", "quota", "ledger", "settlement"))
    _published(a)
    _caught_up(q, [topics.ASSESSMENT_EVENTS])
    for _ in range(3):  # quota <-> ledger go back and forth
        _published(q)
        _caught_up(l, [topics.LEDGER_COMMANDS])
        _published(l)
        _caught_up(q, [topics.LEDGER_EVENTS])
    _published(q)
    _caught_up(s, [topics.QUOTA_EVENTS, topics.ASSESSMENT_EVENTS, topics.LEDGER_EVENTS])


def _request_state(q, rid: str, want: str, timeout: float = 40) -> None:
    try:
        wait_for(lambda: q.get(f"/v1/requests/{rid}", headers=ADMIN).json().get("state") == want, timeout=timeout,
                 what=f"{rid} {want}")
    except AssertionError:
        raise AssertionError(f"{rid} not {want}: {q.get(f'/v1/requests/{rid}', headers=ADMIN).text}") from None


# -- the history -----------------------------------------------------------------------------------------------------

def _assessment_exit(a, county: County, E: str, F: str, today) -> None:
    """E and F (and the future applicant) registered and reported; a run recommends closing E (ecological control
    zone); the county confirms and carries it out: EnterpriseExited."""
    entries = [(county.code(1), county.township, {"in_park": True, "park_id": f"P{county.code_}"}),
               (E, county.township, {"flags": ["ecological_control_zone"]}),
               (F, county.code_ + "102", {})]
    for code, township, extra in entries:
        r = a.post("/v1/enterprises", headers=ADMIN, json={"credit_code": code, "name": f"企业{code[-4:]}",
                                                           "township_code": township, "industry_code": "C3311", **extra})
        assert r.status_code == 201, r.text
        for department, part in (("tax", {k: v for k, v in BIG.items() if k in ("tax", "revenue", "value_added")}),
                                 ("ecology", {k: v for k, v in BIG.items() if k.startswith("emissions.")}),
                                 ("industry", {k: v for k, v in BIG.items()
                                               if k not in ("tax", "revenue", "value_added")
                                               and not k.startswith("emissions.")})):
            r = a.post("/v1/indicators", headers=ADMIN, json={"credit_code": code, "year": YEAR,
                                                              "department": department, "fields": part})
            assert r.status_code == 201, r.text
    r = a.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": YEAR})
    assert r.status_code == 201, r.text
    r = a.post("/v1/dispositions", headers=ADMIN, json={"credit_code": E, "year": YEAR, "decided_by": "县政府常务会议"})
    assert r.status_code == 201, r.text
    assert r.json()["decided"] == "close", r.text
    r = a.post(f"/v1/dispositions/{E}/{YEAR}/execution", headers=ADMIN,
               json={"effective_on": (today - timedelta(days=2)).isoformat(), "note": "关闭退出"})
    assert r.status_code == 201, r.text


def _release_body(st: Story, rid: str, who: str, township: str, asset: str, amount: str, reason: str, basis: str,
                  price: str | None, released_on) -> dict:
    body = {"release_id": rid, "enterprise_credit_code": who, "township_code": township, "county_code": st.C,
            "asset": asset, "amount": amount, "reason": reason, "basis": basis, "document_ref": f"通环收〔2024〕{rid[-2:]}号",
            "released_on": released_on.isoformat()}
    if price is not None:
        body["buyback_price_per_unit"] = price
    return body


def _intake_event(body: dict) -> QuotaReleaseSubmitted:
    return QuotaReleaseSubmitted(**body)


@pytest.fixture(scope="module")
def story(services) -> Story:
    a, q, s = services["assessment"][1], services["quota"][1], services["settlement"][1]
    county = County(f"{random.randint(110000, 659999)}")
    C = county.code_
    today = cst_date(datetime.now(timezone.utc))
    tag = uuid.uuid4().hex[:4]
    st = Story(C=C, E=county.code(3), F=county.code(4), T1=county.township, T2=C + "102", park=f"P{C}",
               P1=f"PRJ-{C}-1", P2=f"PRJ-{C}-2", Q1=f"Q-{C}-{tag}-1", Q2=f"Q-{C}-{tag}-2",
               R1=f"REL-{C}-{tag}-R1", R2=f"REL-{C}-{tag}-R2", R3=f"REL-{C}-{tag}-R3", RF=f"REL-{C}-{tag}-RF",
               month=today.strftime("%Y-%m"))
    r = q.put(f"/v1/counties/{C}/policy", headers=ADMIN, json={
        "prices": {"COD": "12345.67"}, "retire_share_bp": {"COD": 1000}, "reservation_timeout_seconds": 3600})
    assert r.status_code == 200, r.text
    r = s.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
        "compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3})
    assert r.status_code == 200, r.text

    # departments release before the exit is known: E's releases are held
    r = q.post("/v1/releases", headers=ECOLOGY, json=_release_body(
        st, st.RF, st.F, st.T2, "COD", "3", "upgrade_savings", "free", None, today - timedelta(days=20)))
    assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
    r = q.post("/v1/releases", headers=ECOLOGY, json=_release_body(
        st, st.R1, st.E, st.T1, "COD", "10", "closure", "paid", "1000.00", today - timedelta(days=10)))
    assert r.status_code == 201, r.text
    st.held_before_exit[st.R1] = r.json()["status"]
    for rid, asset, amount, basis, price, days in ((st.R2, "COD", "5.0003", "free", None, 5),
                                                   (st.R3, "NH3N", "1.2345", "paid", "800.00", 4)):
        body = _release_body(st, rid, st.E, st.T1, asset, amount, "closure", basis, price, today - timedelta(days=days))
        publish(_BOOT[0], topics.INTAKE_QUOTA, _intake_event(body), subject=rid, source=ECOLOGY_SOURCE)
    _caught_up(services["quota"][0], [topics.INTAKE_QUOTA])
    for rid in (st.R2, st.R3):
        st.held_before_exit[rid] = q.get(f"/v1/releases/{rid}", headers=ADMIN).json().get("status")

    # the exit, through assessment: the held releases enter the pool
    _assessment_exit(a, county, st.E, st.F, today)
    _settle(services)
    wait_for(lambda: all(q.get(f"/v1/releases/{rid}", headers=ADMIN).json().get("status") == "accepted"
                         for rid in (st.R1, st.R2, st.R3)), timeout=40, what="E's releases accepted after its exit")
    wait_for(lambda: {x["asset"]: x["available"] for x in q.get(f"/v1/counties/{C}/pool", headers=ADMIN).json()["assets"]}
             .get("COD") == "16.2002", timeout=40, what="every COD lot booked by the ledger")

    # two projects of park PK, one after the other
    for project, rid, amount in ((st.P1, st.Q1, "4"), (st.P2, st.Q2, "9")):
        r = a.post("/v1/projects", headers=ADMIN, json={
            "project_id": project, "applicant_credit_code": county.code(1), "county_code": C, "park_id": st.park,
            "land": "10", "investment": "30000000.00", "expected_yearly_tax": "2000000.00", "energy_need": "0",
            "emission_needs": {"COD": amount}, "industry_code": "C3311"})
        assert r.status_code == 201 and r.json()["admitted"] is True, r.text
        wait_for(lambda: q.get(f"/v1/projects/{project}/provenance", headers=ADMIN).status_code == 200, timeout=40,
                 what=f"quota took ProjectEvaluated of {project}")
        r = q.post("/v1/requests", headers=ADMIN, json={"request_id": rid, "project_id": project, "county_code": C,
                                                        "lines": [{"asset": "COD", "amount": amount}]})
        assert r.status_code == 201, r.text
        assert q.post(f"/v1/counties/{C}/rounds", headers=ADMIN).status_code == 201
        _request_state(q, rid, "reserved")
        r = q.post("/v1/approvals", headers=ECOLOGY, json={"project_id": project, "kind": "environmental_impact",
                                                           "granted_on": today.isoformat()})
        assert r.status_code == 200, r.text
        _request_state(q, rid, "allocated")
    _settle(services)

    d = s.post(f"/v1/counties/{C}/periods/{st.month}/draft", headers=OFFICE)
    assert d.status_code == 200, d.text
    st.draft = d.json()
    return st


def _compensation(s, st: Story) -> dict:
    r = s.get(f"/v1/enterprises/{st.E}/compensation", headers=FINANCE, params={"county": st.C})
    assert r.status_code == 200, r.text
    return r.json()


def _lines_of_e(doc: dict, period: str | None = None) -> list[tuple]:
    """E's lines in the month's statement (a quarter's draft, where there is one, shows them too)."""
    return sorted((ln["kind"], ln["allocation_id"], ln["amount"]) for ln in doc["lines"]
                  if period is None or ln["period"] == period)


def _expected_lines(st: Story) -> list[tuple]:
    return sorted([("compensation", f"{st.Q1}:COD", COMP_P1), ("compensation", f"{st.Q2}:COD", COMP_P2),
                   ("buyback", None, BUYBACK_R1), ("buyback", None, BUYBACK_R3)])


def _balance(l, account: str) -> str:
    r = l.get(f"/v1/accounts/{account}", headers=ADMIN)
    assert r.status_code == 200, f"{account}: {r.status_code} {r.text}"
    return r.json()["balance"]


# -- 1. quota: what E freed and where it went ------------------------------------------------------------------------

def test_releases_wait_for_the_exit_then_all_three_enter_the_pool(services, story):
    """Releases for a closure are held until assessment says the enterprise left, then taken in, whichever door the
    department used. Failing, a county would pool (and pay for) quota of an enterprise still producing, or never
    pool a closed one's."""
    q = services["quota"][1]
    assert story.held_before_exit == {story.R1: "pending_verification", story.R2: "pending_verification",
                                      story.R3: "pending_verification"}
    trail = q.get(f"/v1/enterprises/{story.E}/freed", headers=ADMIN).json()
    assert sorted((r["release_id"], r["status"], r["lot_id"], r["department"]) for r in trail["releases"]) == sorted(
        (rid, "accepted", f"release:{rid}", "ecology") for rid in (story.R1, story.R2, story.R3)), trail


def test_the_enterprise_trail_shows_each_lot_retired_share_and_the_projects_it_went_to(services, story):
    """GET /v1/enterprises/{E}/freed is what a county shows an enterprise asking where its quota went. Each lot's
    amount, retired share (ceil of 10 %), what remains and every project part with its money due must be the
    figures of the allocations, else the enterprise is compensated on a trail nobody can check."""
    q = services["quota"][1]
    trail = q.get(f"/v1/enterprises/{story.E}/freed", headers=ADMIN).json()
    lots = {lot["lot_id"]: lot for lot in trail["lots"]}
    L1, L2, L3 = (f"release:{r}" for r in (story.R1, story.R2, story.R3))
    assert {k: (v["asset"], v["amount"], v["retired"], v["remaining"]) for k, v in lots.items()} == {
        L1: ("COD", "10.0000", "1.0000", "0.0000"),
        L2: ("COD", "5.0003", "0.5001", "3.2002"),
        L3: ("NH3N", "1.2345", "0.0000", "1.2345")}, trail
    went = sorted((c["lot_id"], c["project_id"], c["amount"], c["amount_due"], c["earns_compensation"])
                  for lot in trail["lots"] for c in lot["went_to"])
    assert went == sorted([(L1, story.P1, "1.3000", "16049.37", True), (L1, story.P2, "7.7000", "95061.66", True),
                           (L2, story.P2, "1.3000", "16049.37", True)]), trail


def test_each_projects_provenance_matches_fifo_over_the_lots(services, story):
    """The projects' provenance (FIFO: F's older upgrade lot first) must list the same parts as the enterprise
    trail, and each allocation's due must be price x amount, its lots' dues summing to it to the fen."""
    q = services["quota"][1]
    got = {}
    for project in (story.P1, story.P2):
        prov = q.get(f"/v1/projects/{project}/provenance", headers=ADMIN).json()
        (alloc,) = prov["allocations"]
        got[project] = (alloc["amount"], alloc["price_per_unit"], alloc["amount_due"],
                        [(c["lot_id"], c["source_ref"], c["township_code"], c["amount"], c["amount_due"],
                          c["earns_compensation"]) for c in alloc["lots"]])
    L1, L2, LF = (f"release:{r}" for r in (story.R1, story.R2, story.RF))
    assert got == {
        story.P1: ("4.0000", "12345.67", P1_DUE, [(LF, story.F, story.T2, "2.7000", "33333.31", False),
                                                   (L1, story.E, story.T1, "1.3000", "16049.37", True)]),
        story.P2: ("9.0000", "12345.67", P2_DUE, [(L1, story.E, story.T1, "7.7000", "95061.66", True),
                                                   (L2, story.E, story.T1, "1.3000", "16049.37", True)])}


def test_pool_figures_are_the_sum_of_the_lots(services, story):
    """The pool the county plans with: released 18.0003, retired 1.8001, allocated 13, available 3.2002 COD;
    NH3-N 1.2345 untouched. A wrong figure here is quota promised twice or lost to the county."""
    q = services["quota"][1]
    pool = {x["asset"]: x for x in q.get(f"/v1/counties/{story.C}/pool", headers=ADMIN).json()["assets"]}
    cod, nh3n = pool["COD"], pool["NH3N"]
    assert (cod["released"], cod["retired"], cod["allocated"], cod["reserved"], cod["available"]) == (
        "18.0003", "1.8001", "13.0000", "0.0000", "3.2002"), pool
    assert (nh3n["released"], nh3n["retired"], nh3n["allocated"], nh3n["available"]) == (
        "1.2345", "0.0000", "0.0000", "1.2345"), pool


# -- 2. the ledger's quota accounts and quota's reconciliation -------------------------------------------------------

def test_ledger_pool_retired_and_project_accounts_equal_quotas_figures(services, story):
    """The book of record must hold what the pool says: pool COD 3.2002, retired 1.8001, P1 4, P2 9, pool NH3-N
    1.2345; the issuance account the negative of all released (this ledger serves only this module's county)."""
    l = services["ledger"][1]
    C = story.C
    got = {acc: _balance(l, acc) for acc in (
        f"county:{C}/pool/COD", f"county:{C}/retired/COD", f"project:{story.P1}/COD", f"project:{story.P2}/COD",
        f"county:{C}/pool/NH3N", "external:rights-register/COD", "external:rights-register/NH3N")}
    assert got == {f"county:{C}/pool/COD": "3.2002", f"county:{C}/retired/COD": "1.8001",
                   f"project:{story.P1}/COD": "4.0000", f"project:{story.P2}/COD": "9.0000",
                   f"county:{C}/pool/NH3N": "1.2345", "external:rights-register/COD": "-18.0003",
                   "external:rights-register/NH3N": "-1.2345"}, got


def test_quota_reconciliation_reports_no_difference(services, story):
    """Quota's reconciliation with the ledger is the alarm a county relies on: after the history settled it must
    read settled, with nothing in flight and no difference."""
    q = services["quota"][1]

    def reading():
        r = q.get(f"/v1/counties/{story.C}/reconciliation", headers=ADMIN)
        assert r.status_code == 200, r.text
        return r.json()

    rep = wait_for(lambda: (x := reading())["settled"] and x, timeout=30, what="a settled reconciliation")
    assert rep["agrees"] is True and rep["in_flight"] == 0 and rep["differences"] == [], rep
    r = q.post("/v1/reconciliation:run", headers=ADMIN)
    assert r.status_code == 200, r.text
    mine = [x for x in r.json() if x["county_code"] == story.C]
    assert mine and mine[0]["differences"] == [], mine


# -- 3. settlement: what E is owed -----------------------------------------------------------------------------------

def test_draft_compensation_of_the_enterprise_is_what_rule_5_says_to_the_fen(services, story):
    """30 % of each allocation's compensable due, pro rata to E's units (none for F's upgrade savings), plus the
    buy-back of both paid rights, whole: 4,814.81 + 33,333.30 + 10,000.00 + 987.60 = 49,135.71. Any other figure is
    the county under- or over-paying an exiting enterprise."""
    s = services["settlement"][1]
    got = _compensation(s, story)
    assert _lines_of_e(got, story.month) == _expected_lines(story), got
    assert got["draft_total"] == E_OWED, got


def test_each_compensation_line_traces_to_exactly_the_enterprises_lots(services, story):
    """Design: every line traced to the events behind it; compensation follows the lots. P1's line to E must cite
    only R1's lot (not F's upgrade lot it also consumed), P2's R1's and R2's, each buy-back its own lot; a finance
    officer follows these sources back to quota's trail."""
    s = services["settlement"][1]
    got = _compensation(s, story)
    L1, L2, L3 = (f"release:{r}" for r in (story.R1, story.R2, story.R3))
    traced = sorted((ln["kind"], ln["amount"], tuple(ln["sources"])) for ln in got["lines"] if ln["period"] == story.month)
    assert traced == sorted([
        ("compensation", COMP_P1, tuple(sorted((f"{story.Q1}:COD", L1)))),
        ("compensation", COMP_P2, tuple(sorted((f"{story.Q2}:COD", L1, L2)))),
        ("buyback", BUYBACK_R1, tuple(sorted((f"buyback:{L1}", L1)))),
        ("buyback", BUYBACK_R3, tuple(sorted((f"buyback:{L3}", L3))))]), got


def test_the_upgrading_enterprise_earns_no_compensation(services, story):
    """F stays (upgrade savings): the README says its lot earns no 腾退补偿. A line to F would pay an enterprise
    that never left."""
    s = services["settlement"][1]
    r = s.get(f"/v1/enterprises/{story.F}/compensation", headers=FINANCE, params={"county": story.C})
    assert r.status_code == 200, r.text
    assert r.json()["lines"] == [], r.json()


def test_each_projects_lines_sum_to_what_quota_says_it_owes(services, story):
    """Every line of an allocation has the project as payer, so its lines sum to quota's amount_due exactly;
    and the statement's nets sum to zero."""
    s = services["settlement"][1]
    doc = s.get(f"/v1/counties/{story.C}/periods/{story.month}/statement", headers=FINANCE,
                params={"limit": 1000}).json()
    totals = {t["party"]: t for t in doc["totals"]}
    assert totals[f"project:{story.P1}"]["net"] == f"-{P1_DUE}", totals
    assert totals[f"project:{story.P2}"]["net"] == f"-{P2_DUE}", totals
    from decimal import Decimal
    assert sum(Decimal(t["net"]) for t in doc["totals"]) == 0, doc["totals"]
    assert totals[f"enterprise:{story.E}"]["net"] == E_OWED, totals


def test_a_month_and_its_quarter_drafted_count_the_enterprise_once(services, story):
    """The README: an enterprise's ``draft_total`` counts each allocation or buy-back once, though a month and its
    quarter may both be drafted. Counted in both, the finance office reads twice what the enterprise is owed."""
    s = services["settlement"][1]
    y, m = map(int, story.month.split("-"))
    quarter = f"{y}-Q{(m - 1) // 3 + 1}"
    d = s.post(f"/v1/counties/{story.C}/periods/{quarter}/draft", headers=OFFICE)
    assert d.status_code == 200, d.text
    got = _compensation(s, story)
    assert got["draft_total"] == E_OWED, got
    q_lines = [ln for ln in got["lines"] if ln["period"] == quarter]
    assert sorted((ln["kind"], ln["allocation_id"], ln["amount"]) for ln in q_lines) == _expected_lines(story), got


# -- 4. events sent again ------------------------------------------------------------------------------------------

def _outbox_envelopes(rt, topic: str) -> list[dict]:
    out = rt.tables["outbox"]
    with rt.db.sessions() as s:
        rows = s.execute(out.select().where(out.c.topic == topic).order_by(out.c.position)).all()
    return [json.loads(r.envelope) for r in rows]


def _quota_envelopes(services, C: str) -> list[dict]:
    """Every event quota published about this county (its outbox: the event store)."""
    return [e for e in _outbox_envelopes(services["quota"][0], topics.QUOTA_EVENTS)
            if e["data"].get("county_code") == C]


def _resend(envs: list[dict], *, new_ids: bool, topic: str = topics.QUOTA_EVENTS) -> None:
    p = KafkaProducer(bootstrap_servers=_BOOT[0], acks="all")
    try:
        for env in envs:
            env = dict(env)
            if new_ids:
                env["id"] = str(uuid.uuid4())
            p.send(topic, key=env["subject"].encode(), value=json.dumps(env).encode())
        p.flush(30)
    finally:
        p.close()


@pytest.mark.parametrize("new_ids", [False, True], ids=["same-event-ids", "new-event-ids"])
def test_quota_events_sent_again_count_once(services, story, new_ids):
    """Quota's relay publishes at least once, and a quota restored from a backup re-derives its events under new
    ids (README, Backups): settlement keys them on allocation / lot / buy-back ids. Re-sent LotCreated, BuybackOwed
    and QuotaAllocated must leave the enterprise's compensation and the statement's hash as they were; counted
    twice, the county pays an exiting enterprise twice."""
    s = services["settlement"][1]
    envs = [e for e in _quota_envelopes(services, story.C)
            if e["type"].split(".")[1] in ("LotCreated", "BuybackOwed", "QuotaAllocated")]
    kinds = sorted(e["type"].split(".")[1] for e in envs)
    assert kinds.count("QuotaAllocated") == 2 and kinds.count("BuybackOwed") == 2, kinds
    _resend(envs, new_ids=new_ids)
    _caught_up(services["settlement"][0], [topics.QUOTA_EVENTS])
    d = s.post(f"/v1/counties/{story.C}/periods/{story.month}/draft", headers=OFFICE)
    assert d.status_code == 200, d.text
    got = _compensation(s, story)
    assert _lines_of_e(got, story.month) == _expected_lines(story), got
    assert got["draft_total"] == E_OWED, got
    assert d.json()["content_hash"] == story.draft["content_hash"], (d.json(), story.draft)


def test_intake_and_exit_sent_again_change_nothing(services, story):
    """A department re-sending its releases (new event ids, same release ids), over Kafka and HTTP, and assessment's
    EnterpriseExited again: no second lot, no second buy-back, the pool as it was."""
    q, s = services["quota"][1], services["settlement"][1]
    today = cst_date(datetime.now(timezone.utc))
    for rid, asset, amount, basis, price, days in ((story.R2, "COD", "5.0003", "free", None, 5),
                                                   (story.R3, "NH3N", "1.2345", "paid", "800.00", 4)):
        body = _release_body(story, rid, story.E, story.T1, asset, amount, "closure", basis, price,
                             today - timedelta(days=days))
        publish(_BOOT[0], topics.INTAKE_QUOTA, _intake_event(body), subject=rid, source=ECOLOGY_SOURCE)
    r = q.post("/v1/releases", headers=ECOLOGY, json=_release_body(
        story, story.R1, story.E, story.T1, "COD", "10", "closure", "paid", "1000.00", today - timedelta(days=10)))
    assert r.status_code == 200, r.text
    exits = [e for e in _outbox_envelopes(services["assessment"][0], topics.ASSESSMENT_EVENTS)
             if e["type"].split(".")[1] == "EnterpriseExited" and e["subject"] == story.E]
    assert len(exits) == 1, exits
    _resend(exits, new_ids=True, topic=topics.ASSESSMENT_EVENTS)
    _caught_up(services["quota"][0], [topics.INTAKE_QUOTA])
    _settle(services)
    pool = {x["asset"]: x for x in q.get(f"/v1/counties/{story.C}/pool", headers=ADMIN).json()["assets"]}
    assert (pool["COD"]["released"], pool["COD"]["available"], pool["NH3N"]["released"]) == (
        "18.0003", "3.2002", "1.2345"), pool
    assert len(q.get(f"/v1/enterprises/{story.E}/freed", headers=ADMIN).json()["lots"]) == 3
    got = _compensation(s, story)
    assert _lines_of_e(got, story.month) == _expected_lines(story), got


# -- 5. finalized: the ledger's CNY accounts ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finalized(services, story) -> dict:
    """The month finalized on the 1st of the next month (China time): the statement runs' clock is set there, the
    only way to close the month this history happened in."""
    s_rt, s = services["settlement"][0], services["settlement"][1]
    today = cst_date(datetime.now(timezone.utc))
    first_next = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    runs = s.app.state.statement_runs
    before = runs.now
    runs.now = lambda: datetime(first_next.year, first_next.month, first_next.day, 0, 30, tzinfo=CST)
    try:
        r = s.post(f"/v1/counties/{story.C}/periods/{story.month}/finalize", headers=OFFICE)
        assert r.status_code == 200, r.text
    finally:
        runs.now = before
    _published(s_rt)
    _caught_up(services["ledger"][0], [topics.LEDGER_COMMANDS])
    _published(services["ledger"][0])
    _caught_up(s_rt, [topics.LEDGER_EVENTS])
    def answered():
        d = s.get(f"/v1/counties/{story.C}/periods/{story.month}/statement", headers=FINANCE,
                  params={"limit": 1000}).json()
        p = d["postings"]
        return p["requested"] == 0 and p["posted"] + p["rejected"] == d["line_count"] and d

    try:
        doc = wait_for(answered, timeout=40, what="the ledger answered every posting")
    except AssertionError:
        d = s.get(f"/v1/counties/{story.C}/periods/{story.month}/statement", headers=FINANCE,
                  params={"limit": 1000}).json()
        raise AssertionError(f"postings never all answered: {d['postings']}; ledger transfers: "
                             f"{_ledger_transfers(services, story.C)}") from None
    return {"statement": doc, "first_next": first_next}


def _ledger_transfers(services, C: str) -> list:
    from sqlalchemy import text

    with services["ledger"][0].db.sessions() as s:
        return [tuple(r) for r in s.execute(text("select id, status from transfers where id like :p"),
                                            {"p": f"settlement:{C}:%"})]


def test_finalized_postings_are_all_accepted_by_the_ledger(services, story, finalized):
    """Every money line of the finalized month reaches the ledger as a posted transfer: a refused line is money the
    county decided and never booked."""
    p = finalized["statement"]["postings"]
    assert p["rejected"] == 0 and p["requested"] == 0 and p["posted"] == finalized["statement"]["line_count"], p


def test_finalized_compensation_equals_the_documents(services, story, finalized):
    """After finalization the enterprise's compensation reads final: 49,135.71, the same lines."""
    got = _compensation(services["settlement"][1], story)
    assert _lines_of_e(got, story.month) == _expected_lines(story), got
    assert got["finalized_total"] == E_OWED and all(ln["status"] == "finalized" for ln in got["lines"]), got


def test_ledger_cny_balances_equal_settlements_party_nets(services, story, finalized):
    """The enterprise's CNY account holds what it is owed (49,135.71), each project's what quota says it owes, and
    every party of the statement (county fund, townships, park) exactly its net: the ledger is the county's book,
    and a difference is money nobody can trace."""
    l = services["ledger"][1]
    totals = {t["party"]: t["net"] for t in finalized["statement"]["totals"]}
    assert totals[f"enterprise:{story.E}"] == E_OWED, totals
    got = {party: _balance(l, f"{party}/CNY") for party in totals}
    assert got == totals
    assert got[f"project:{story.P1}"] == f"-{P1_DUE}" and got[f"project:{story.P2}"] == f"-{P2_DUE}", got


def test_the_ledger_journal_verifies(services, story, finalized):
    """The journal's hash chain over everything this history booked verifies from its start."""
    r = services["ledger"][1].get("/v1/journal/verify", headers=ADMIN)
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["ok"] is True and v["first_broken_seq"] is None and v["checked"] > 0, v


@pytest.mark.parametrize("new_ids", [True], ids=["new-event-ids"])
def test_quota_events_sent_again_after_finalization_pay_nothing_twice(services, story, finalized, new_ids):
    """After the month closed, quota's events re-derived under new ids (a restored quota) reach settlement again. The
    next month must not owe the enterprise anything for them: its compensation stays 49,135.71 in all."""
    s = services["settlement"][1]
    envs = [e for e in _quota_envelopes(services, story.C)
            if e["type"].split(".")[1] in ("LotCreated", "BuybackOwed", "QuotaAllocated")]
    _resend(envs, new_ids=new_ids)
    _caught_up(services["settlement"][0], [topics.QUOTA_EVENTS])
    first_next = finalized["first_next"]
    runs = s.app.state.statement_runs
    before = runs.now
    runs.now = lambda: datetime(first_next.year, first_next.month, first_next.day, 1, 0, tzinfo=CST)
    try:
        d = s.post(f"/v1/counties/{story.C}/periods/{first_next.strftime('%Y-%m')}/draft", headers=OFFICE)
    finally:
        runs.now = before
    assert d.status_code == 200, d.text
    got = _compensation(s, story)
    assert _lines_of_e(got, story.month) == _expected_lines(story), got
    assert got["finalized_total"] == E_OWED and got["draft_total"] == "0.00", got


def test_the_enterprises_finalized_position_and_statement_lines_are_its_compensation(services, story, finalized):
    """The finance API's other doors to the same money: the enterprise's lines in the finalized statement
    (``?party=``) and its position across periods both say 49,135.71."""
    from decimal import Decimal

    s = services["settlement"][1]
    party = f"enterprise:{story.E}"
    doc = s.get(f"/v1/counties/{story.C}/periods/{story.month}/statement", headers=FINANCE,
                params={"party": party, "limit": 1000}).json()
    assert sum(Decimal(ln["amount"]) for ln in doc["lines"] if ln["payee"] == party) == Decimal(E_OWED), doc
    pos = s.get(f"/v1/counties/{story.C}/parties/{party}/position", headers=FINANCE).json()
    assert pos["finalized_net"] == E_OWED and pos["finalized_receivable"] == E_OWED, pos


def test_an_allocation_of_the_closed_month_arriving_after_finalization_is_owed_in_the_next(services, story, finalized):
    """Quota allocates 1 t more from E's lot (R2) in the month just finalized, and settlement receives it after the
    cut-off (an approval at 23:59 on the last day). It is settled by the next statement (README: facts of earlier
    months received after the previous finalization): 30 % of 12,345.67 = 3,703.70 to E, never lost, never twice."""
    a, q, s = services["assessment"][1], services["quota"][1], services["settlement"][1]
    C, today = story.C, cst_date(datetime.now(timezone.utc))
    county = County(C)
    P3, Q3 = f"PRJ-{C}-3", f"{story.Q1[:-2]}-3"
    r = a.post("/v1/projects", headers=ADMIN, json={
        "project_id": P3, "applicant_credit_code": county.code(1), "county_code": C, "park_id": story.park,
        "land": "10", "investment": "30000000.00", "expected_yearly_tax": "2000000.00", "energy_need": "0",
        "emission_needs": {"COD": "1"}, "industry_code": "C3311"})
    assert r.status_code == 201 and r.json()["admitted"] is True, r.text
    wait_for(lambda: q.get(f"/v1/projects/{P3}/provenance", headers=ADMIN).status_code == 200, timeout=40,
             what=f"quota took ProjectEvaluated of {P3}")
    r = q.post("/v1/requests", headers=ADMIN, json={"request_id": Q3, "project_id": P3, "county_code": C,
                                                    "lines": [{"asset": "COD", "amount": "1"}]})
    assert r.status_code == 201, r.text
    assert q.post(f"/v1/counties/{C}/rounds", headers=ADMIN).status_code == 201
    _request_state(q, Q3, "reserved")
    r = q.post("/v1/approvals", headers=ECOLOGY, json={"project_id": P3, "kind": "environmental_impact",
                                                       "granted_on": today.isoformat()})
    assert r.status_code == 200, r.text
    _request_state(q, Q3, "allocated")
    _settle(services)
    (alloc,) = q.get(f"/v1/projects/{P3}/provenance", headers=ADMIN).json()["allocations"]
    assert (alloc["amount_due"], [c["lot_id"] for c in alloc["lots"]]) == ("12345.67", [f"release:{story.R2}"]), alloc

    first_next = finalized["first_next"]
    runs = s.app.state.statement_runs
    before = runs.now
    runs.now = lambda: datetime(first_next.year, first_next.month, first_next.day, 2, 0, tzinfo=CST)
    try:
        d = s.post(f"/v1/counties/{C}/periods/{first_next.strftime('%Y-%m')}/draft", headers=OFFICE)
    finally:
        runs.now = before
    assert d.status_code == 200, d.text
    got = _compensation(s, story)
    late = [(ln["kind"], ln["allocation_id"], ln["amount"], ln["period"]) for ln in got["lines"]
            if ln["status"] != "finalized"]
    assert late == [("compensation", f"{Q3}:COD", "3703.70", first_next.strftime("%Y-%m"))], got
    assert got["finalized_total"] == E_OWED and got["draft_total"] == "3703.70", got
    rec = wait_for(lambda: (x := q.get(f"/v1/counties/{C}/reconciliation", headers=ADMIN).json())["settled"] and x,
                   timeout=30, what="a settled reconciliation")
    assert rec["differences"] == [], rec


def test_a_quarter_drafted_after_its_month_closed_owes_the_enterprise_nothing_twice(services, story, finalized):
    """Once the month is finalized, the quarter holding it may still be drafted (or is refused). Either way the
    enterprise must not be shown as owed again what the finalized month settled: its ``draft_total`` is what no
    finalized statement paid yet (only the late allocation's 3,703.70, if that test ran, else nothing)."""
    s = services["settlement"][1]
    y, m = map(int, story.month.split("-"))
    quarter = f"{y}-Q{(m - 1) // 3 + 1}"
    first_next = finalized["first_next"]
    runs = s.app.state.statement_runs
    before = runs.now
    runs.now = lambda: datetime(first_next.year, first_next.month, first_next.day, 3, 0, tzinfo=CST)
    try:
        d = s.post(f"/v1/counties/{story.C}/periods/{quarter}/draft", headers=OFFICE)
    finally:
        runs.now = before
    assert d.status_code in (200, 409, 422), d.text
    got = _compensation(s, story)
    settled = {(ln["kind"], ln["allocation_id"], tuple(ln["sources"])) for ln in got["lines"]
               if ln["status"] == "finalized"}
    again = [ln for ln in got["lines"] if ln["status"] != "finalized"
             and (ln["kind"], ln["allocation_id"], tuple(ln["sources"])) in settled]
    assert again == [], (d.status_code, d.json(), got)
    assert got["draft_total"] in ("0.00", "3703.70"), got

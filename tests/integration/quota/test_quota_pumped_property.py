"""Property: after any sequence of releases, requests, rounds, approvals and cancels, with the ledger's
commands and answers delivered late and interleaved, the pool agrees with the REAL ledger's books
(reconciliation shows no difference), every allocated unit traces back to a lot, and the pool's
figures add up. Both services run in-process on SQLite; messages are carried between their outboxes by
hand (no Kafka), which lets Hypothesis choose when each one arrives."""
from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

import services.ledger.main as ledger_main
import services.quota.main as quota_main
from services.quota.application.reconciliation import LedgerBalances
from services.quota.application.tx import Tx
from services.quota.application.assessment_facts import project_evaluated
from services.quota.handlers import bus as quota_bus
from shared.consumer import MessageContext
from shared.contracts import topics
from shared.contracts.assessment import ProjectEvaluated
from shared.envelope import decode
from shared.settings import load_settings
from tests.integration.quota.harness import credit_code
from tests.support.services import ADMIN, TOKENS, auth

COUNTY = "320999"
PROJECTS = [f"PP-{c}" for c in "ABCD"]
APPROVAL = {"environmental_impact": auth("dev-ecology-token"), "energy_review": auth("dev-development-reform-token")}


class Pumped:
    def __init__(self, root: Path):
        common = dict(auth_tokens_file=TOKENS, kafka_bootstrap_servers="127.0.0.1:1")
        self.q_rt, q_app = quota_main.build(load_settings("quota", quota_main.QuotaSettings,
                                                          database_url=f"sqlite:///{root / 'q.sqlite3'}", **common))
        self.l_rt, l_app = ledger_main.build(load_settings("ledger", ledger_main.LedgerSettings,
                                                           database_url=f"sqlite:///{root / 'l.sqlite3'}", **common))
        self.q_rt.migrate()
        self.l_rt.migrate()
        self.quota, self.ledger = TestClient(q_app), TestClient(l_app)
        q_app.state.ledger_balances = LedgerBalances("", "dev-admin-token", client=self.ledger)
        self.ledger_handler = self.l_rt.consumer.handler
        self.requests: list[str] = []
        self.carried: dict[str, int] = {}  # topic -> position of the last row delivered
        for i, pid in enumerate(PROJECTS):
            ev = ProjectEvaluated(project_id=pid, applicant_credit_code=credit_code(COUNTY, 900 + i), county_code=COUNTY,
                                  park_id="park", admitted=True, land="1", investment_per_mu="1", tax_per_mu="1",
                                  project_class="ABCD"[i], policy_hash="h")
            self.q_rt.transaction(lambda uow: project_evaluated(Tx.of_uow(uow), ev))

    def _carry(self, src, topic: str, dst, handler, handled: set[str], limit: int) -> int:
        """Deliver up to `limit` of src's rows for the topic after the last one carried (SQLite commits in
        position order, so nothing lands behind that place)."""
        out = src.tables["outbox"]
        with src.db.sessions() as s:
            rows = s.execute(select(out.c.position, out.c.envelope).where(
                (out.c.position > self.carried.get(topic, 0)) & (out.c.topic == topic))
                .order_by(out.c.position).limit(limit)).all()
        for row in rows:
            env, ev = decode(row.envelope)
            if env.event_name in handled:
                dst.transaction(lambda uow: handler(MessageContext(uow.session, env, ev, dst.outbox, topic, 0, 0)))
            self.carried[topic] = row.position
        return len(rows)

    def to_ledger(self, n: int) -> int:
        return self._carry(self.q_rt, topics.LEDGER_COMMANDS, self.l_rt, self.ledger_handler, {"TransfersRequested"}, n)

    def to_quota(self, n: int) -> int:
        return self._carry(self.l_rt, topics.LEDGER_EVENTS, self.q_rt, quota_bus, quota_bus.handled_types, n)

    def settle(self) -> None:
        while self.to_ledger(1000) + self.to_quota(1000):
            pass

    def close(self) -> None:
        self.q_rt.db.dispose()
        self.l_rt.db.dispose()


units = st.integers(min_value=1, max_value=40_000)
release = st.tuples(st.just("release"), st.sampled_from(["COD", "ENERGY"]), units)
request = st.tuples(st.just("request"), st.integers(0, 3), st.integers(0, 12_000), st.integers(0, 8_000))
# what may happen between a round and the next: deliveries in any amount, approvals (before or after the
# ledger's answer), cancels, more releases
meanwhile = st.one_of(
    st.tuples(st.just("to_ledger"), st.integers(1, 4)),
    st.tuples(st.just("to_quota"), st.integers(1, 6)),
    st.tuples(st.just("settle")),
    st.tuples(st.just("approve"), st.integers(0, 3), st.sampled_from(sorted(APPROVAL))),
    st.tuples(st.just("approve_all"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    release,
)


@st.composite
def scenarios(draw):
    """Releases, then a few allocation rounds, each after some requests and followed by whatever may
    happen meanwhile: a structure that lets whole sagas run, with Hypothesis choosing the timing."""
    steps = draw(st.lists(release, min_size=1, max_size=6))
    if draw(st.sampled_from([True, True, True, False])):  # mostly booked before the first round
        steps.append(("settle",))
    for _ in range(draw(st.integers(1, 3))):
        steps += draw(st.lists(request, min_size=1, max_size=4))
        steps.append(("round",))
        steps += draw(st.lists(meanwhile, max_size=8))
        if draw(st.booleans()):
            steps += [("settle",), ("approve_all", draw(st.integers(0, 3)), draw(st.booleans())), ("settle",)]
    return steps


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_scenario_reconciles_with_the_ledger(steps):
    with tempfile.TemporaryDirectory() as d:
        p = Pumped(Path(d))
        try:
            _run(p, steps)
        finally:
            p.close()


def _run(p: Pumped, steps) -> None:
    q = p.quota
    assert q.put(f"/v1/counties/{COUNTY}/policy", headers=ADMIN, json={
        "verification": "accept", "prices": {"COD": "9999.99", "ENERGY": "333.33"},
        "retire_share_bp": {"COD": 3333, "ENERGY": 0}}).status_code == 200
    released = {"COD": 0, "ENERGY": 0}
    for n, step in enumerate(steps):
        kind = step[0]
        if kind == "release":
            scale = 4 if step[1] == "COD" else 3
            amount = str(Decimal(step[2]).scaleb(-scale))
            token = "dev-ecology-token" if step[1] == "COD" else "dev-development-reform-token"
            r = q.post("/v1/releases", headers=auth(token), json=dict(
                release_id=f"R{n}", enterprise_credit_code=credit_code(COUNTY, n), township_code=f"{COUNTY}100",
                county_code=COUNTY, asset=step[1], amount=amount, reason="closure", basis="free",
                document_ref="d", released_on="2024-01-01"))
            assert r.status_code == 201, r.text
            released[step[1]] += step[2]
        elif kind == "request":
            lines = [l for l in ({"asset": "COD", "amount": str(Decimal(step[2]).scaleb(-4))},
                                 {"asset": "ENERGY", "amount": str(Decimal(step[3]).scaleb(-3))}) if Decimal(l["amount"])]
            if lines:
                r = q.post("/v1/requests", headers=ADMIN, json=dict(request_id=f"Q{n}", project_id=PROJECTS[step[1]],
                                                                    county_code=COUNTY, lines=lines))
                assert r.status_code == 201, r.text
                p.requests.append(f"Q{n}")
        elif kind == "round":
            assert q.post(f"/v1/counties/{COUNTY}/rounds", headers=ADMIN).status_code == 201
        elif kind == "approve":
            r = q.post("/v1/approvals", headers=APPROVAL[step[2]],
                       json={"project_id": PROJECTS[step[1]], "kind": step[2], "granted_on": "2024-02-01"})
            assert r.status_code == 200, r.text
        elif kind == "approve_all":
            for k in sorted(APPROVAL, reverse=step[2]):
                assert q.post("/v1/approvals", headers=APPROVAL[k], json={
                    "project_id": PROJECTS[step[1]], "kind": k, "granted_on": "2024-02-01"}).status_code == 200
        elif kind == "cancel" and p.requests:
            rid = p.requests[step[1] % len(p.requests)]
            assert q.post(f"/v1/requests/{rid}/cancel", headers=ADMIN).status_code in (200, 409)
        elif kind == "to_ledger":
            p.to_ledger(step[1])
        elif kind == "to_quota":
            p.to_quota(step[1])
        elif kind == "settle":
            p.settle()
    p.settle()

    rep = q.get(f"/v1/counties/{COUNTY}/reconciliation", headers=ADMIN).json()
    assert rep["agrees"] and rep["in_flight"] == 0, rep
    pool = {a["asset"]: a for a in q.get(f"/v1/counties/{COUNTY}/pool", headers=ADMIN).json()["assets"]}
    for asset, scale in (("COD", 4), ("ENERGY", 3)):
        f = pool[asset]
        assert Decimal(f["released"]) == Decimal(released[asset]).scaleb(-scale)
        assert Decimal(f["released"]) == sum(Decimal(f[k]) for k in ("retired", "allocated", "reserved", "available"))
        assert Decimal(f["available"]) >= 0
    states = {rid: q.get(f"/v1/requests/{rid}", headers=ADMIN).json()["state"] for rid in p.requests}
    assert "reserving" not in states.values(), states
    for pid in PROJECTS:
        prov = q.get(f"/v1/projects/{pid}/provenance", headers=ADMIN).json()
        for a in prov["allocations"]:
            assert states[a["request_id"]] == "allocated"
            assert sum(Decimal(c["amount"]) for c in a["lots"]) == Decimal(a["amount"])
            assert sum(Decimal(c["amount_due"]) for c in a["lots"]) == Decimal(a["amount_due"])

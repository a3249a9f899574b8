"""Review (dec01): the outcome of consuming a sequence of Kafka messages must not depend on how Kafka cut them into
polls. The same records, in the order the consumer would see them, are handed to the real consumer's ``_apply`` all
in one poll, one per poll, and in other cuts, each cut on a fresh PostgreSQL database; the final state, the dead
letters (reason per message) and the emitted events must be the same."""
from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
from sqlalchemy import select

import services.assessment.main as assessment_main
from services.quota.domain.policy import PoolPolicy
from services.quota.storage import tables as QT
from services.quota.storage.counties import save_policy
from services.assessment.storage import tables as AT
from shared.contracts.assessment import EnterpriseExited, EnterpriseReported, IndicatorsReported
from shared.contracts.ledger import TransferPosted
from shared.contracts.quota import QuotaReleaseSubmitted, ReclamationAccepted
from shared.settings import load_settings
from tests.integration.quota.harness import credit_code, new_county
from tests.integration.quota.test_quota_batch import ECOLOGY, ENERGY, LAND, NOW, Poll, quota
from tests.integration.quota.test_quota_batch import rows as quota_table_rows
from tests.support.pg import fresh_database
from tests.support.services import TOKENS
from tests.unit.assessment.factories import code as make_code

pytestmark = pytest.mark.usefixtures("kafka_bootstrap")

CLOCK = {"received_at", "decided_at", "created_at", "asked_at", "answered_at", "updated_at", "recorded_at",
         "processed_at", "registered_at"}


def _capture_dead_letters(consumer) -> list[tuple[str, str]]:
    """(Kafka key, reason) of every dead letter, in order (the letters are built and sent by the consumer's own
    code; only the send to Kafka is replaced, so a cut's letters can be compared with another's)."""
    got: list[tuple[str, str]] = []

    def send(dead):
        got.extend(((d.record.key or b"").decode(), d.reason) for d in dead)

    consumer._send_dead_letters = send
    return got


def cuts_of(n: int) -> dict[str, list[list[int]]]:
    idx = list(range(n))
    return {"one poll": [idx], "one per poll": [[i] for i in idx],
            "pairs": [idx[i:i + 2] for i in range(0, n, 2)],
            "first alone": [idx[:1], idx[1:]] if n > 1 else [idx],
            "last alone": [idx[:-1], idx[-1:]] if n > 1 else [idx]}


# -- quota ----------------------------------------------------------------------------------------------------------
def quota_events(rt) -> tuple[list[tuple], list[str]]:
    """(every event but the ledger commands, in outbox order, with its cause; the transfer ids commanded, in order)."""
    out = QT.messaging["outbox"]
    with rt.db.sessions() as s:
        docs = [json.loads(r.envelope) for r in s.execute(select(out.c.envelope).order_by(out.c.position))]
    plain = [(d["type"], d["subject"], d["data"], d.get("causationid")) for d in docs
             if d["type"] != "countypool.TransfersRequested.v1"]
    commanded = [t["transfer_id"] for d in docs if d["type"] == "countypool.TransfersRequested.v1"
                 for t in d["data"]["transfers"]]
    return plain, commanded


def run_quota_cuts(pg_server_url, kafka_bootstrap, setup, records, cuts=None) -> dict[str, dict]:
    results = {}
    for name, cut in (cuts or cuts_of(len(records))).items():
        with fresh_database(pg_server_url) as url:
            rt = quota(url, kafka_bootstrap, batch=True)
            try:
                dead = _capture_dead_letters(rt.consumer)
                setup(rt)
                for poll in cut:
                    rt.consumer._apply(sorted((records[i] for i in poll),
                                              key=lambda r: (r.topic, r.partition, r.offset)))
                plain, commanded = quota_events(rt)
                results[name] = {"rows": quota_table_rows(rt), "dead": sorted(dead), "events": plain,
                                 "commanded": sorted(commanded)}
            finally:
                rt.db.dispose()
    return results


def assert_same(results: dict[str, dict]) -> None:
    base_name, base = next(iter(results.items()))
    for name, got in results.items():
        for part in base:
            assert got[part] == base[part], f"{part}: {name!r} differs from {base_name!r}"


def release(county: str, rid: str, asset: str = "COD", amount: str = "10", serial: int = 1, **extra):
    fields = dict(release_id=rid, enterprise_credit_code=credit_code(county, serial), township_code=f"{county}100",
                  county_code=county, asset=asset, amount=amount, reason="closure", basis="free",
                  document_ref="通环收〔2024〕1号", released_on=date(2024, 2, 1))
    fields.update(extra)
    return QuotaReleaseSubmitted(**fields)


def test_quota_release_repeats_and_corrections_do_not_depend_on_the_poll_cut(pg_server_url, kafka_bootstrap):
    run = uuid.uuid4().hex[:6]
    a, b = new_county(), new_county()

    def setup(rt):
        with rt.unit_of_work() as uow:
            save_policy(uow.session, PoolPolicy(b, verification="accept"), "test", NOW)

    p = Poll(run)
    p.event(release(a, f"A1{run}", serial=1), ECOLOGY, "a1")
    p.event(release(a, f"A1{run}", serial=1, amount="11"), ECOLOGY, "a1-other")
    p.event(release(a, f"A2{run}", serial=2, township_code=f"{b}100"), ECOLOGY, "a2-bad")
    p.event(release(a, f"A2{run}", serial=2), ECOLOGY, "a2-fixed")
    p.event(release(b, f"B1{run}", serial=3), ECOLOGY, "b1", partition=1)
    p.event(release(b, f"B1{run}", serial=3), ECOLOGY, "b1-again", partition=1)
    results = run_quota_cuts(pg_server_url, kafka_bootstrap, setup, p.sorted())
    assert_same(results)
    got = results["one poll"]
    assert got["dead"] == [(p.key("a1-other"), "release_id_reused"), (p.key("a2-bad"), "township_not_in_county")]
    assert len(got["rows"]["releases"]) == 3


# -- assessment -----------------------------------------------------------------------------------------------------
INDUSTRY, TAX, STATS = "/departments/industry", "/departments/tax", "/departments/statistics"


def assessment(url: str, bootstrap: str):
    rt, _ = assessment_main.build(load_settings("assessment", assessment_main.AssessmentSettings, database_url=url,
                                                kafka_bootstrap_servers=bootstrap, auth_tokens_file=TOKENS))
    rt.migrate()
    return rt


def assessment_rows(rt) -> dict:
    out = {}
    with rt.db.sessions() as s:
        for t in (AT.enterprises, AT.indicator_parts, AT.indicators):
            cols = [c for c in t.c if c.name not in CLOCK]
            out[t.name] = sorted(tuple(map(str, r)) for r in s.execute(select(*cols)))
        inbox = AT.messaging["inbox"]
        out["inbox"] = sorted((r.event_id, r.outcome) for r in s.execute(select(inbox.c.event_id, inbox.c.outcome)))
    return out


def assessment_events(rt) -> list[tuple]:
    out = AT.messaging["outbox"]
    with rt.db.sessions() as s:
        docs = [json.loads(r.envelope) for r in s.execute(select(out.c.envelope).order_by(out.c.position))]
    return [(d["type"], d["subject"], d["data"], d.get("causationid")) for d in docs]


def run_assessment_cuts(pg_server_url, kafka_bootstrap, records, cuts=None) -> dict[str, dict]:
    results = {}
    for name, cut in (cuts or cuts_of(len(records))).items():
        with fresh_database(pg_server_url) as url:
            rt = assessment(url, kafka_bootstrap)
            try:
                dead = _capture_dead_letters(rt.consumer)
                for poll in cut:
                    rt.consumer._apply(sorted((records[i] for i in poll),
                                              key=lambda r: (r.topic, r.partition, r.offset)))
                results[name] = {"rows": assessment_rows(rt), "dead": sorted(dead),
                                 "events": assessment_events(rt)}
            finally:
                rt.db.dispose()
    return results


class APoll(Poll):
    def event(self, ev, source: str, name: str, partition: int = 0, event_id: str | None = None) -> None:
        from shared.contracts import topics
        from shared.envelope import new_envelope
        eid = event_id or f"{self.run}-{name}"
        self.raw(topics.INTAKE_ASSESSMENT, partition, name,
                 new_envelope(ev, subject=ev.credit_code, source=source, event_id=eid).to_json())


def test_assessment_registration_figures_and_conflicts_do_not_depend_on_the_poll_cut(pg_server_url, kafka_bootstrap):
    run = uuid.uuid4().hex[:6]
    county = "320612"
    c1, c2 = make_code(1, county), make_code(2, county)
    p = APoll(run)
    p.event(IndicatorsReported(credit_code=c1, year=2023, department="tax", fields={"tax": "100"}), TAX, "early")
    p.event(EnterpriseReported(credit_code=c1, name="企业1", township_code=county + "101", industry_code="C3311"),
            INDUSTRY, "reg1")
    p.event(IndicatorsReported(credit_code=c1, year=2023, department="tax", fields={"tax": "100", "land": "2"}), TAX, "t1")
    p.event(IndicatorsReported(credit_code=c1, year=2023, department="industry", fields={"land": "3"}), INDUSTRY, "i1")
    p.event(IndicatorsReported(credit_code=c1, year=2023, department="industry", fields={"land": "2", "revenue": "5"}),
            INDUSTRY, "i2")
    p.event(EnterpriseReported(credit_code=c1, name="企业1改", township_code=county + "101", industry_code="C3312"), INDUSTRY, "reg1b")
    p.event(EnterpriseReported(credit_code=c2, name="企业2", township_code=county + "101", industry_code="C3311"),
            INDUSTRY, "reg2")
    results = run_assessment_cuts(pg_server_url, kafka_bootstrap, p.sorted())
    assert_same(results)
    got = results["one poll"]
    assert got["dead"] == [(p.key("early"), "enterprise_not_registered"), (p.key("i1"), "conflicting_departments")]
    assert len(got["rows"]["enterprises"]) == 2 and len(got["rows"]["indicator_parts"]) == 2


def test_quota_exit_stored_id_reuse_and_ledger_answers_do_not_depend_on_the_poll_cut(pg_server_url, kafka_bootstrap):
    run = uuid.uuid4().hex[:6]
    a, b = new_county(), new_county()

    def setup(rt):
        with rt.unit_of_work() as uow:
            save_policy(uow.session, PoolPolicy(b, verification="accept", retire_share_bp={"COD": 2500}), "test", NOW)
        first = Poll(run + "p")
        first.event(release(b, f"R0{run}", amount="8"), ECOLOGY, "r0", event_id=f"{run}-r0")
        rt.consumer._apply(first.sorted())

    p = Poll(run)
    p.event(EnterpriseExited(credit_code=credit_code(a, 2), county_code=a, township_code=f"{a}100",
                             effective_on=date(2024, 1, 31)), "/countypool/assessment", "exited")
    p.event(release(a, f"A1{run}", serial=1), ECOLOGY, "a1")
    p.event(release(a, f"A2{run}", serial=2), ECOLOGY, "a2")
    p.event(release(b, f"R0{run}", amount="9"), ECOLOGY, "r0-other")
    p.event(release(b, f"R0{run}", amount="8"), ECOLOGY, "r0-again")
    p.event(ReclamationAccepted(project_id=f"RC{run}-none", accepted_on=date(2024, 5, 1)), LAND, "rc-unknown")
    p.event(release(b, f"B1{run}", "ENERGY", "12.345", basis="paid", buyback_price_per_unit="800.00"), ENERGY, "b1")
    p.event(release(a, f"A3{run}", "NOX", "5", serial=3, reason="upgrade_savings"), ECOLOGY, "a3", partition=1)
    for tid in (f"quota/intake/release:R0{run}", f"quota/retire/release:R0{run}", f"quota/intake/release:B1{run}"):
        p.event(TransferPosted(transfer_id=tid, debit_account="d", credit_account="c", asset="COD", amount="1",
                               code="x", at=NOW), "/countypool/ledger", tid.replace("/", "-"))
    results = run_quota_cuts(pg_server_url, kafka_bootstrap, setup, p.sorted())
    assert_same(results)
    got = results["one poll"]
    assert got["dead"] == [(p.key("r0-other"), "release_id_reused"), (p.key("rc-unknown"), "reclamation_project_unknown")]
    status = {r[0]: (r[-3], r[-2]) for r in got["rows"]["releases"]}
    assert status[f"A2{run}"] == ("accepted", "exit_known") and status[f"A1{run}"][0] == "pending_verification"


def test_quota_batch_path_survives_a_release_reusing_a_stored_id_with_another_body(pg_server_url, kafka_bootstrap,
                                                                                  caplog):
    """Side finding: intake_batch.submit_releases calls release_differences on a row of intake_store.release_rows,
    which holds only (release_id, digest, status, status_reason): AttributeError, so the whole poll falls back to one
    message at a time (same outcome, but the batch path is lost for every poll holding such a repeat)."""
    run = uuid.uuid4().hex[:6]
    b = new_county()
    with fresh_database(pg_server_url) as url:
        rt = quota(url, kafka_bootstrap, batch=True)
        try:
            dead = _capture_dead_letters(rt.consumer)
            with rt.unit_of_work() as uow:
                save_policy(uow.session, PoolPolicy(b, verification="accept"), "test", NOW)
            first = Poll(run + "p")
            first.event(release(b, f"R0{run}", amount="8"), ECOLOGY, "r0")
            rt.consumer._apply(first.sorted())
            p = Poll(run)
            p.event(release(b, f"R0{run}", amount="9"), ECOLOGY, "r0-other")
            p.event(release(b, f"R1{run}", amount="1", serial=2), ECOLOGY, "r1")
            caplog.clear()
            rt.consumer._apply(p.sorted())
            assert dead == [(p.key("r0-other"), "release_id_reused")]
            assert not [r for r in caplog.records if "batch handler failed" in r.getMessage()], \
                [r.getMessage() for r in caplog.records if "batch handler failed" in r.getMessage()]
        finally:
            rt.db.dispose()

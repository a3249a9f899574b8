"""Review (dec01): replays that must agree with the live state after realistic histories driven through the
services' real APIs, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.assessment.replay import AssessmentProjection, rebuild as rebuild_assessment
from shared.replay import replay
from tests.integration.assessment.conftest import YEAR, api, county  # noqa: F401 - fixtures
from tests.integration.assessment.test_dispositions_api import FIGURES
from tests.support.services import ADMIN


def _ok(r, status: int = 201) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def test_assessment_latest_result_follows_run_creation_not_a_replicas_clock(county, api, monkeypatch):
    """Two replicas of the assessment service, one's clock a minute ahead (the service allows for this: see
    evaluations.requested_at, "a clock behind another replica's"). Replica 1 evaluates the county-year; a figure
    is corrected; replica 2 (correct clock) evaluates again: a new run B, created after run A and made current.
    Nothing was tampered with, so the rebuilt read models must equal the live ones. They do not: the live side of
    ``latest_assessments`` picks the run with the largest created_at (A, stamped by the fast clock), the fold the
    run whose EnterpriseAssessed came last (B) - every enterprise of the county-year is reported as differing."""
    import services.assessment.api.routes_evaluations as routes

    runtime, c = api
    for n in (1, 7):
        _ok(c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(n), "name": f"企业{n}",
                                                           "township_code": county.township, "industry_code": "C3311"}))

    def tax(n: int, fields: dict) -> None:
        _ok(c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": YEAR,
                                                          "department": "tax", "fields": fields}))

    for n in (1, 7):
        tax(n, FIGURES[n])
    ahead = datetime.now(timezone.utc) + timedelta(seconds=60)
    monkeypatch.setattr(routes, "now", lambda: ahead)  # replica 1
    a = _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run))["run"]["run_id"]
    monkeypatch.setattr(routes, "now", lambda: datetime.now(timezone.utc))  # replica 2
    tax(7, {"tax": "1"})
    b = _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run))["run"]["run_id"]
    assert a != b
    # the service itself takes B as the county-year's run (requested_at puts it after A)
    assert _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run), 200)["run"]["run_id"] == b

    p = AssessmentProjection()
    replay(runtime.db, p, compare_live=False)
    assert p.rebuilt()["current_runs"][(county.code_, YEAR)] == (b,)
    assert p.rebuilt()["latest_assessments"][(county.code(1), YEAR)][0] == b

    report = rebuild_assessment(runtime.db)
    assert report.equal, "\n".join(str(d) for d in report.differences)


def test_ledger_replay_after_failed_linked_chains_over_pending_transfers(db_url):
    """Guard: a linked chain that posts part of a pending transfer and voids another, then fails on an overdraw,
    leaves nothing in the journal; the balances rebuilt from the journal equal the live ones, and after a tamper
    exactly the tampered account is named, then repaired."""
    from sqlalchemy import text

    from services.ledger.domain import NewAccount, TransferRequest as T
    from services.ledger.replay import MODEL, rebuild
    from tests.integration.ledger.harness import SqlLedger

    led = SqlLedger(db_url, datetime(2026, 3, 1, tzinfo=timezone.utc))
    try:
        led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a"),
                  NewAccount("b", "CNY", "county:320612/b"), NewAccount("c", "CNY", "county:320612/c")])
        assert led.submit([T("f1", "mint", "a", 10_000, code="fund")]).ok
        assert led.submit([T("p1", "a", "b", 4_000, code="hold", pending=True, timeout_seconds=60),
                           T("p2", "a", "c", 3_000, code="hold", pending=True)]).ok
        failed = led.submit([T("p1-post", post_pending_id="p1", amount=1_000, linked=True),
                             T("p2-void", void_pending_id="p2", linked=True),
                             T("over", "b", "c", 50_000, code="x")])
        assert not failed.ok
        assert led.balances()["a"] == (7_000, 0, 0, 10_000)
        assert rebuild(led.db).equal
        assert led.submit([T("p1-post2", post_pending_id="p1", amount=1_500, linked=True),
                           T("b-c", "b", "c", 500, code="x")]).ok
        led.advance(120)
        assert led.expire() == 0  # p1 is posted: nothing of it is left to expire
        assert led.submit([T("p2-void2", void_pending_id="p2")]).ok
        report = rebuild(led.db)
        assert report.equal, [str(d) for d in report.differences]
        assert led.balances()["a"] == (0, 1_500, 0, 10_000) and led.balances()["c"] == (0, 0, 0, 500)

        with led.db.sessions() as s, s.begin():
            s.execute(text("UPDATE accounts SET debits_pending = 1 WHERE id = 'c'"))
        assert [(d.model, d.key) for d in rebuild(led.db).differences] == [(MODEL, "c")]
        assert rebuild(led.db, repair=True).repaired == 1
        assert rebuild(led.db).equal and led.balances()["c"] == (0, 0, 0, 500)
    finally:
        led.close()

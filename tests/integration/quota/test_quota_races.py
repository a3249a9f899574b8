"""Facts that arrive while another transaction of the same county is open, on PostgreSQL (READ COMMITTED, the
production database): each pair of use cases serializes on the county's lock, taken before either reads, so
whichever commits second sees the first, in both orders. (SQLite runs one writer at a time: no such race.)

The first transaction stays open while the second runs in a thread: the second must wait for the lock (seen in
pg_stat_activity) and finish only after the first commits."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from services.quota.application import assessment_facts, intake, requests, rounds
from services.quota.application.ledger_answers import on_ledger_outcome
from services.quota.application.tx import Tx
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import QuotaDomainError
from services.quota.main import MIGRATIONS
from services.quota.storage import intake_store, request_store
from services.quota.storage import tables as T
from services.quota.storage.counties import save_policy
from shared import migrations
from shared.contracts.assessment import ProjectEvaluated
from shared.contracts.ledger import TransferPending, TransferPosted
from shared.db import Database
from tests.integration.quota.harness import credit_code

COUNTY = "320612"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
ENTERPRISE = credit_code(COUNTY, 1)


@pytest.fixture
def engine(pg_url):
    db = Database(pg_url, "quota")
    migrations.upgrade(db, MIGRATIONS)
    with Session(db.engine) as s:
        save_policy(s, PoolPolicy(COUNTY), "test", T0)  # verification: hold a release until the exit is known
        s.commit()
    yield db.engine
    db.dispose()


def tx(session: Session) -> Tx:
    return Tx(session, T0, lambda e, s: None)


def committed(engine, use_case):
    with Session(engine) as s:
        out = use_case(tx(s))
        s.commit()
    return out


def interleaved(engine, first, second):
    """``first`` runs and stays uncommitted while ``second`` runs in its own transaction; ``second`` must wait for
    ``first``'s lock. Then ``first`` commits and ``second`` finishes and commits. Returns second's outcome."""
    result: dict = {}

    def run_second():
        try:
            result["out"] = committed(engine, second)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result["exc"] = exc

    with Session(engine) as s1:
        first(tx(s1))
        t = threading.Thread(target=run_second)
        t.start()
        waited = _waits_for_a_lock(engine, t)
        s1.commit()
    t.join(timeout=30)
    assert not t.is_alive()
    assert waited, "the second transaction did not wait for the first one's lock"
    if "exc" in result:
        raise result["exc"]
    return result["out"]


def _waits_for_a_lock(engine, t: threading.Thread, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    with engine.connect() as c:
        while t.is_alive() and time.monotonic() < deadline:
            waiting = c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'")).scalar()
            c.rollback()  # pg_stat_activity is read once per transaction
            if waiting:
                return True
            time.sleep(0.02)
    return False


def closure_release(t: Tx):
    return intake.submit_release(t, dict(
        release_id="REL-1", enterprise_credit_code=ENTERPRISE, township_code=f"{COUNTY}100", county_code=COUNTY,
        asset="COD", amount="10", reason="closure", basis="free", buyback_price_per_unit=None, document_ref="doc",
        released_on="2024-02-01"), department="ecology", submitted_by="test")


def exited(t: Tx):
    return intake.enterprise_departed(t, ENTERPRISE, COUNTY, "exited", T0.date())


def release_status(engine) -> str:
    with Session(engine) as s:
        assert intake_store.has_departed(s, ENTERPRISE)
        return intake_store.release_row(s, "REL-1").status


def test_a_release_submitted_while_the_exit_is_being_recorded_enters_the_pool(engine):
    out = interleaved(engine, exited, closure_release)
    assert (out.status, out.status_reason) == ("accepted", "exit_known")
    assert release_status(engine) == "accepted"


def test_an_exit_recorded_while_a_release_is_being_held_lets_it_in(engine):
    assert interleaved(engine, closure_release, exited) == ["REL-1"]
    assert release_status(engine) == "accepted"


def test_an_exit_in_a_county_not_served_yet_leaves_no_county_behind(engine):
    committed(engine, lambda t: intake.enterprise_departed(t, credit_code("320623", 1), "320623", "exited", T0.date()))
    with Session(engine) as s:
        assert s.execute(select(T.counties.c.county_code)).scalars().all() == [COUNTY]


# -- approvals and admission vs a request opening -------------------------------------------------------------
def evaluated(admitted: bool):
    return lambda t: assessment_facts.project_evaluated(t, ProjectEvaluated(
        project_id="P1", applicant_credit_code=credit_code(COUNTY, 9999), county_code=COUNTY, park_id="park-1",
        admitted=admitted, land="10.0000", investment_per_mu="3000000.00", tax_per_mu="150000.00",
        industry_code="C39", project_class="A", policy_hash="h"))


def open_r1(t: Tx):
    return requests.open_quota_request(t, {"request_id": "R1", "project_id": "P1", "county_code": COUNTY,
                                           "lines": [{"asset": "COD", "amount": "5"}]}, "test")


def approved(t: Tx):
    return requests.approval_granted(t, "P1", "environmental_impact", "doc", T0.date())


@pytest.fixture
def booked_pool(engine):
    """P1 admitted, 10 COD released (upgrade savings: no exit to wait for) and booked by the ledger."""
    committed(engine, evaluated(True))
    committed(engine, lambda t: intake.submit_release(t, dict(
        release_id="REL-0", enterprise_credit_code=ENTERPRISE, township_code=f"{COUNTY}100", county_code=COUNTY,
        asset="COD", amount="10", reason="upgrade_savings", basis="free", buyback_price_per_unit=None,
        document_ref="doc", released_on="2024-02-01"), department="ecology", submitted_by="test"))
    with Session(engine) as s:
        rows = s.execute(select(T.ledger_transfers).where(T.ledger_transfers.c.purpose == "intake")).all()
    for r in rows:
        committed(engine, lambda t, r=r: on_ledger_outcome(t, TransferPosted(
            transfer_id=r.transfer_id, debit_account=r.debit_account, credit_account=r.credit_account, asset=r.asset,
            amount="1", code="quota_release_intake", at=T0)))
    return engine


def reserve_r1(engine) -> str:
    """A round grants R1 and the ledger makes its reservation; returns R1's state."""
    committed(engine, lambda t: rounds.run_round(t, COUNTY, "test"))
    committed(engine, lambda t: on_ledger_outcome(t, TransferPending(
        transfer_id="quota/reserve/R1/COD", debit_account=f"county:{COUNTY}/pool/COD", credit_account="project:P1/COD",
        asset="COD", amount="5", code="quota_reserve", at=T0)))
    with Session(engine) as s:
        return request_store.load_request(s, "R1").state.value


@pytest.mark.parametrize("approval_first", [True, False], ids=["approval_first", "request_first"])
def test_an_approval_granted_while_the_request_opens_confirms_it(booked_pool, approval_first):
    if approval_first:
        interleaved(booked_pool, approved, open_r1)
    else:
        interleaved(booked_pool, open_r1, approved)
    assert reserve_r1(booked_pool) == "allocated"


def test_admission_withdrawn_while_the_request_opens_refuses_it(booked_pool):
    with pytest.raises(QuotaDomainError) as exc:
        interleaved(booked_pool, evaluated(False), open_r1)
    assert [p.reason for p in exc.value.problems] == ["project_not_admitted"]


def test_a_request_opened_while_admission_is_withdrawn_is_closed(booked_pool):
    interleaved(booked_pool, open_r1, evaluated(False))
    with Session(booked_pool) as s:
        req = request_store.load_request(s, "R1")
    assert (req.state.value, req.reason) == ("rejected", "project_not_admitted")


# -- an approval that arrives before the project's evaluation -------------------------------------------------
@pytest.fixture
def unevaluated_pool(engine):
    """10 COD released and booked, P1 not evaluated yet (no projects row): its approval may come first."""
    committed(engine, lambda t: intake.submit_release(t, dict(
        release_id="REL-0", enterprise_credit_code=ENTERPRISE, township_code=f"{COUNTY}100", county_code=COUNTY,
        asset="COD", amount="10", reason="upgrade_savings", basis="free", buyback_price_per_unit=None,
        document_ref="doc", released_on="2024-02-01"), department="ecology", submitted_by="test"))
    with Session(engine) as s:
        rows = s.execute(select(T.ledger_transfers).where(T.ledger_transfers.c.purpose == "intake")).all()
        assert request_store.project_row(s, "P1") is None
    for r in rows:
        committed(engine, lambda t, r=r: on_ledger_outcome(t, TransferPosted(
            transfer_id=r.transfer_id, debit_account=r.debit_account, credit_account=r.credit_account, asset=r.asset,
            amount="1", code="quota_release_intake", at=T0)))
    return engine


def test_an_approval_before_the_evaluation_is_not_lost_by_a_request_opening_meanwhile(unevaluated_pool):
    """The approval finds no projects row; while it is open, the evaluation commits and a request opens. The
    evaluation must wait for the approval (the project's lock): else the request reads the approvals before the
    approval commits and the approval reads the open requests before the request commits, and neither sees the
    other (the request never allocates)."""
    def evaluated_then_opened(_: Tx):
        committed(unevaluated_pool, evaluated(True))
        return committed(unevaluated_pool, open_r1)

    interleaved(unevaluated_pool, approved, evaluated_then_opened)
    assert reserve_r1(unevaluated_pool) == "allocated"


def test_an_approval_granted_while_the_first_evaluation_is_written_waits_for_it(unevaluated_pool):
    """The other order: the approval finds no (committed) projects row and waits for the evaluation, then takes
    the lock of the project's county like any approval."""
    interleaved(unevaluated_pool, evaluated(True), approved)
    committed(unevaluated_pool, open_r1)
    assert reserve_r1(unevaluated_pool) == "allocated"

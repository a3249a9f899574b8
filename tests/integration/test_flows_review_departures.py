"""An enterprise's exit (assessment's EnterpriseExited / EnterpriseRelocated, on countypool.assessment.events) and a
department's release of its quota (countypool.intake.quota, or POST /v1/releases) race each other, on PostgreSQL
(READ COMMITTED, the production database), when the release names another county than the exit.

Nothing orders the two topics, and quota's consumer replicas, or its HTTP intake beside the consumer, apply them in
concurrent transactions. Each reads what the other writes (the release: whether the enterprise has left; the exit:
which releases are held). Both lock the counties they touch first, so in one county they serialize; but the exit
cannot know, before it reads, that a release of the enterprise is being held in another county. Without a lock
both read before either commits: the exit finds no held release, the release finds no departure and is held,
pending_verification, for good (no later event lets it in: the exit has been recorded), though the enterprise left.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.quota.application import intake
from services.quota.application.intake_batch import ReleaseItem, submit_releases
from services.quota.application.tx import BatchTx, Tx
from services.quota.domain.policy import PoolPolicy
from services.quota.main import MIGRATIONS
from services.quota.storage import intake_store
from services.quota.storage.counties import save_policy
from shared import migrations
from shared.db import Database
from tests.integration.quota.harness import credit_code

HOME = "320612"  # the county the assessment service says the enterprise is in (its exit names it)
OTHER = "320623"  # the county whose department releases the enterprise's quota
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
ENTERPRISE = credit_code(HOME, 1)


@pytest.fixture
def engine(pg_url):
    db = Database(pg_url, "quota")
    migrations.upgrade(db, MIGRATIONS)
    with Session(db.engine) as s:
        for county in (HOME, OTHER):
            save_policy(s, PoolPolicy(county), "test", T0)  # verification: hold until the exit is known
        s.commit()
    yield db.engine
    db.dispose()


def _tx(session: Session) -> Tx:
    return Tx(session, T0, lambda e, s: None)


def _release_body(release_id: str = "REL-X") -> dict:
    return dict(release_id=release_id, enterprise_credit_code=ENTERPRISE, township_code=f"{OTHER}100",
                county_code=OTHER, asset="COD", amount="10", reason="closure", basis="free",
                buyback_price_per_unit=None, document_ref="doc", released_on="2024-02-01")


def released(session: Session):
    return intake.submit_release(_tx(session), _release_body(), department="ecology", submitted_by="test")


def released_in_a_batch(session: Session):
    """The consumer's batch path (a poll of releases)."""
    (out,) = submit_releases(BatchTx(session, T0), [ReleaseItem(_release_body(), "ecology", "test")])
    assert not isinstance(out, Exception), out
    return out


def exited(session: Session):
    return intake.enterprise_departed(_tx(session), ENTERPRISE, HOME, "exited", T0.date())


def _lock_waiters(engine) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND wait_event_type = 'Lock'")).scalar()


def race(engine, first, second) -> None:
    """``first`` runs to its end but stays uncommitted while ``second`` runs in a transaction of its own (in a
    thread); then ``first`` commits and ``second`` finishes. Either ``second`` waits for ``first``, or it has
    finished, committed, before ``first`` commits (what happened before the fix)."""
    failure: list[BaseException] = []

    def run_second():
        try:
            with Session(engine) as s:
                second(s)
                s.commit()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    with Session(engine) as s1:
        first(s1)
        t = threading.Thread(target=run_second)
        t.start()
        deadline = time.monotonic() + 3
        while t.is_alive() and time.monotonic() < deadline and not _lock_waiters(engine):
            time.sleep(0.02)  # second is blocked on first (the fix) or runs through (the defect)
        s1.commit()
    t.join(timeout=30)
    assert not t.is_alive()
    if failure:
        raise failure[0]


def _release_status(engine) -> tuple[str, str]:
    with Session(engine) as s:
        assert intake_store.has_departed(s, ENTERPRISE)
        row = intake_store.release_row(s, "REL-X")
        return row.status, row.status_reason


@pytest.mark.parametrize("release", [released, released_in_a_batch], ids=["one", "batch"])
def test_an_exit_recorded_while_a_release_of_another_county_is_being_held_lets_it_in(engine, release):
    race(engine, release, exited)
    assert _release_status(engine) == ("accepted", "exit_known")
    with Session(engine) as s:
        assert intake_store.lot_ids_among(s, ["release:REL-X"]) == {"release:REL-X"}


@pytest.mark.parametrize("release", [released, released_in_a_batch], ids=["one", "batch"])
def test_a_release_of_another_county_submitted_while_the_exit_is_being_recorded_enters_the_pool(engine, release):
    race(engine, exited, release)
    assert _release_status(engine) == ("accepted", "exit_known")
    with Session(engine) as s:
        assert intake_store.lot_ids_among(s, ["release:REL-X"]) == {"release:REL-X"}

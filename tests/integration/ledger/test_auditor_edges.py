"""The background auditor at its edges, on SQLite and PostgreSQL: a rewrite behind its checkpoint, the verdict
before the first check, and a long verification beside the ledger's writers."""
from __future__ import annotations

import json
import math
import threading
from datetime import datetime, timezone
from types import SimpleNamespace

from prometheus_client import REGISTRY
from sqlalchemy import text

import services.ledger.auditor as auditor_module
from services.ledger.auditor import JournalAuditor
from services.ledger.domain import NewAccount, TransferRequest
from tests.integration.ledger.harness import SqlLedger, pausing

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _ledger(db_url) -> SqlLedger:
    led = SqlLedger(db_url, T0)
    led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a")])
    for i in range(3):
        assert led.submit([TransferRequest(f"t{i}", "mint", "a", 100 + i, code="fund")]).ok
    return led  # seq 1-2 the accounts, 3-5 the transfers


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _verdict() -> float:
    return REGISTRY.get_sample_value("countypool_ledger_journal_verified")


def test_a_rewrite_behind_the_checkpoint_is_found_by_the_next_full_verification(db_url):
    """An older entry's payload rewritten, its hash kept: the incremental runs (which re-read only the entry they
    stopped at) cannot see it; the full re-verification, every full_interval, does."""
    led = _ledger(db_url)
    try:
        clock = Clock()
        auditor = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=3600, clock=clock)
        assert auditor.run_once() and auditor.checked_seq == 5
        with led.db.engine.begin() as c:
            payload = json.loads(c.execute(text("SELECT payload FROM journal WHERE seq = 3")).scalar_one())
            payload["amount"] = 1
            c.execute(text("UPDATE journal SET payload = :p WHERE seq = 3"),
                      {"p": json.dumps(payload, sort_keys=True, separators=(",", ":"))})
        assert led.submit([TransferRequest("t3", "mint", "a", 5, code="fund")]).ok
        clock.now += 60
        assert auditor.run_once() and auditor.checked_seq == 6, "incremental: not seen yet"
        clock.now += 3600
        assert not auditor.run_once() and auditor.broken_at == 3
        assert _verdict() == 0
        clock.now += 3600
        assert not auditor.run_once() and auditor.broken_at == 3, "stays broken"
    finally:
        led.close()


def test_balance_columns_rewritten_behind_the_checkpoint_are_found_too(db_url):
    led = _ledger(db_url)
    try:
        clock = Clock()
        auditor = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=3600, clock=clock)
        assert auditor.run_once()
        with led.db.engine.begin() as c:  # what balance-as-of queries add up, the hashed payload left alone
            c.execute(text("UPDATE journal SET d_credits_posted = 1000000 WHERE seq = 4"))
        clock.now += 60
        assert auditor.run_once()
        clock.now += 3600
        assert not auditor.run_once() and auditor.broken_at == 4
    finally:
        led.close()


def test_before_its_first_check_the_auditor_says_nothing_rather_than_broken(db_url):
    """A full verification of a long journal takes minutes at start-up: meanwhile the verdict is NaN, so that
    the `== 0` alert (broken) does not fire for a journal nobody found broken."""
    led = _ledger(db_url)
    try:
        auditor = JournalAuditor(SimpleNamespace(db=led.db))
        assert math.isnan(_verdict())
        assert auditor.run_once() and _verdict() == 1
    finally:
        led.close()


def test_a_full_verification_leaves_the_writers_going(db_url, monkeypatch):
    """Paused in the middle of verifying, the auditor must not hold the ledger's writers (SQLite: a session takes
    the write lock, BEGIN IMMEDIATE, unless it asks for a read snapshot)."""
    led = _ledger(db_url)
    paused, release = threading.Event(), threading.Event()
    real_verify = auditor_module.verify
    monkeypatch.setattr(auditor_module, "verify", pausing(real_verify, paused, release))
    auditor = JournalAuditor(SimpleNamespace(db=led.db))
    verdicts: list[bool] = []
    checking = threading.Thread(target=lambda: verdicts.append(auditor.run_once()))
    checking.start()
    try:
        assert paused.wait(10)
        writer = threading.Thread(target=lambda: led.submit([TransferRequest("w", "mint", "a", 7, code="fund")]))
        writer.start()
        writer.join(5)
        assert not writer.is_alive(), "the writer waited for the auditor"
    finally:
        release.set()
        checking.join(30)
        writer.join(60)
    try:
        assert verdicts == [True]
        monkeypatch.setattr(auditor_module, "verify", real_verify)
        assert auditor.run_once() and auditor.checked_seq == 6, "the entry written meanwhile, verified next"
    finally:
        led.close()

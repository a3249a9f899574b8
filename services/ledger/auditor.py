"""Re-verifies the journal's hash chain in the background, incrementally from the last verified entry, and
exports the verdict as a metric so an alert fires the moment a row is tampered with.

What each run catches, and when:
- entries appended since the last run: verified (chain, hashes, and the balance columns against the hashed
  payload) at the next run;
- a rewrite of the entry the auditor stopped at, or of the journal's tail (any rewrite that re-chains the
  hashes up to the head passes through it): at the next run;
- rows cut from the tail, or forged past the head (the chain must end at the journal head): at the next run;
- a rewrite of an older entry that keeps its stored hash (its payload, recorded_at or balance columns
  changed): not by the incremental runs, but by a full re-verification from seq 1, done at start-up and then
  every ``full_interval`` seconds (``audit_full_interval_seconds``, a day by default).
Once broken, the verdict stays broken (0) until the process restarts, and a restart verifies everything again.
Before the first verdict (a full verification of a long journal takes minutes) the gauge is NaN, not 0: no
alert on ``== 0`` fires for a journal nobody has found broken.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import Gauge

from services.ledger.domain import verify
from services.ledger.domain.view import GENESIS_HASH
from shared.periodic import Periodic
from services.ledger.storage.repository import LedgerRepository, checked_entry

log = logging.getLogger(__name__)

VERIFIED = Gauge("countypool_ledger_journal_verified",
                 "1 when the journal's hash chain verified at the last check, 0 when broken (NaN before the first check)")
VERIFIED.set(float("nan"))
VERIFIED_SEQ = Gauge("countypool_ledger_journal_verified_seq", "Journal entries verified so far")

DAY = 86_400.0


class JournalAuditor(Periodic):
    name = "ledger-auditor"
    run_first = True  # a full verification at start-up

    def __init__(self, runtime, interval: float = 60.0, full_interval: float | None = DAY, clock=time.monotonic):
        super().__init__(interval)
        self.runtime = runtime
        self.full_interval = full_interval  # None: never again after start-up
        self.clock = clock
        self.checked_seq = 0
        self.checked_hash = GENESIS_HASH
        self.broken_at: int | None = None
        self.full_at: float | None = None  # when the last full verification (from seq 1) began
        VERIFIED.set(float("nan"))  # no verdict yet

    def run_once(self) -> bool:
        """Verify the entries appended since the last check (all of them, from seq 1, when a full verification is
        due); once broken, stays broken until restarted."""
        if self.broken_at is not None:
            return False
        started = self.clock()
        full = self.full_at is None or (self.full_interval is not None and started - self.full_at >= self.full_interval)
        seq, prev = (0, GENESIS_HASH) if full else (self.checked_seq, self.checked_hash)
        # a read snapshot: on SQLite a full verification of a long journal must not stop the writers meanwhile
        with self.runtime.db.read_snapshot() as s:
            repo = LedgerRepository(s)
            # the entry we stopped at must still be what we verified
            first = repo.first_seq()
            if self.checked_seq and repo.hash_at(self.checked_seq) != self.checked_hash:
                self.broken_at = self.checked_seq
            elif first is not None and first < 1:  # a row before the chain's start: summed by balances, never hashed
                self.broken_at = first
            else:
                bad_columns: list[int] = []

                def entries():
                    for r in repo.journal_rows(seq + 1):
                        entry, problem = checked_entry(r)
                        if problem:  # unreadable payloads included: a break, not an exception
                            bad_columns.append(r.seq)
                            return
                        yield entry

                res = verify(entries(), start_prev_hash=prev, start_seq=seq + 1)
                end, head = seq + res.checked, repo.head()
                if res.ok and not bad_columns and (end, res.last_hash) != (head.seq, head.hash):
                    # the chain must end at the head: rows deleted from the tail (all of them, or all after our
                    # checkpoint) left nothing to check and passed, and a row forged past it passed too
                    self.broken_at = min(end, head.seq) + 1 if end != head.seq else head.seq
                elif res.ok and not bad_columns:
                    self.checked_seq = seq + res.checked
                    self.checked_hash = res.last_hash
                    if full:
                        self.full_at = started
                else:
                    self.broken_at = bad_columns[0] if bad_columns else res.first_broken_seq
        ok = self.broken_at is None
        VERIFIED.set(1 if ok else 0)
        VERIFIED_SEQ.set(self.checked_seq)
        if not ok:
            log.error("journal verification failed at seq %s", self.broken_at)
        return ok

    def step(self) -> int:
        self.run_once()
        return 0

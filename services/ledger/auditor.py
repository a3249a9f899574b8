"""Re-verifies the journal's hash chain in the background, incrementally from the last verified entry, and
exports the verdict as a metric so an alert fires the moment a row is tampered with."""
from __future__ import annotations

import logging

from prometheus_client import Gauge

from services.ledger.domain import verify
from shared.periodic import Periodic
from services.ledger.storage.repository import LedgerRepository, journal_entry_from_row, row_disagrees_with_payload

log = logging.getLogger(__name__)

VERIFIED = Gauge("countypool_ledger_journal_verified", "1 when the journal's hash chain verified at the last check, else 0")
VERIFIED_SEQ = Gauge("countypool_ledger_journal_verified_seq", "Journal entries verified so far")


class JournalAuditor(Periodic):
    name = "ledger-auditor"
    run_first = True  # a full verification at start-up

    def __init__(self, runtime, interval: float = 60.0):
        super().__init__(interval)
        self.runtime = runtime
        self.checked_seq = 0
        self.checked_hash = "0" * 64
        self.broken_at: int | None = None

    def run_once(self) -> bool:
        """Verify the entries appended since the last check; once broken, stays broken until restarted."""
        if self.broken_at is not None:
            return False
        with self.runtime.db.sessions() as s:
            repo = LedgerRepository(s)
            # the entry we stopped at must still be what we verified (rewrites of the past are caught by
            # a full verification at start-up, when checked_seq is 0)
            if self.checked_seq and repo.hash_at(self.checked_seq) != self.checked_hash:
                self.broken_at = self.checked_seq
            else:
                bad_columns: list[int] = []

                def entries():
                    for r in repo.journal_rows(self.checked_seq + 1):
                        if row_disagrees_with_payload(r):
                            bad_columns.append(r.seq)
                            return
                        yield journal_entry_from_row(r)

                res = verify(entries(), start_prev_hash=self.checked_hash, start_seq=self.checked_seq + 1)
                if res.ok and not bad_columns:
                    self.checked_seq += res.checked
                    self.checked_hash = res.last_hash
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

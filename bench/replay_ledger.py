"""Fill an empty, migrated ledger database with a journal of N entries for the replay benchmark.

Accounts are opened through the real ledger (LedgerApp.open_accounts); the posted transfers are journal
entries built and hash-chained with the ledger's own journal code (``chain_drafts``) and written with COPY,
with the accounts' balances set to what the engine would have left — quicker than a million engine runs,
and the same rows the replay reads.
"""
from __future__ import annotations

import random
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from services.ledger.domain.accounts import NewAccount  # noqa: E402
from services.ledger.domain.balances import (  # noqa: E402
    C_PENDING, C_POSTED, CREDIT_ACCOUNT, D_PENDING, D_POSTED, DEBIT_ACCOUNT,
)
from services.ledger.domain.journal import chain_drafts, iso_utc  # noqa: E402
from services.ledger.handlers import LedgerApp  # noqa: E402
from services.ledger.storage.repository import _journal_row  # noqa: E402
from services.ledger.storage.tables import journal, messaging  # noqa: E402
from shared.bulk import bulk_insert  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.outbox import Outbox  # noqa: E402
from shared.unit_of_work import transactional  # noqa: E402

ASSET, ACCOUNTS, CHUNK = "CNY", 1000, 20_000
EXTERNAL = "bench:external:CNY"


def write_events(db: Database, n: int) -> int:
    outbox = Outbox(messaging["outbox"], "ledger")
    app = LedgerApp(outbox)
    ids = [f"bench:party-{i:04d}:CNY" for i in range(ACCOUNTS)]
    transactional(db, outbox, lambda uow: app.open_accounts(uow.session, [NewAccount(EXTERNAL, ASSET, "external:bench-mint")]
                  + [NewAccount(a, ASSET, "county:320612/bench") for a in ids]))
    rng = random.Random(7)
    with db.sessions() as s, s.begin():
        seq, prev = s.execute(text("SELECT seq, hash FROM journal_head")).one()
    written = seq
    recorded_at = iso_utc(datetime.now(timezone.utc))
    while written < n:
        drafts = []
        for k in range(min(CHUNK, n - written)):
            i = written + k
            if i < 2 * ACCOUNTS:  # fund every party first, then move small amounts between parties
                dr, cr, amount = EXTERNAL, ids[i % ACCOUNTS], 100_000_000
            else:
                dr, cr, amount = ids[rng.randrange(ACCOUNTS)], ids[rng.randrange(ACCOUNTS)], rng.randrange(1, 100)
                if cr == dr:
                    cr = ids[(ids.index(cr) + 1) % ACCOUNTS]
            drafts.append(("transfer_posted", f"t{i}", {DEBIT_ACCOUNT: dr, CREDIT_ACCOUNT: cr, "asset": ASSET,
                           "amount": amount, "code": "bench", D_PENDING: 0, D_POSTED: amount, C_PENDING: 0,
                           C_POSTED: amount}))
        entries = chain_drafts(prev, written, drafts, recorded_at)
        with db.sessions() as s, s.begin():
            bulk_insert(s, journal, [_journal_row(e) for e in entries])
            s.execute(text("UPDATE journal_head SET seq=:q, hash=:h"), {"q": entries[-1].seq, "h": entries[-1].hash})
        written, prev = entries[-1].seq, entries[-1].hash
    with db.sessions() as s, s.begin():
        s.execute(text("""
            UPDATE accounts a SET debits_posted = d.s FROM (
              SELECT debit_account_id id, sum(d_debits_posted) s FROM journal GROUP BY debit_account_id) d WHERE a.id = d.id"""))
        s.execute(text("""
            UPDATE accounts a SET credits_posted = c.s FROM (
              SELECT credit_account_id id, sum(d_credits_posted) s FROM journal GROUP BY credit_account_id) c WHERE a.id = c.id"""))
    return written


def main() -> int:
    """The ledger's replay alone: bench/replay.py for this one service (its other scripts each have a main)."""
    import argparse
    import json

    from bench.replay import bench_service
    from bench.support import DEFAULT_PG

    ap = argparse.ArgumentParser(description="Replay of the ledger from N journal entries: "
                                             "services.ledger.replay.rebuild on a scratch PostgreSQL database")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    args = ap.parse_args()
    print(json.dumps(bench_service("ledger", args.events, args.pg_url), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Concurrent writers on PostgreSQL: random transfers, pending ones and duplicate submissions from several
threads at once. Afterwards every asset sums to zero, nothing constrained is below zero (pending counted),
every id had exactly one effect, and the journal verifies."""
from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import text

from services.ledger.domain import NewAccount, TransferRequest, TransferResult as R
from tests.integration.ledger.harness import SqlLedger

WRITERS = 6
BATCHES_PER_WRITER = 25
ACCOUNTS = [f"township:320612{100 + i:03d}/LAND" for i in range(8)]


def test_concurrent_writers_never_overdraw_and_apply_each_id_once(pg_url):
    led = SqlLedger(pg_url, datetime.now(timezone.utc))
    led.open([NewAccount("external:mint/LAND", "LAND", "external:mint")]
             + [NewAccount(a, "LAND", a.rsplit("/", 1)[0]) for a in ACCOUNTS])
    # seed: every account gets 50.0000 亩
    assert led.submit([TransferRequest(f"seed-{i}", "external:mint/LAND", a, 500_000, code="seed")
                       for i, a in enumerate(ACCOUNTS)]).ok
    ok_ids: Counter = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []
    shared_batches = [[TransferRequest(f"dup-{b}-{k}", random.Random(b * 100 + k).choice(ACCOUNTS),
                                       random.Random(b * 100 + k + 1).choice(ACCOUNTS[:4]), 10_000, code="dup")
                       for k in range(5)] for b in range(10)]

    def writer(w: int) -> None:
        rnd = random.Random(w)
        try:
            for b in range(BATCHES_PER_WRITER):
                batch = []
                for k in range(rnd.randint(1, 30)):
                    dr, cr = rnd.sample(ACCOUNTS, 2)
                    batch.append(TransferRequest(f"w{w}-{b}-{k}", dr, cr, rnd.randint(1, 120_000), code="stress",
                                                 pending=rnd.random() < 0.2, timeout_seconds=3600))
                batch = [r for r in batch if r.debit_account_id != r.credit_account_id]
                # every writer also submits the same shared batches: they must apply once in total
                if b < len(shared_batches):
                    batch += [r for r in shared_batches[b] if r.debit_account_id != r.credit_account_id]
                out = led.submit(batch)
                with lock:
                    ok_ids.update(o.id for o in out.results if o.result is R.ok)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert max(ok_ids.values()) == 1, "no id took effect twice"
    assert any(i.startswith("dup-") for i in ok_ids), "the shared batches did apply (once)"

    bal = led.balances()
    assert sum(c - d for d_p, d, c_p, c in bal.values()) == 0, "posted balances of the asset sum to zero"
    assert sum(c_p - d_p for d_p, d, c_p, c in bal.values()) == 0, "pending too"
    for acct in ACCOUNTS:
        d_p, d, c_p, c = bal[acct]
        assert c - d - d_p >= 0, f"{acct} overdrawn with pending counted"
    with led.db.engine.connect() as c:
        per_id = c.execute(text("SELECT transfer_id, count(*) FROM journal WHERE kind IN ('transfer_posted','transfer_pending') "
                                "GROUP BY transfer_id HAVING count(*) > 1")).all()
        assert per_id == [], "one journal entry per created transfer"
        stored = c.execute(text("SELECT count(*) FROM transfers")).scalar()
    assert stored == len(ok_ids) + len(ACCOUNTS)
    v = led.verify()
    assert v.ok and v.checked == v.head_seq, v
    led.close()

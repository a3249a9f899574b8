"""Review as a finance auditor (dec01), on SQLite and PostgreSQL: the journal's verification against rows that were
changed or forged in ways the existing tamper tests do not try (a payload rewritten into other text that parses the
same, a row inserted before seq 1), and a guard that an untampered journal of unusual text verifies."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from services.ledger.api.routes import verify_chain
from services.ledger.auditor import JournalAuditor
from services.ledger.domain import NewAccount, chain
from services.ledger.domain import TransferRequest as T
from services.ledger.domain.balances import balance_as_of
from services.ledger.storage.repository import LedgerRepository, _journal_row, journal_entry_from_row
from services.ledger.storage.tables import journal as J
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 6, 1, 8, 0, 0, 500_000, tzinfo=timezone.utc)
MINT, POOL, PRJ = "external:mint/COD", "county:320612/pool/COD", "project:P1/COD"


def _ledger(url: str) -> SqlLedger:
    led = SqlLedger(url, T0)
    led.open([NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool"),
              NewAccount(PRJ, "COD", "project:P1")])  # seqs 1-3
    for i in range(3):  # seqs 4-6
        led.advance(1)
        assert led.submit([T(f"t{i}", MINT, POOL, 100 + i, code="intake")]).ok
    return led


def _verdict(s, from_seq: int = 1):
    v = verify_chain(LedgerRepository(s), from_seq)
    return v.ok, v.first_broken_seq, v.reason


# The payload column is what was hashed (the module says: sha256 over the canonical JSON). Each rewrite below keeps
# the parsed object identical, so the entry re-encoded hashes the same, but the stored text is no longer the text
# that was hashed: sha256(stored text) != hash. A verifier in another language that hashes the stored text, as the
# journal's docstring invites ("so any language can recompute the hash"), finds a break that ours does not.
REWRITES = {
    "spaces": "REPLACE(payload, '\"amount\":', '\"amount\": ')",
    "an_escaped_letter": "REPLACE(payload, '\"code\":\"intake\"', '\"code\":\"\\u0069ntake\"')",
    "a_duplicate_key_first": "REPLACE(payload, '{\"amount\":', '{\"amount\":999999,\"amount\":')",
}


@pytest.mark.parametrize("rewrite", list(REWRITES))
def test_a_payload_rewritten_into_other_text_is_a_break_at_its_row(db_url, rewrite):
    led = _ledger(db_url)
    try:
        with led.db.sessions() as s:
            assert _verdict(s) == (True, None, "")
            before = s.execute(select(J.c.payload).where(J.c.seq == 5)).scalar_one()
            s.connection().exec_driver_sql(f"UPDATE journal SET payload = {REWRITES[rewrite]} WHERE seq = 5")
            after = s.execute(select(J.c.payload).where(J.c.seq == 5)).scalar_one()
            assert after != before, "the row was changed"
            assert _verdict(s) == (False, 5, "payload_not_canonical"), (before, after)
    finally:
        led.close()


@pytest.mark.parametrize("seq", [0, -1])
def test_a_row_forged_before_the_first_entry_is_a_break(db_url, seq):
    """A row inserted at seq 0 (or below) is never read by the verification (it reads seq >= 1), yet every balance as
    of any position sums it (seq <= N) and the replay folds it: here it credits the project 5,000 out of nothing."""
    led = _ledger(db_url)
    try:
        with led.db.sessions() as s:
            first = journal_entry_from_row(s.execute(select(J).where(J.c.seq == 4)).one())
            payload = dict(first.payload, credit_account_id=PRJ, amount=5000,
                           **{"delta.debits_posted": 5000, "delta.credits_posted": 5000})
            forged = chain("0" * 64, 1, "transfer_posted", "forged", payload, first.recorded_at)
            row = {**_journal_row(forged), "seq": seq, "recorded_at": datetime.fromisoformat(first.recorded_at)}
            s.execute(J.insert().values(row))
            s.commit()
        with led.db.sessions() as s:
            repo = LedgerRepository(s)
            head = repo.head().seq
            hashed = [journal_entry_from_row(r) for r in repo.journal_rows()]  # what verification reads
            assert repo.balance_upto(PRJ, head)[3] == 5000, "the forged row counts in the balance as of the head"
            assert balance_as_of(hashed, PRJ).credits_posted == 0, "the verified journal never credited PRJ"
            assert _verdict(s)[0] is False, "a balance the verified journal does not give: verification must fail"
        auditor = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=None)
        assert not auditor.run_once(), "the auditor must not export 'verified' over it either"
    finally:
        led.close()


def test_an_untampered_journal_of_unusual_text_verifies_and_folds_to_every_balance(db_url):
    """Guard: ids, codes, refs and metadata in other scripts, with quotes, backslashes, escapes JSON must write
    (control characters, U+2028) and characters outside the BMP, through a pending transfer's post, void and expiry:
    the journal read back verifies, and every balance as of every position is the fold of the hashed payloads."""
    odd = 'é"\\/\x01\u2028\U0001F600县'
    led = _ledger(db_url)
    try:
        led.advance(1)
        out = led.submit([
            T("t-" + odd[-2:], MINT, POOL, 7, code="c" + odd, refs=(odd, "r2"), metadata={odd: odd, "k": ""}),
            T("h1" + odd[-1], POOL, PRJ, 50, code=odd, pending=True, timeout_seconds=30, refs=(odd,)),
            T("h2", POOL, PRJ, 40, pending=True, timeout_seconds=3600, metadata={"m": odd}),
            T("h3", POOL, PRJ, 30, pending=True, timeout_seconds=3600),
        ])
        assert out.ok, out.results
        led.advance(1)
        assert led.submit([T("p2", post_pending_id="h2", amount=15, code=odd, metadata={odd: "p"}),
                           T("v3", void_pending_id="h3", refs=(odd,))]).ok
        led.advance(60)
        assert led.expire() == 1
        with led.db.sessions() as s:
            assert _verdict(s) == (True, None, "")
            repo = LedgerRepository(s)
            entries = [journal_entry_from_row(r) for r in repo.journal_rows()]
            for seq in range(3, repo.head().seq + 1):
                for acct in (MINT, POOL, PRJ):
                    want = balance_as_of(entries, acct, upto_seq=seq)
                    got = repo.balance_upto(acct, seq)
                    assert got == (want.debits_pending, want.debits_posted, want.credits_pending,
                                   want.credits_posted), (seq, acct)
        assert led.balances()[POOL] == (0, 15, 0, 7 + 100 + 101 + 102)  # holds released but the 15 posted
        assert led.balances()[PRJ] == (0, 0, 0, 15)
    finally:
        led.close()

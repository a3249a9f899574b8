"""Review of the ledger's read side and journal (tests first), on SQLite and PostgreSQL: balances as of every journal
position and every recorded instant (to the microsecond) checked against a fold of the hashed payloads, across a
pending transfer's life (partial post, void, expiry); an account's entries and pending transfers paged while
transfers land between the pages; every column of a journal row tampered with, rows deleted or swapped, the tail
cut off (also behind a checkpoint and behind the auditor's); and what every 4xx of the read API says."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text, update

from services.ledger.api import routes
from services.ledger.api.routes import verify_chain
from services.ledger.auditor import JournalAuditor
from services.ledger.domain import NewAccount, chain
from services.ledger.domain import TransferRequest as T
from services.ledger.domain.balances import UnknownAccountError, balance_as_of
from services.ledger.storage.repository import LedgerRepository, _journal_row, journal_entry_from_row
from services.ledger.storage.tables import journal as J
from shared.errors import ApiError
from tests.integration.ledger.harness import ENT, POOL, REG, STANDARD_ACCOUNTS, SqlLedger, cod_transfer, served_ledger
from tests.support.services import ADMIN

T0 = datetime(2026, 5, 4, 8, 0, 0, 250_000, tzinfo=timezone.utc)
CST = timezone(timedelta(hours=8))
MINT, PRJ, LATE = "external:mint/COD", "project:P1/COD", "project:P2/COD"
US = timedelta(microseconds=1)


def _request(led: SqlLedger):
    state = SimpleNamespace(runtime=SimpleNamespace(db=led.db), ledger=led.app)
    return SimpleNamespace(app=SimpleNamespace(state=state))


def _story(url: str) -> SqlLedger:
    """A pending transfer's whole life, each step at its own instant (two in one batch share theirs)."""
    led = SqlLedger(url, T0)
    led.open([NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool"),
              NewAccount(PRJ, "COD", "project:P1")])
    steps = [
        (1, [T("fund", MINT, POOL, 1000, code="intake")]),
        (1, [T("r1", POOL, PRJ, 300, code="reserve", pending=True, timeout_seconds=60),
             T("r2", POOL, PRJ, 200, code="reserve", pending=True, timeout_seconds=3600)]),
        (2, "open LATE"),
        (1, [T("post-r2", post_pending_id="r2", amount=50)]),
        (70, "expire"),  # r1's timeout passed at T0+62s: the job expires it now
        (10, [T("r3", POOL, LATE, 100, code="reserve", pending=True, timeout_seconds=600)]),
        (10, [T("void-r3", void_pending_id="r3")]),
    ]
    for seconds, step in steps:
        led.advance(seconds)
        if step == "open LATE":
            led.open([NewAccount(LATE, "COD", "project:P2")])
        elif step == "expire":
            assert led.expire() == 1
        else:
            assert led.submit(step).ok
    return led


def _answer(req, account: str, **kw):
    try:
        b = routes.balance(account, req, as_of=kw.get("as_of"), at_seq=kw.get("at_seq"), _=None)
    except ApiError as exc:
        return exc.status, exc.reason
    return b.as_of_seq, (int(b.debits_pending.replace(".", "")), int(b.debits_posted.replace(".", "")),
                         int(b.credits_pending.replace(".", "")), int(b.credits_posted.replace(".", "")))


def _oracle(entries, account: str, seq: int, **kw):
    try:
        b = balance_as_of(entries, account, upto_seq=seq, **kw)
    except UnknownAccountError:
        return 404, "account_not_found_at"
    return seq, (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted)


def test_balances_as_of_every_position_and_instant_agree_with_the_hashed_journal(db_url):
    """The route sums the journal's delta columns; the oracle folds the payloads the hashes cover. Asked at every
    seq (0 and beyond the head included) and at every recorded instant, a microsecond before and after, in UTC
    and in +08:00."""
    led = _story(db_url)
    try:
        req = _request(led)
        with led.db.sessions() as s:
            entries = [journal_entry_from_row(r) for r in LedgerRepository(s).journal_rows()]
        head = entries[-1].seq
        assert head == 11
        accounts = (MINT, POOL, PRJ, LATE)
        for seq in range(0, head + 3):
            for a in accounts:
                assert _answer(req, a, at_seq=seq) == _oracle(entries, a, min(seq, head)), (a, seq)
        for moment in sorted({datetime.fromisoformat(e.recorded_at) for e in entries}):
            for m in (moment - US, moment, moment + US):
                seq = max((e.seq for e in entries if datetime.fromisoformat(e.recorded_at) <= m), default=0)
                for a in accounts:
                    want = _oracle(entries, a, seq, as_of=m)
                    assert _answer(req, a, as_of=m) == want, (a, m)
                    assert _answer(req, a, as_of=m.astimezone(CST)) == want, (a, m, "+08:00")
        # the figures the oracle agreed on are the story's, not zeros on both sides
        assert _answer(req, POOL, at_seq=6) == (6, (500, 0, 0, 1000)), "both holds counted"
        assert _answer(req, POOL, as_of=T0 + timedelta(seconds=5)) == (8, (300, 50, 0, 1000)), "partial post"
        assert _answer(req, POOL, as_of=T0 + timedelta(seconds=75) - US) == (8, (300, 50, 0, 1000)), \
            "past r1's timeout, before the expiry was recorded"
        assert _answer(req, POOL, as_of=T0 + timedelta(seconds=75)) == (9, (0, 50, 0, 1000)), "expired"
        assert _answer(req, LATE, as_of=T0 + timedelta(seconds=85)) == (10, (0, 0, 100, 0))
        assert _answer(req, LATE, at_seq=11) == (11, (0, 0, 0, 0)), "voided"
        assert _answer(req, LATE, as_of=T0 + timedelta(seconds=4) - US) == (404, "account_not_found_at")
        assert _answer(req, LATE, at_seq=6) == (404, "account_not_found_at")
        assert _answer(req, LATE, at_seq=6, as_of=T0 + timedelta(days=1)) == (404, "account_not_found_at"), \
            "both given: the earlier position"
    finally:
        led.close()


# -- tampering ----------------------------------------------------------------------------------------------------

ROW = 5  # 't1', a transfer_posted entry between others (_tamperable: seqs 1-3 open accounts, 4-8 transfers)
TAMPERS = {  # column: (new value, expected reason at the tampered row)
    "kind": ("'transfer_pending'", "hash_mismatch"),
    "transfer_id": ("'t9'", "hash_mismatch"),
    "account_id": ("'" + MINT + "'", "columns_disagree_with_payload"),
    "debit_account_id": ("'" + PRJ + "'", "columns_disagree_with_payload"),
    "credit_account_id": ("'" + PRJ + "'", "columns_disagree_with_payload"),
    "d_debits_pending": ("1", "columns_disagree_with_payload"),
    "d_debits_posted": ("d_debits_posted + 1", "columns_disagree_with_payload"),
    "d_credits_pending": ("1", "columns_disagree_with_payload"),
    "d_credits_posted": ("0", "columns_disagree_with_payload"),
    "payload": ("REPLACE(payload, '\"amount\":', '\"amount\":1')", "hash_mismatch"),
    "prev_hash": ("'" + "f" * 64 + "'", "prev_hash_mismatch"),
    "hash": ("'" + "e" * 64 + "'", "hash_mismatch"),
    "seq": ("seq + 1000", "seq_gap"),
}


def _tamperable(url: str) -> SqlLedger:
    led = SqlLedger(url, T0)
    led.open([NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool"),
              NewAccount(PRJ, "COD", "project:P1")])
    for i in range(5):  # seqs 4-8
        led.advance(1)
        assert led.submit([T(f"t{i}", MINT, POOL, 10 + i, code="intake")]).ok
    return led


def _verdict(s, from_seq: int = 1):
    v = verify_chain(LedgerRepository(s), from_seq)
    return v.ok, v.first_broken_seq, v.reason


def test_tampering_with_any_column_of_one_row_breaks_the_chain_at_that_row(db_url):
    led = _tamperable(db_url)
    try:
        with led.db.sessions() as s:
            assert _verdict(s) == (True, None, "")
        for column, (value, reason) in TAMPERS.items():
            with led.db.sessions() as s:  # never committed: each tamper alone
                s.connection().exec_driver_sql(f"UPDATE journal SET {column} = {value} WHERE seq = {ROW}")
                assert _verdict(s) == (False, ROW, reason), column
                if column == "seq":  # the checkpoint's entry is gone
                    with pytest.raises(ApiError, match="no journal entry"):
                        _verdict(s, ROW + 1)
                else:  # from the next checkpoint the rest verifies, unless the checkpoint's own hash was changed
                    assert _verdict(s, ROW + 1)[0] is (column != "hash"), column
        with led.db.sessions() as s:
            at = s.execute(select(J.c.recorded_at).where(J.c.seq == ROW)).scalar_one()
            s.execute(update(J).where(J.c.seq == ROW).values(recorded_at=at + US))
            assert _verdict(s) == (False, ROW, "hash_mismatch"), "a microsecond later"
        with led.db.sessions() as s:  # an account_created row: its account id, its terms
            s.execute(text(f"UPDATE journal SET account_id = '{PRJ}' WHERE seq = 2"))
            assert _verdict(s) == (False, 2, "columns_disagree_with_payload")
        with led.db.sessions() as s:
            s.execute(text("UPDATE journal SET payload = REPLACE(payload, 'county:320612/pool\"', 'county:1/pool\"') "
                           "WHERE seq = 2"))
            assert _verdict(s) == (False, 2, "hash_mismatch")
        with led.db.sessions() as s:  # a row deleted
            s.execute(text(f"DELETE FROM journal WHERE seq = {ROW}"))
            assert _verdict(s) == (False, ROW, "seq_gap")
        with led.db.sessions() as s:  # two rows swapped
            s.execute(text(f"UPDATE journal SET seq = -1 WHERE seq = {ROW}"))
            s.execute(text(f"UPDATE journal SET seq = {ROW} WHERE seq = {ROW + 1}"))
            s.execute(text(f"UPDATE journal SET seq = {ROW + 1} WHERE seq = -1"))
            assert _verdict(s) == (False, ROW, "prev_hash_mismatch")
        with led.db.sessions() as s:  # nothing was committed
            assert _verdict(s) == (True, None, "")
    finally:
        led.close()


@pytest.mark.parametrize("cut_from", [8, 6, 1], ids=["last_row", "last_three", "every_row"])
def test_a_journal_whose_tail_was_cut_off_does_not_verify(db_url, cut_from):
    """The head says 8 entries; rows cut_from..8 were deleted. Verification from the start, and from a checkpoint at
    the cut, must fail at the first missing row (it said ok for a journal emptied or cut at a checkpoint: the head
    was compared only when at least one row had been checked)."""
    led = _tamperable(db_url)
    try:
        behind = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=None)
        if cut_from > 1:  # an auditor whose last (incremental) check stopped just before the cut
            with led.db.sessions() as s:
                behind.checked_seq, behind.checked_hash = cut_from - 1, LedgerRepository(s).hash_at(cut_from - 1)
            behind.full_at = 0.0
        with led.db.sessions() as s:
            s.execute(text(f"DELETE FROM journal WHERE seq >= {cut_from}"))
            assert _verdict(s) == (False, cut_from, "seq_gap")
            if cut_from > 1:
                assert _verdict(s, cut_from) == (False, cut_from, "seq_gap"), "from the checkpoint at the cut"
            s.commit()
        auditor = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=None)
        assert not auditor.run_once() and auditor.broken_at == cut_from, "the auditor compares the head too"
        assert not behind.run_once() and behind.broken_at == cut_from, "incrementally too"
    finally:
        led.close()


def test_a_well_chained_row_forged_past_the_head_breaks_at_that_row(db_url):
    """Row 9 inserted after the head (8), hashed and chained correctly: the break is that row, not the head's."""
    led = _tamperable(db_url)
    try:
        with led.db.sessions() as s:
            last = journal_entry_from_row(s.execute(select(J).where(J.c.seq == 8)).one())
            forged = chain(last.hash, 9, last.kind, "t9", last.payload, last.recorded_at)
            at = datetime.fromisoformat(forged.recorded_at)
            s.execute(J.insert().values({**_journal_row(forged), "recorded_at": at}))
            assert _verdict(s)[:2] == (False, 9)
            s.commit()
        auditor = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=None)
        assert not auditor.run_once() and auditor.broken_at == 9
    finally:
        led.close()


def test_an_empty_journal_verifies_and_a_checkpoint_past_the_head_is_404(db_url):
    led = SqlLedger(db_url, T0)
    try:
        with led.db.sessions() as s:
            v = verify_chain(LedgerRepository(s))
            assert (v.ok, v.checked, v.head_seq, v.first_broken_seq) == (True, 0, 0, None)
            with pytest.raises(ApiError) as exc:
                verify_chain(LedgerRepository(s), 2)
            assert (exc.value.status, exc.value.reason) == (404, "checkpoint_not_found")
        assert JournalAuditor(SimpleNamespace(db=led.db), full_interval=None).run_once()
        led.open([NewAccount(MINT, "COD", "external:mint")])
        with led.db.sessions() as s:
            v = verify_chain(LedgerRepository(s), 2)  # from just past the head: nothing to check, nothing missing
            assert (v.ok, v.checked, v.head_seq) == (True, 0, 1)
    finally:
        led.close()


# -- the HTTP read API ----------------------------------------------------------------------------------------------

@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    with served_ledger(db_url, kafka_bootstrap, STANDARD_ACCOUNTS + [(PRJ, "project:P1")]) as served:
        yield served


def _post(client, *transfers):
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})
    assert r.status_code == 200 and r.json()["ok"], r.text


def _land(client, n: int) -> None:
    """Between two pages: a transfer on each side of the pool, one elsewhere, a new hold."""
    _post(client, cod_transfer(f"in{n}", REG, POOL, "2"), cod_transfer(f"out{n}", POOL, ENT, "1"),
          cod_transfer(f"else{n}", REG, ENT, "1"),
          cod_transfer(f"late-hold{n}", POOL, PRJ, "1", pending=True, timeout_seconds=3600))


def test_pages_of_entries_and_pending_stay_exact_while_transfers_land_between_them(ledger):
    _, client = ledger
    _post(client, cod_transfer("fund", REG, POOL, "100"))
    for i in range(3):
        _post(client, cod_transfer(f"hold{i}", POOL, PRJ, "1", pending=True, timeout_seconds=3600))
    entries, after, n = [], 0, 0
    while after is not None:
        page = client.get(f"/v1/accounts/{POOL}/entries", params={"after_seq": after, "limit": 2}, headers=ADMIN)
        assert page.status_code == 200, page.text
        entries += page.json()["entries"]
        after = page.json()["next_after_seq"]
        if n < 4:
            _land(client, n)
            n += 1
    whole = client.get(f"/v1/accounts/{POOL}/entries", params={"limit": 1000}, headers=ADMIN).json()
    assert whole["next_after_seq"] is None
    assert [e["seq"] for e in entries] == [e["seq"] for e in whole["entries"]], "no entry skipped or repeated"
    assert entries == whole["entries"]
    assert not any(e["transfer_id"].startswith("else") for e in entries)
    now = client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()
    for side in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
        assert sum(int(e[side].replace(".", "")) for e in entries) == int(now[side].replace(".", "")), side
    pending, url = [], f"/v1/accounts/{POOL}/pending?limit=2"
    while url:
        r = client.get(url, headers=ADMIN)
        assert r.status_code == 200, r.text
        pending += [p["transfer_id"] for p in r.json()]
        url = r.links.get("next", {}).get("url")
        if url and n < 8:
            _land(client, n)
            n += 1
    assert pending == [f"hold{i}" for i in range(3)] + [f"late-hold{i}" for i in range(n)], pending


def test_every_4xx_of_the_read_api_says_why(ledger):
    _, client = ledger
    _post(client, cod_transfer("fund", REG, POOL, "5"))
    head = client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()["as_of_seq"]
    bal = f"/v1/accounts/{POOL}/balance"
    cases = [
        ("GET", bal, {"at_seq": "-1"}, None, 422, "invalid_request"),
        ("GET", bal, {"at_seq": "1.5"}, None, 422, "invalid_request"),
        ("GET", bal, {"as_of": "yesterday"}, None, 422, "invalid_request"),
        ("GET", bal, {"as_of": "2026-05-04T08:00:00"}, None, 422, "as_of_needs_timezone"),
        ("GET", bal, {"at_seq": "0"}, None, 404, "account_not_found_at"),
        ("GET", f"/v1/accounts/{POOL}/entries", {"after_seq": "-1"}, None, 422, "invalid_request"),
        ("GET", f"/v1/accounts/{POOL}/entries", {"after_seq": str(2**63)}, None, 422, "invalid_request"),
        ("GET", f"/v1/accounts/{POOL}/entries", {"limit": "1001"}, None, 422, "invalid_request"),
        ("GET", f"/v1/accounts/{POOL}/entries", {"limit": "0"}, None, 422, "invalid_request"),
        ("GET", "/v1/accounts/nobody/COD/entries", {}, None, 404, "account_not_found"),
        ("GET", "/v1/accounts/nobody/COD/pending", {}, None, 404, "account_not_found"),
        ("GET", f"/v1/accounts/{POOL}/pending", {"limit": "10001"}, None, 422, "invalid_request"),
        ("GET", f"/v1/accounts/{POOL}/pending", {"after": "nope"}, None, 404, "transfer_not_found"),
        ("GET", "/v1/journal/verify", {"from_seq": "0"}, None, 422, "invalid_request"),
        ("GET", "/v1/journal/verify", {"from_seq": str(2**63)}, None, 422, "invalid_request"),
        ("GET", "/v1/journal/verify", {"from_seq": str(head + 2)}, None, 404, "checkpoint_not_found"),
        ("GET", "/v1/balances", {"address_prefix": "co"}, None, 422, "invalid_request"),
        ("GET", "/v1/balances", {"address_prefix": "county:", "asset": "GOLD"}, None, 404, "asset_not_found"),
        ("GET", "/v1/balances", {"address_prefix": "county:", "limit": "10001"}, None, 422, "invalid_request"),
        ("POST", "/v1/balances:query", None, {"account_ids": []}, 422, "invalid_request"),
        ("POST", "/v1/balances:query", None, {"account_ids": [POOL] * 1001}, 422, "invalid_request"),
        ("POST", "/v1/balances:query", None, {"account_ids": [POOL, "nope/COD", POOL]}, 404, "account_not_found"),
        ("POST", "/v1/balances:query", None, {"account_ids": ["nope/COD"] * 1000}, 404, "account_not_found"),
        ("GET", "/v1/transfers/never/sent", {}, None, 404, "transfer_not_found"),
        ("DELETE", f"/v1/accounts/{POOL}", {}, None, 405, "method_not_allowed"),
    ]
    for method, path, params, body, status, reason in cases:
        r = client.request(method, path, params=params, json=body, headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (status, reason), (method, path, params, r.text[:300])
        assert r.json().get("message"), (path, params)
    r = client.get(f"/v1/accounts/{POOL}/entries")
    assert (r.status_code, bool(r.json().get("reason"))) == (401, True), r.text
    # a position past the end is the head, not an error
    r = client.get(bal, params={"at_seq": str(2**64)}, headers=ADMIN)
    assert (r.status_code, r.json()["as_of_seq"], r.json()["balance"]) == (200, head, "5.0000"), r.text
    # duplicates are answered once per asking, in the order asked
    r = client.post("/v1/balances:query", headers=ADMIN, json={"account_ids": [POOL, REG, POOL]})
    assert [(b["account_id"], b["balance"]) for b in r.json()] == [(POOL, "5.0000"), (REG, "-5.0000"), (POOL, "5.0000")]

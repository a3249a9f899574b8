"""Review: one batch, two doors (SQLite and PostgreSQL).

The ledger takes transfers over HTTP (POST /v1/transfers) and as TransfersRequested commands on
countypool.ledger.commands. A county's quota and settlement services use the Kafka door, its operators and
finance systems the HTTP one: the same batch must have the same outcome whichever door it came through, result by
result, in the outcome events the outbox publishes and in the balances afterwards.

Each test runs one ledger service (relay and consumer stopped, its clock the test's) and plays the same scenario
twice, on two sets of accounts of its own: once over HTTP, once as command records applied by the service's own
consumer (``IdempotentConsumer._apply``, as test_review_kafka_commands does: nothing is produced to the shared
command topic, so no other test's ledger takes these commands; dead letters go to the real
``countypool.ledger.commands.dlq``, their reasons read from the consumer's counter). The outcome events are read
from the outbox, row for row what the relay publishes. The cross-door tests use one set of accounts and ids for
both doors.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from prometheus_client import REGISTRY
from sqlalchemy import func, select

from shared.contracts import topics
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from shared.envelope import new_envelope
from tests.support.services import ADMIN, running_service

QUOTA = "/countypool/quota"


@dataclass
class Answer:
    """What one door said about one batch. HTTP: ``status`` 200 with ``results`` (one result string per transfer)
    or 422 with ``reason``. Kafka: ``status`` 'applied', or 'dlq' with ``reason``. ``events``: transfer name ->
    [(event, reason, amount, pending name)] the batch wrote to the outbox, in order."""

    status: object
    results: list[str] | None = None
    reason: str | None = None
    events: dict[str, list[tuple]] = field(default_factory=dict)
    raw: list[dict] = field(default_factory=list)


class Rig:
    """A ledger service, its clock held by the test, and the record offsets of the commands fed to its consumer."""

    def __init__(self, rt, client):
        self.rt, self.client = rt, client
        self.tag = uuid.uuid4().hex[:6]
        self.offset = 0
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        client.app.state.ledger.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def outbox_end(self) -> int:
        o = self.rt.tables["outbox"]
        with self.rt.db.sessions() as s:
            return s.execute(select(func.coalesce(func.max(o.c.position), 0))).scalar_one()

    def outbox_since(self, position: int) -> list[dict]:
        o = self.rt.tables["outbox"]
        with self.rt.db.sessions() as s:
            return [json.loads(e) for e in s.execute(
                select(o.c.envelope).where(o.c.position > position).order_by(o.c.position)).scalars()]

    def poll(self, *values: bytes) -> None:
        recs = []
        for v in values:
            recs.append(SimpleNamespace(topic=topics.LEDGER_COMMANDS, partition=0, offset=self.offset,
                                        key=f"batch-{self.tag}".encode(), value=v, headers=[]))
            self.offset += 1
        self.rt.consumer._apply(recs)


def _dead_lettered(reason: str) -> float:
    return REGISTRY.get_sample_value("countypool_events_dead_lettered_total", {
        "service": "ledger", "topic": topics.LEDGER_COMMANDS, "reason": reason}) or 0.0


DLQ_REASONS = ("amount_exceeds_scale", "amount_must_not_be_zero", "amount_must_not_be_negative", "amount_too_large",
               "amount_not_a_number", "asset_unknown", "linked_event_chain_open", "invalid_payload",
               "account_spec_invalid", "invalid_value", "handler_error", "handler_db_error")


class Door:
    """One door (``kind`` 'http' or 'kafka') onto a set of accounts named by role."""

    def __init__(self, rig: Rig, kind: str, prefix: str | None = None):
        self.rig, self.kind = rig, kind
        self.prefix = prefix or f"{kind[0]}{rig.tag}"
        county = str(uuid.uuid4().int % 900000 + 100000)
        p = self.prefix
        # role -> (account id, asset, address, flags or None for the address's default)
        self.accounts = {
            "reg": (f"external:rr-{p}/COD", "COD", f"external:rr-{p}", None),
            "pool": (f"county:{county}/pool/COD", "COD", f"county:{county}/pool", None),
            "proj": (f"project:P-{p}/COD", "COD", f"project:P-{p}", None),
            "cny": (f"county:{county}/pool/CNY", "CNY", f"county:{county}/pool", None),
            "shut": (f"project:S-{p}/COD", "COD", f"project:S-{p}", ["closed"]),
            # holds a debit balance: credits may not exceed its debits
            "cap": (f"park:K-{p}/COD", "COD", f"park:K-{p}", ["credits_must_not_exceed_debits"]),
        }
        self.opened = False
        self.commands: list[str] = []

    # -- names ------------------------------------------------------------------------------------------------
    def tid(self, name: str) -> str:
        return f"{name}-{self.prefix}" if name else ""

    def name(self, tid: str) -> str:
        return tid[: -len(self.prefix) - 1] if tid.endswith(f"-{self.prefix}") else tid

    def acct(self, role: str) -> str:
        if role in self.accounts:
            return self.accounts[role][0]
        return f"county:999999/{role}-{self.prefix}/COD" if role else ""  # never opened

    def specs(self) -> list[dict]:
        out = []
        for aid, asset, address, flags in self.accounts.values():
            d = {"account_id": aid, "asset": asset, "address": address}
            if flags is not None:
                d["flags"] = flags
            out.append(d)
        return out

    def transfer(self, name: str, dr: str = "", cr: str = "", amount: str = "1", asset: str = "COD", **kw) -> dict:
        d = {"transfer_id": self.tid(name), "debit_account": self.acct(dr), "credit_account": self.acct(cr),
             "asset": asset, "amount": amount, "code": kw.pop("code", "review")}
        for k in ("post_pending_id", "void_pending_id"):
            if k in kw:
                kw[k] = self.tid(kw[k])
        d.update(kw)
        return d

    # -- doors ------------------------------------------------------------------------------------------------
    def open_http(self) -> dict:
        r = self.rig.client.post("/v1/accounts", headers=ADMIN, json={"accounts": self.specs()})
        assert r.status_code == 200, r.text
        self.opened = True
        return r.json()

    def send(self, batch: list[tuple]) -> Answer:
        """``batch``: (name, debit role, credit role, amount, extra fields) per transfer."""
        transfers = [self.transfer(n, dr, cr, amt, **kw) for n, dr, cr, amt, kw in batch]
        mark = self.rig.outbox_end()
        if self.kind == "http":
            if not self.opened:
                self.open_http()
            r = self.rig.client.post("/v1/transfers", headers=ADMIN, json={"transfers": transfers})
            if r.status_code == 200:
                ans = Answer(200, results=[x["result"] for x in r.json()["results"]])
            else:
                assert r.status_code == 422, r.text
                ans = Answer(422, reason=r.json()["reason"])
        else:
            opens = [] if self.opened else [AccountSpec(**d) for d in self.specs()]
            self.opened = True
            cmd = TransfersRequested(transfers=[TransferSpec(**t) for t in transfers], open_accounts=opens)
            env = new_envelope(cmd, subject=f"batch-{self.prefix}", source=QUOTA)
            self.commands.append(env.id)
            before = {r: _dead_lettered(r) for r in DLQ_REASONS}
            n = self.rig.rt.consumer.stats.dead_lettered
            self.rig.poll(env.to_json())
            if self.rig.rt.consumer.stats.dead_lettered > n:
                why = [r for r in DLQ_REASONS if _dead_lettered(r) > before[r]]
                ans = Answer("dlq", reason=why[0] if why else "?")
            else:
                ans = Answer("applied")
        ans.raw = self.rig.outbox_since(mark)
        for d in ans.raw:
            data = d["data"]
            if "transfer_id" not in data:
                continue
            ans.events.setdefault(self.name(data["transfer_id"]), []).append(
                (d["type"].split(".")[1], data.get("reason"), data["amount"], self.name(data.get("pending_id", ""))))
        return ans

    def balances(self) -> dict[str, tuple]:
        out = {}
        for role in self.accounts:
            b = self.rig.client.get(f"/v1/accounts/{self.acct(role)}", headers=ADMIN).json()
            out[role] = (b["debits_pending"], b["debits_posted"], b["credits_pending"], b["credits_posted"])
        return out

    def state(self, name: str) -> tuple:
        r = self.rig.client.get(f"/v1/transfers/{self.tid(name)}", headers=ADMIN)
        if r.status_code == 404:
            j = r.json()
            return ("failed", j["details"]["result"]) if j["reason"] == "transfer_failed" else ("none",)
        j = r.json()
        return (j["status"], j["amount"], j["posted_amount"])


def T(name: str, dr: str = "", cr: str = "", amount: str = "1", **kw) -> tuple:
    return (name, dr, cr, amount, kw)


def _service(db_url, kafka_bootstrap):
    return running_service("ledger", db_url, kafka_bootstrap, background=False)


def _both(rig: Rig, batches: list[list[tuple]], advance: dict[int, float] | None = None):
    """The batches over HTTP on one set of accounts and as commands on another: (http door, kafka door,
    [(http answer, kafka answer)] per batch). ``advance``: seconds the clock moves before batch i (both doors at
    the same moments)."""
    h, k = Door(rig, "http"), Door(rig, "kafka")
    answers = []
    start = rig.now
    for door in (h, k):
        rig.now = start
        got = []
        for i, b in enumerate(batches):
            rig.advance((advance or {}).get(i, 0))
            got.append(door.send(b))
        answers.append(got)
    return h, k, list(zip(*answers))


def _expected_kafka(http: Answer, repeats: dict[str, list[tuple]] | None = None) -> dict[str, list[tuple]]:
    """What the commands door should have published for a batch the HTTP door answered ``http``: the same new
    outcomes, plus the answers to repeated ids (``repeats``, name -> events) that only Kafka senders get."""
    out = {n: list(v) for n, v in http.events.items()}
    for n, evs in (repeats or {}).items():
        out.setdefault(n, []).extend(evs)
    return out


def _no_account_events(ans: Answer) -> list[tuple]:
    return [(d["type"].split(".")[1], d["data"]["account_id"]) for d in ans.raw if "account_id" in d["data"]]


# -- posted, pending with timeout, posted fully / partly / with 0, voided ------------------------------------------

def test_pending_posted_in_full_in_part_and_by_zero_and_voided_has_one_outcome_on_both_doors(db_url, kafka_bootstrap):
    """A reservation (pending) posted fully, partly or with "0" (= the full amount), or voided, and retries of each:
    if a door posted another amount, or named another result, a project would be allocated a different quantity of
    COD depending on which service asked, and the county's pool would not reconcile."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [
            [T("fund", "reg", "pool", "10"),
             T("h1", "pool", "proj", "3", pending=True, timeout_seconds=3600),
             T("h2", "pool", "proj", "2.5", pending=True, timeout_seconds=3600),
             T("h3", "pool", "proj", "1", pending=True, timeout_seconds=3600),
             T("h4", "pool", "proj", "2", pending=True, timeout_seconds=3600)],
            [T("p1", "", "", "0", post_pending_id="h1"),            # 0 = the full amount
             T("p2", "", "", "1.5", post_pending_id="h2"),          # partial: 1 released
             T("v3", "", "", "0", void_pending_id="h3"),
             T("p4", "", "", "2", post_pending_id="h4")],           # its full amount stated
            [T("p1", "", "", "0", post_pending_id="h1"),            # exists
             T("p2", "", "", "0", post_pending_id="h2"),            # 0 asked for all of h2: another amount
             T("v3", "", "", "0", void_pending_id="h3"),            # exists
             T("p4", "", "", "0", post_pending_id="h4"),            # 0 = h4's full amount, which p4 posted
             T("p5", "", "", "0", post_pending_id="h1")],           # h1 already posted
        ]
        h, k, answers = _both(rig, batches)
        (h0, k0), (h1, k1), (h2, k2) = answers
        assert h0.results == ["ok"] * 5 and k0.status == "applied"
        assert h1.results == ["ok"] * 4 and k1.status == "applied"
        assert h2.results == ["exists", "exists_with_different_amount", "exists", "exists",
                              "pending_transfer_already_posted"]
        for ha, ka in ((h0, k0), (h1, k1)):
            assert ka.events == ha.events, (ha.events, ka.events)
        assert h1.events["p2"] == [("TransferPosted", None, "1.5000", "h2")]
        assert k2.events == _expected_kafka(h2, {
            "p1": [("TransferPosted", None, "3.0000", "h1")], "v3": [("TransferVoided", None, "1.0000", "h3")],
            "p4": [("TransferPosted", None, "2.0000", "h4")]}), k2.events
        assert h.balances() == k.balances()
        assert h.balances()["proj"] == ("0.0000", "0.0000", "0.0000", "6.5000")
        assert [h.state(n) for n in ("h1", "h2", "h3")] == [k.state(n) for n in ("h1", "h2", "h3")] == [
            ("posted_pending", "3.0000", "3.0000"), ("posted_pending", "2.5000", "1.5000"),
            ("voided", "1.0000", "0.0000")]


def test_a_hold_that_timed_out_expires_alike_and_its_late_post_is_refused_on_both_doors(db_url, kafka_bootstrap):
    """A reservation past its timeout: the next batch on either door finds it expired (dated at its timeout), its
    post refused, its amount free again. Otherwise a project could take quota after its reservation lapsed, or the
    pool stay blocked, depending on the door."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [
            [T("fund", "reg", "pool", "5"), T("hold", "pool", "proj", "4", pending=True, timeout_seconds=60)],
            [T("post", "", "", "0", post_pending_id="hold"), T("spend", "pool", "proj", "5")],
            [T("hold", "pool", "proj", "4", pending=True, timeout_seconds=60), T("post", "", "", "0", post_pending_id="hold")],
        ]
        h, k, answers = _both(rig, batches, advance={1: 61})
        (h0, k0), (h1, k1), (h2, k2) = answers
        assert h1.results == ["pending_transfer_expired", "ok"]
        assert h2.results == ["exists", "pending_transfer_expired"]
        assert k0.events == h0.events and k1.events == h1.events
        assert h1.events["hold"] == [("TransferExpired", None, "4.0000", "hold")]
        exp = {d["data"]["transfer_id"]: d["data"] for d in h1.raw + k1.raw if d["type"].endswith("Expired.v1")}
        pend = {d["data"]["transfer_id"]: d["data"] for d in h0.raw + k0.raw if d["type"].endswith("Pending.v1")}
        assert {t: (d["at"] == pend[t]["expires_at"]) for t, d in exp.items()} == {
            h.tid("hold"): True, k.tid("hold"): True}, "dated at its timeout on both doors"
        # a repeat of the lapsed hold over Kafka is answered with its expiry, its failed post with its refusal
        assert k2.events == _expected_kafka(h2, {"hold": [("TransferExpired", None, "4.0000", "hold")],
                                                 "post": [("TransferRejected", "pending_transfer_expired", "0.0000", "hold")]})
        assert h.balances() == k.balances()
        assert h.balances()["pool"] == ("0.0000", "5.0000", "0.0000", "5.0000")


# -- linked chains ----------------------------------------------------------------------------------------------

def test_chains_with_a_failing_member_name_the_failure_and_link_the_rest_on_both_doors(db_url, kafka_bootstrap):
    """Chains (a release into the pool linked with its retired share) that fail at the first, a middle and the last
    member, for different reasons, beside transfers outside the chain: nothing of a failed chain may take effect
    and each door must say the same result for each member, or quota would count a release as taken on one door."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [
            [T("fund", "reg", "pool", "10")],
            [T("a1", "pool", "proj", "1", linked=True), T("a2", "pool", "proj", "50", linked=True),
             T("a3", "pool", "proj", "1"),
             T("solo", "pool", "proj", "2"),
             T("b1", "nowhere", "pool", "1", linked=True), T("b2", "reg", "pool", "1"),
             T("c1", "reg", "pool", "1", linked=True), T("c2", "pool", "proj", "1", linked=True),
             T("c3", "pool", "shut", "1"),
             T("d1", "pool", "proj", "1", pending=True, timeout_seconds=60, linked=True),
             T("d2", "", "", "0", post_pending_id="d1", linked=True), T("d3", "pool", "cny", "1")]]
        h, k, answers = _both(rig, batches)
        (_, _), (h1, k1) = answers
        assert h1.results == ["linked_event_failed", "exceeds_credits", "linked_event_failed", "ok",
                              "debit_account_not_found", "linked_event_failed",
                              "linked_event_failed", "linked_event_failed", "credit_account_closed",
                              "linked_event_failed", "linked_event_failed", "accounts_must_have_the_same_asset"]
        assert k1.events == h1.events, (h1.events, k1.events)
        assert {n: e[0][:2] for n, e in k1.events.items()} == {
            n: (("TransferPosted", None) if r == "ok" else ("TransferRejected", r))
            for n, r in zip(["a1", "a2", "a3", "solo", "b1", "b2", "c1", "c2", "c3", "d1", "d2", "d3"], h1.results)}
        assert h.balances() == k.balances()
        assert h.balances()["pool"] == ("0.0000", "2.0000", "0.0000", "10.0000")
        assert [h.state(n) for n in ("a1", "a2", "d1")] == [k.state(n) for n in ("a1", "a2", "d1")]


# -- idempotency on one door ---------------------------------------------------------------------------------------

def test_a_resubmitted_id_answers_exists_or_names_the_field_that_differs_on_both_doors(db_url, kafka_bootstrap):
    """The same id with the same fields is 'exists'; with one field changed, that field is named and nothing
    moves. A door that applied a changed retry would post a county's quota twice."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        base = dict(refs=["REL-1"], metadata={"lot": "L1"})
        batches = [
            [T("fund", "reg", "pool", "10"), T("x", "pool", "proj", "2", **base),
             T("hold", "pool", "proj", "1", pending=True, timeout_seconds=600)],
            [T("x", "pool", "proj", "2", **base),
             T("x", "pool", "proj", "2.0001", **base),
             T("x", "pool", "proj", "2", code="other", **base),
             T("x", "pool", "proj", "2", refs=["REL-2"], metadata={"lot": "L1"}),
             T("x", "pool", "proj", "2", refs=["REL-1"], metadata={"lot": "L2"}),
             T("x", "reg", "proj", "2", **base),
             T("x", "pool", "shut", "2", **base),
             T("x", "pool", "proj", "2", pending=True, **base),
             T("x", "pool", "proj", "2", asset="CNY", **base),
             T("hold", "pool", "proj", "1", pending=True, timeout_seconds=601),
             T("hold", "pool", "proj", "1", pending=True, timeout_seconds=600)]]
        h, k, answers = _both(rig, batches)
        (h0, k0), (h1, k1) = answers
        assert h1.results == ["exists", "exists_with_different_amount", "exists_with_different_code",
                              "exists_with_different_refs", "exists_with_different_metadata",
                              "exists_with_different_debit_account_id", "exists_with_different_credit_account_id",
                              "exists_with_different_flags", "exists_with_different_asset",
                              "exists_with_different_timeout", "exists"]
        assert k0.events == h0.events
        assert h1.events == {}, "retries over HTTP publish nothing"
        assert k1.events == {"x": [("TransferPosted", None, "2.0000", "")],
                             "hold": [("TransferPending", None, "1.0000", "")]}, k1.events
        assert h.balances() == k.balances()


def test_an_id_whose_first_attempt_failed_stays_failed_on_both_doors(db_url, kafka_bootstrap):
    """A transfer refused (exceeds_credits, an unknown account, a closed account) is refused again with the same
    result after the cause is gone: a retry must never flip an outcome that quota has already acted on."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [
            [T("short", "pool", "proj", "1"), T("ghost", "reg", "later", "1"), T("p0", "", "", "0", post_pending_id="nohold")],
            [T("fund", "reg", "pool", "10"), T("nohold", "pool", "proj", "1", pending=True, timeout_seconds=60)],
            [T("short", "pool", "proj", "1"), T("ghost", "reg", "later", "1"), T("p0", "", "", "0", post_pending_id="nohold"),
             T("short", "pool", "proj", "2")],
        ]
        h, k, answers = _both(rig, batches)
        (h0, k0), (h1, k1), (h2, k2) = answers
        assert h0.results == ["exceeds_credits", "credit_account_not_found", "pending_transfer_not_found"]
        assert h2.results == ["exceeds_credits", "credit_account_not_found", "pending_transfer_not_found",
                              "exceeds_credits"]
        assert k0.events == h0.events and k1.events == h1.events
        assert k2.events == {"short": [("TransferRejected", "exceeds_credits", "1.0000", "")],
                             "ghost": [("TransferRejected", "credit_account_not_found", "1.0000", "")],
                             "p0": [("TransferRejected", "pending_transfer_not_found", "0.0000", "nohold")]}, k2.events
        assert h.balances() == k.balances()
        assert h.balances()["proj"] == ("0.0000", "0.0000", "1.0000", "0.0000")


# -- idempotency across doors ------------------------------------------------------------------------------------

def _shared_doors(rig: Rig) -> tuple[Door, Door]:
    h = Door(rig, "http", prefix=f"x{rig.tag}")
    k = Door(rig, "kafka", prefix=h.prefix)
    k.accounts = h.accounts  # one set of accounts, one set of ids
    return h, k


CROSS = [T("fund", "reg", "pool", "10"),
         T("hold", "pool", "proj", "3", pending=True, timeout_seconds=3600),
         T("big", "pool", "proj", "100"),
         T("c1", "pool", "proj", "1", linked=True), T("c2", "pool", "shut", "1")]


def test_a_batch_taken_over_http_and_then_sent_as_a_command_is_answered_not_applied_again(db_url, kafka_bootstrap):
    """Quota re-sends over Kafka what an operator already entered over HTTP: every id stands as it was (posted,
    pending, failed with the same reason), is answered with its outcome, and moves nothing a second time."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        h, k = _shared_doors(rig)
        first = h.send(CROSS)
        assert first.results == ["ok", "ok", "exceeds_credits", "linked_event_failed", "credit_account_closed"]
        before = h.balances()
        again = k.send(CROSS)
        assert again.status == "applied"
        assert _no_account_events(again) == []
        assert again.events == {"fund": [("TransferPosted", None, "10.0000", "")],
                                "hold": [("TransferPending", None, "3.0000", "")],
                                "big": [("TransferRejected", "exceeds_credits", "100.0000", "")],
                                "c1": [("TransferRejected", "linked_event_failed", "1.0000", "")],
                                "c2": [("TransferRejected", "credit_account_closed", "1.0000", "")]}, again.events
        assert k.balances() == before
        changed = k.send([T("fund", "reg", "pool", "11"), T("hold", "pool", "proj", "3", pending=True, timeout_seconds=60)])
        assert changed.events == {} and k.balances() == before
        assert h.send([T("fund", "reg", "pool", "11")]).results == ["exists_with_different_amount"]


def test_a_batch_sent_as_a_command_and_then_over_http_answers_exists_and_the_same_failures(db_url, kafka_bootstrap):
    """The reverse: what a command did first, HTTP answers 'exists' (or the same failure) for, result by result,
    with nothing moved and nothing published again."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        h, k = _shared_doors(rig)
        first = k.send(CROSS)
        assert first.status == "applied"
        assert {n: e[0][:2] for n, e in first.events.items()} == {
            "fund": ("TransferPosted", None), "hold": ("TransferPending", None),
            "big": ("TransferRejected", "exceeds_credits"), "c1": ("TransferRejected", "linked_event_failed"),
            "c2": ("TransferRejected", "credit_account_closed")}
        before = k.balances()
        h.opened = True  # the command opened them
        again = h.send(CROSS)
        assert again.results == ["exists", "exists", "exceeds_credits", "linked_event_failed", "credit_account_closed"]
        # c1 never stood (linked_event_failed reserves no id): told again, as any new id would be
        assert again.events == {"c1": [("TransferRejected", "linked_event_failed", "1.0000", "")]}
        assert h.balances() == before
        post = h.send([T("post", "", "", "1", post_pending_id="hold")])
        assert post.results == ["ok"]
        assert k.send([T("post", "", "", "1", post_pending_id="hold")]).events == {
            "post": [("TransferPosted", None, "1.0000", "hold")]}
        assert k.balances()["proj"] == ("0.0000", "0.0000", "0.0000", "1.0000")


# -- amounts -----------------------------------------------------------------------------------------------------

def test_amounts_with_too_many_decimals_zero_negative_or_too_large_refuse_the_whole_batch_on_both_doors(
        db_url, kafka_bootstrap):
    """A bad amount anywhere in a batch refuses the batch with the same reason on both doors, and nothing of it
    (not its good transfers, not an id) is taken: one door half-applying a batch the other refuses would split a
    release from its retired share."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        cases = {"1.00001": "amount_exceeds_scale", "0": "amount_must_not_be_zero", "0.0000": "amount_must_not_be_zero",
                 "-1": "amount_must_not_be_negative", "922337203685477.5808": "amount_too_large",
                 "99999999999999999999": "amount_too_large"}
        h, k = Door(rig, "http"), Door(rig, "kafka")
        h.open_http()
        k.send([T("fund", "reg", "pool", "10")])
        seen = {}
        for i, (amount, reason) in enumerate(cases.items()):
            batch = [T(f"good{i}", "pool", "proj", "1"), T(f"bad{i}", "pool", "proj", amount)]
            ha, ka = h.send(batch), k.send(batch)
            seen[amount] = (ha.status, ha.reason, ka.status, ka.reason)
            assert ha.events == {} and ka.events == {}
        assert seen == {a: (422, r, "dlq", r) for a, r in cases.items()}
        assert h.state("bad0") == k.state("bad0") == ("none",), "a refused batch reserves no id"
        assert k.balances()["proj"] == ("0.0000", "0.0000", "0.0000", "0.0000")


def test_amounts_at_and_beyond_what_a_balance_holds_have_one_outcome_on_both_doors(db_url, kafka_bootstrap):
    """The largest amount the books take, then one unit more on the same account: refused overflows_* on both doors,
    never stored as a wrapped or truncated figure."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        top = "922337203685477.5807"  # 2**63 - 1 units of COD
        batches = [[T("max", "reg", "proj", top)],
                   [T("one", "pool", "proj", "0.0001"), T("more", "reg", "pool", "0.0001"),
                    T("back", "proj", "pool", "0.0001"), T("then", "pool", "reg", "0.0001")]]
        h, k, answers = _both(rig, batches)
        (h0, k0), (h1, k1) = answers
        assert h0.results == ["ok"] and k0.events == h0.events
        assert h1.results == ["overflows_credits", "overflows_debits", "ok", "ok"]
        assert k1.events == h1.events
        assert h.balances() == k.balances()
        assert h.balances()["proj"] == ("0.0000", "0.0001", "0.0000", top)
        assert h.balances()["reg"] == ("0.0000", top, "0.0000", "0.0001")


# -- accounts and assets --------------------------------------------------------------------------------------------

def test_unknown_accounts_assets_mixed_assets_and_closed_accounts_have_one_outcome_on_both_doors(db_url, kafka_bootstrap):
    """Each refusal named alike on both doors (and published with the asset and amount as sent), so that a county's
    operator and its quota service see the same reason for the same transfer."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [
            [T("fund", "reg", "pool", "10"), T("cnyfund", "reg", "cny", "1")],
            [T("nodebit", "nobody", "pool", "1"), T("nocredit", "pool", "nobody", "1"),
             T("mixed", "pool", "cny", "1"), T("stated", "pool", "proj", "1", asset="CNY"),
             T("toshut", "pool", "shut", "1"), T("same", "pool", "pool", "1"),
             T("ok", "pool", "proj", "1")],
            [T("gold", "pool", "proj", "1", asset="GOLD")],
        ]
        h, k, answers = _both(rig, batches)
        (h0, k0), (h1, k1), (h2, k2) = answers
        assert h0.results == ["ok", "accounts_must_have_the_same_asset"]
        assert h1.results == ["debit_account_not_found", "credit_account_not_found", "accounts_must_have_the_same_asset",
                              "asset_differs_from_accounts", "credit_account_closed", "accounts_must_be_different", "ok"]
        assert k0.events == h0.events and k1.events == h1.events, (h1.events, k1.events)
        assert (h2.status, h2.reason, k2.status, k2.reason) == (422, "asset_unknown", "dlq", "asset_unknown")
        assert h.balances() == k.balances()


def test_a_closed_debit_account_and_the_second_phase_on_a_closed_account_on_both_doors(db_url, kafka_bootstrap):
    """A closed account takes no new transfer (either side); a hold into an account refused closed is never taken,
    so its post finds nothing. A door that let one through would move quota into (or out of) an account the county
    has closed, e.g. an enterprise that has exited."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [[T("from", "shut", "pool", "1"), T("hold", "pool", "shut", "1", pending=True, timeout_seconds=60),
                    T("post", "", "", "0", post_pending_id="hold")]]
        h, k, answers = _both(rig, batches)
        ((h0, k0),) = answers
        assert h0.results == ["debit_account_closed", "credit_account_closed", "pending_transfer_not_found"]
        assert k0.events == h0.events
        assert h.balances() == k.balances()


# -- flags at the exact limit --------------------------------------------------------------------------------------

def test_flags_at_the_exact_limit_with_pending_debits_counted_on_both_doors(db_url, kafka_bootstrap):
    """debits_must_not_exceed_credits: holds and transfers up to exactly the pool's balance go through, one unit
    more is exceeds_credits; credits_must_not_exceed_debits the mirror. A door off by one unit would let a pool go
    below zero (quota allocated that does not exist) or refuse the last unit a county holds."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        batches = [
            [T("fund", "reg", "pool", "5"), T("owe", "cap", "reg", "2")],
            [T("hold", "pool", "proj", "2", pending=True, timeout_seconds=600), T("rest", "pool", "proj", "3"),
             T("unit", "pool", "proj", "0.0001"),
             T("capok", "reg", "cap", "2"), T("capmore", "reg", "cap", "0.0001")],
            [T("void", "", "", "0", void_pending_id="hold"), T("again", "pool", "proj", "2"),
             T("over", "pool", "proj", "0.0001")],
        ]
        h, k, answers = _both(rig, batches)
        (h0, k0), (h1, k1), (h2, k2) = answers
        assert h1.results == ["ok", "ok", "exceeds_credits", "ok", "exceeds_debits"]
        assert h2.results == ["ok", "ok", "exceeds_credits"]
        for ha, ka in answers:
            assert ka.events == ha.events
        assert h.balances() == k.balances()
        assert h.balances()["pool"] == ("0.0000", "5.0000", "0.0000", "5.0000")


# -- opening accounts -------------------------------------------------------------------------------------------

def test_accounts_opened_over_http_and_by_a_command_are_announced_alike(db_url, kafka_bootstrap):
    """Every account opened is announced once as AccountOpened with the same flags, whichever door opened it:
    settlement and quota learn of accounts only from these events."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        h, k = Door(rig, "http"), Door(rig, "kafka")
        mark = rig.outbox_end()
        h.open_http()
        h_opened = [(d["data"]["address"].split(":")[0], d["data"]["asset"], d["data"]["flags"])
                    for d in rig.outbox_since(mark) if d["type"].endswith("AccountOpened.v1")]
        ka = k.send([T("fund", "reg", "pool", "1")])
        k_opened = [(d["data"]["address"].split(":")[0], d["data"]["asset"], d["data"]["flags"])
                    for d in ka.raw if d["type"].endswith("AccountOpened.v1")]
        assert sorted(h_opened) == sorted(k_opened) and len(h_opened) == 6
        assert ("project", "COD", ["debits_must_not_exceed_credits", "closed"]) not in h_opened  # flags as given
        assert ("project", "COD", ["closed"]) in h_opened and ("external", "COD", []) in h_opened


# -- one command cut into polls differently ---------------------------------------------------------------------------

def test_a_refused_id_repeated_by_a_second_command_is_answered_whether_or_not_kafka_polled_them_together(
        db_url, kafka_bootstrap):
    """Quota restored from a backup asks again for a transfer the ledger refused (exceeds_credits). The README says
    a command that repeats the same failure is answered again with its rejection, as one repeating a posted id is
    answered with TransferPosted. Whether the first and the repeat arrive in one poll or two is Kafka's choice: the
    repeat's sender must get its answer either way, or it waits forever for the outcome of its request."""
    with _service(db_url, kafka_bootstrap) as (rt, client):
        rig = Rig(rt, client)
        k = Door(rig, "kafka")
        k.send([T("fund", "reg", "pool", "1")])

        def cmd(*batch):
            c = TransfersRequested(transfers=[TransferSpec(**k.transfer(n, dr, cr, a, **kw)) for n, dr, cr, a, kw in batch])
            return new_envelope(c, subject=f"b-{k.prefix}", source=QUOTA)

        chain = (T("c1", "reg", "pool", "1", linked=True), T("c2", "pool", "proj", "1000"))
        pairs = {  # name -> (the first command and its repeat apart, the same in one poll)
            "refused": ([T("refusedA", "pool", "proj", "5")], [T("refusedB", "pool", "proj", "5")]),
            "posted": ([T("postedA", "reg", "pool", "1")], [T("postedB", "reg", "pool", "1")]),
            "chain": ([(n + "A", *rest) for n, *rest in chain], [(n + "B", *rest) for n, *rest in chain]),
        }
        apart, together = {}, {}
        for what, (a, b) in pairs.items():
            envs = [cmd(*a), cmd(*a)]
            for e in envs:  # one poll each
                rig.poll(e.to_json())
            apart[what] = envs
            envs = [cmd(*b), cmd(*b)]
            rig.poll(*(e.to_json() for e in envs))  # both in one poll
            together[what] = envs
        docs = rig.outbox_since(0)

        def answered(envs):
            return [sum(1 for d in docs if d.get("causationid") == e.id) for e in envs]

        assert {w: answered(e) for w, e in apart.items()} == {"refused": [1, 1], "posted": [1, 1], "chain": [2, 2]}
        assert {w: answered(e) for w, e in together.items()} == {"refused": [1, 1], "posted": [1, 1], "chain": [2, 2]}, (
            "a repeat of refused ids polled together with the command that was refused first got no answer")

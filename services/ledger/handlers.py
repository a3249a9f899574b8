"""Commands and events in, events out: the ledger's application layer, shared by the HTTP API and the Kafka
consumer. One call = one locked, consistent view, one engine run, one persisted outcome plus its events, all
in the caller's transaction."""
from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Mapping

from sqlalchemy.orm import Session

from services.ledger.domain import (
    DEFAULT_ASSETS,
    AccountBatchOutcome,
    AccountFlags,
    AccountResult,
    Asset,
    BatchOutcome,
    FailedTransfer,
    NewAccount,
    Transfer,
    TransferRequest,
    TransferResult,
    TransferStatus,
    apply_batch,
    create_accounts,
    expire_pending,
)
from services.ledger.storage.repository import SMALL, LedgerRepository, LoadedView
from shared.amounts import AmountError, parse_amount
from shared.consumer import MessageContext, Rejected
from shared.contracts import topics
from shared.contracts.ledger import (
    AccountOpened,
    AccountSpec,
    TransferExpired,
    TransferPending,
    TransferPosted,
    TransferRejected,
    TransfersRequested,
    TransferSpec,
    TransferVoided,
)
from shared.envelope import Envelope, new_envelope, new_event_ids
from shared.logs import correlation_id
from shared.message_bus import MessageBus
from shared.outbox import Outbox
from services.ledger.metrics import EXPIRY_STUCK, count_when_committed
from services.ledger.outcomes import OutboxRows

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
# enum members read once: an Enum attribute lookup goes through a descriptor (per transfer, it shows)
_OK, _EXISTS, _VOIDED = TransferResult.ok, TransferResult.exists, TransferStatus.voided


class BadTransfer(ValueError):
    """A request that cannot even be turned into a transfer (unknown asset, bad amount)."""

    def __init__(self, index: int, reason: str, message: str):
        super().__init__(message)
        self.index = index
        self.reason = reason


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def amount_units(text, scale: int, *, allow_zero: bool = False) -> int:
    """``parse_amount(text, scale, allow_zero=...)`` with a fast path for the common case, a plain non-negative
    decimal of ASCII digits with nothing around it (at most 18 digits of units), parsed
    with int arithmetic; anything else (sign, whitespace, too many decimals, zero where not allowed) goes to
    parse_amount, which gives the same figure or the same error."""
    if type(text) is str and text.isascii():
        whole, dot, frac = text.partition(".")
        if (whole.isdigit() and len(whole) + scale <= 18  # below MAX_UNITS; longer ones are checked there
                and (not dot or (frac.isdigit() and len(frac) <= scale))):
            units = int(whole) * 10**scale + (int(frac) * 10 ** (scale - len(frac)) if dot else 0)
            if units > 0 or (units == 0 and allow_zero):
                return units
    return parse_amount(text, scale, allow_zero=allow_zero)


# An envelope's subject (its Kafka key) is 1..200 characters without control characters (shared.envelope.Envelope)
_SUBJECT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def _rejection_subject(req: TransferRequest) -> str:
    """The key of a rejection: the pending transfer a post or void names (its events stay in order), else the
    request's own id. A pending id no envelope subject can be (a line break or tab pasted with it: every consumer
    dead-lettered the rejection ``invalid_envelope``) names no transfer; the request's id keys its answer."""
    pending = req.post_pending_id or req.void_pending_id
    return pending if pending and _SUBJECT.fullmatch(pending) else req.id or "unknown"


def to_request(spec: TransferSpec, assets: dict[str, Asset], index: int = 0) -> TransferRequest:
    asset = assets.get(spec.asset)
    if asset is None:
        raise BadTransfer(index, "asset_unknown", f"transfers[{index}]: unknown asset {spec.asset!r}")
    second_phase = bool(spec.post_pending_id or spec.void_pending_id)
    try:
        amount = amount_units(spec.amount, asset.scale, allow_zero=second_phase)
    except AmountError as exc:
        raise BadTransfer(index, exc.reason, f"transfers[{index}].amount: {exc}") from None
    # PostgreSQL text cannot hold NUL: such an account or pending id failed the lookup with a 500 (SQLite: a
    # stored not_found), such a code the insert. Refused here, on both databases and both paths, with its index.
    if ("\x00" in spec.debit_account or "\x00" in spec.credit_account or "\x00" in spec.code
            or "\x00" in spec.post_pending_id or "\x00" in spec.void_pending_id):
        raise BadTransfer(index, "invalid_value", f"transfers[{index}]: an account id, pending id or code contains "
                                                  "a NUL character")
    return TransferRequest(
        id=spec.transfer_id, debit_account_id=spec.debit_account, credit_account_id=spec.credit_account,
        amount=amount, code=spec.code, pending=spec.pending, timeout_seconds=spec.timeout_seconds,
        post_pending_id=spec.post_pending_id, void_pending_id=spec.void_pending_id, linked=spec.linked,
        refs=tuple(spec.refs), metadata=dict(spec.metadata), asset=spec.asset,
    )


def to_new_account(spec: AccountSpec) -> NewAccount:
    flags = None
    if spec.flags is not None:
        flags = AccountFlags("debits_must_not_exceed_credits" in spec.flags,
                             "credits_must_not_exceed_debits" in spec.flags, "closed" in spec.flags)
    return NewAccount(spec.account_id, spec.asset, spec.address, flags)


@dataclass
class SubmitResult:
    outcome: BatchOutcome
    accounts: AccountBatchOutcome | None



OVERLAP = True  # large batches persist from a worker thread (see in_background)


@contextmanager
def in_background(fn: Callable, *args) -> Iterator[None]:
    """Run ``fn(*args)`` in a worker thread while the body runs; both must be done (and the worker's error
    raised) before the block ends. For a database call that mostly waits on the server: the caller must not
    touch the same connection inside the block."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=work, name="ledger-persist", daemon=True)
    worker.start()
    try:
        yield
    finally:
        worker.join()
    if failure:
        raise failure[0]


class LedgerApp:
    def __init__(self, outbox: Outbox, assets: dict[str, Asset] | None = None, clock: Callable[[], datetime] = utcnow):
        self.outbox = outbox
        self.assets = assets or DEFAULT_ASSETS
        self.clock = clock
        self.stuck_expiries: dict[str, str] = {}  # due pending transfers that cannot be expired: id -> why

    # -- commands ----------------------------------------------------------------------------------
    def open_accounts(self, session: Session, specs: list[NewAccount], *, causation: str | None = None) -> AccountBatchOutcome:
        repo = LedgerRepository(session)
        head = repo.lock_head()
        view = LoadedView(repo.lock_accounts(sorted({a.id for a in specs})), {}, head)
        outcome = create_accounts(view, specs, self.clock(), self.assets)
        repo.persist_accounts(outcome)
        self._emit(session, [self._account_event(a, causation) for a in outcome.accounts])
        return outcome

    def submit(self, session: Session, requests: list[TransferRequest], *, ensure_accounts: Iterable[NewAccount] = (),
               causation: str | None = None, correlations: list[tuple] | None = None,
               answer_repeats: bool = False, openers: Mapping[str, tuple] | None = None) -> SubmitResult:
        """Apply ``requests`` in order. ``correlations``: (first index, correlation id[, causation id]) of each request
        merged into this batch (group commit, or commands polled together); by default every event correlates with
        the caller's and is caused by ``causation``. ``answer_repeats``: a
        request repeating a standing id is answered again with its outcome event (see _transfer_events)."""
        if len(requests) > MAX_BATCH:
            raise BadTransfer(MAX_BATCH, "batch_too_large", f"at most {MAX_BATCH} transfers per batch")
        repo = LedgerRepository(session)
        ensure = list(ensure_accounts)
        ids = [r.id for r in requests] + [r.post_pending_id or r.void_pending_id for r in requests]
        accts = [a for r in requests for a in (r.debit_account_id, r.credit_account_id)]
        named = not ensure and not any(r.post_pending_id or r.void_pending_id for r in requests)

        def load() -> LoadedView:
            if named:  # every account is named in the batch: the head and all rows locked and read in one go
                return repo.lock_and_load(ids, accts)
            return self._load_opening(session, repo, ids, accts, ensure, causation, openers)

        view = load()
        opened = view.opened
        # The batch is judged at one moment, read once the journal head is ours (a batch may wait long for it). A hold
        # whose timeout has passed by then has ended: a post of it is refused as expired, so its amount must not
        # count against the accounts either (a transfer in the same batch was refused exceeds_credits, its id failed
        # for good). Such holds are expired first, at that moment, in this transaction, and the view read again.
        now = self.clock()
        if repo.any_due(now, skip=self.stuck_expiries):
            while self.expire_due(session, now=now):
                pass
            view = load()  # balances and the journal head moved (accounts to open were opened the first time)
        outcome = apply_batch(view, requests, now)
        rows = self._rows(causation)
        if len(requests) <= SMALL or not repo.pg or not OVERLAP:
            self._transfer_events(rows, view, requests, outcome, correlations, answer_repeats)
            # small batches: every write of the transaction in one round trip (large ones COPY)
            with repo.pipeline(len(requests) <= SMALL):
                repo.persist_batch(outcome)
                self._write(session, rows)
        else:
            # large batches: PostgreSQL takes the transfers and journal while this thread builds the events
            with in_background(repo.persist_batch, outcome):
                self._transfer_events(rows, view, requests, outcome, correlations, answer_repeats)
            self._write(session, rows)
        count_when_committed(session, requests, outcome)
        return SubmitResult(outcome, opened)

    def _load_opening(self, session: Session, repo: LedgerRepository, ids: list[str], accts: list[str],
                      ensure: list[NewAccount], causation: str | None,
                      openers: Mapping[str, tuple] | None = None) -> LoadedView:
        """The head locked, any missing account of ``ensure`` opened, then the batch's view (with the accounts of
        the pending transfers it resolves). ``view.opened`` is the accounts' outcome, or None. ``openers``: account
        id -> (causation id, correlation id) of the command that opened it, when commands were merged."""
        head = repo.lock_head()
        opened = None
        if ensure:
            # insert-or-ignore: make sure every touched account row exists before locking balances
            existing = repo.lock_accounts(sorted({a.id for a in ensure}))
            missing = [a for a in ensure if a.id not in existing]
            if missing:
                opened = create_accounts(LoadedView(existing, {}, head), missing, self.clock(), self.assets)
                repo.persist_accounts(opened)
                # each AccountOpened correlates with, and is caused by, the command that opened it (``openers``)
                self._emit(session, [self._account_event(a, *(openers or {}).get(a.id, (causation, None)))
                                     for a in opened.accounts])
                if opened.journal:
                    head = type(head)(opened.journal[-1].seq, opened.journal[-1].hash)
        view = repo.load_view(head, ids, accts)
        view.opened = opened
        return view

    def expire_due(self, session: Session, limit: int = 1000, now: datetime | None = None) -> int:
        """Expire up to ``limit`` pending transfers whose timeout has passed; returns how many. A due transfer that
        cannot be expired (its row unreadable, an account missing, an asset unknown or not its accounts') is
        left pending, logged once and counted in countypool_ledger_expiry_stuck_transfers, and passed over from
        then on (until the ledger restarts), so that it never holds up the expiry of the others."""
        repo = LedgerRepository(session)
        head = repo.lock_head()
        now = now or self.clock()  # a batch's own moment (submit), else now that the head is ours
        while True:  # each pass without a transfer to expire has passed over one more stuck id: it ends
            due, stuck = repo.due_pending(now, limit, skip=self.stuck_expiries)
            accounts = repo.lock_accounts(sorted({a for t in due for a in (t.debit_account_id, t.credit_account_id)}))
            expirable = []
            for t in due:
                why = self._unexpirable(t, accounts)
                if why:
                    stuck[t.id] = why
                else:
                    expirable.append(t)
            self._stuck(stuck)
            if expirable:
                break
            if not stuck:
                return 0
        view = LoadedView(accounts, {t.id: t for t in expirable}, head)
        outcome = expire_pending(view, expirable, now)
        repo.persist_expiry(outcome)
        rows = self._rows(None)
        self._expiry_events(rows, outcome.expired)
        self._write(session, rows)
        return len(outcome.expired)

    def _unexpirable(self, t: Transfer, accounts: dict) -> str | None:
        for side, aid in (("debit", t.debit_account_id), ("credit", t.credit_account_id)):
            a = accounts.get(aid)
            if a is None:
                return f"{side} account {aid!r} not found"
            if a.asset != t.asset:
                return f"{side} account {aid!r} is of asset {a.asset!r}, the transfer of {t.asset!r}"
        if t.asset not in self.assets:
            return f"asset {t.asset!r} unknown"
        return None

    def _stuck(self, found: dict[str, str]) -> None:
        new = {tid: why for tid, why in found.items() if tid not in self.stuck_expiries}
        for tid, why in new.items():
            log.error("pending transfer %r is due but cannot be expired (%s): left pending, passed over", tid, why)
        self.stuck_expiries.update(new)
        EXPIRY_STUCK.set(len(self.stuck_expiries))

    # -- events ------------------------------------------------------------------------------------
    def _rows(self, causation: str | None) -> OutboxRows:
        return OutboxRows(self.outbox.source, self.outbox.service, datetime.now(timezone.utc), causation)

    def _emit(self, session: Session, envelopes: list[Envelope]) -> None:
        self.outbox.add_many(session, [(e, topics.LEDGER_EVENTS) for e in envelopes])

    def _write(self, session: Session, rows: OutboxRows) -> None:
        self.outbox.add_tuples(session, rows.rows)

    def _envelope(self, event, subject: str, causation: str | None, correlation: str | None = None) -> Envelope:
        return new_envelope(event, subject=subject, source=self.outbox.source, producer=self.outbox.service,
                            correlation_id=correlation or correlation_id.get(), causation_id=causation)

    def _account_event(self, a, causation: str | None, correlation: str | None = None) -> Envelope:
        flags = [n for n in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "closed") if getattr(a.flags, n)]
        return self._envelope(AccountOpened(account_id=a.id, asset=a.asset, address=a.address, flags=flags), a.id,
                              causation, correlation)

    def _outcome_data(self, t: Transfer, pending_id: str, at: str | None) -> dict:
        """The JSON form of a TransferPosted/Voided/Expired payload, field for field as the model dumps it (our
        own, already-checked figures: the hot path builds no event model)."""
        return {"transfer_id": t.id, "debit_account": t.debit_account_id, "credit_account": t.credit_account_id,
                "asset": t.asset, "amount": self.assets[t.asset].format(t.amount), "code": t.code,
                "pending_id": pending_id, "refs": list(t.refs), "metadata": dict(t.metadata), "at": at}

    def _expiry_events(self, rows: OutboxRows, expired: list[Transfer]) -> None:
        ids = new_event_ids(len(expired))
        for t, eid in zip(expired, ids):
            rows.add(TransferExpired, self._outcome_data(t, t.id, rows.times(t.resolved_at or t.timestamp)), t.id, eid)

    def _transfer_events(self, rows: OutboxRows, view: LoadedView, requests: list[TransferRequest],
                         outcome: BatchOutcome, correlations: list[tuple] | None = None,
                         answer_repeats: bool = False) -> None:
        """One outcome event per request that did something new (ok or a first failure), in request order.
        A rejection is said at most once per id, and never for an id that belongs to a stored transfer (a retry
        with a different field, an existing member of a failed chain) or to an earlier failure: consumers key
        on the id, and that transfer stands as it was. ``correlations``: (first index, correlation id[, causation
        id]) of each request merged into this batch (see submit); by default the whole batch has the caller's.

        ``answer_repeats`` (commands over Kafka, whose senders learn outcomes only from these events): a request
        repeating a standing id (``exists``, or the same failure again) is answered again, once per batch, with
        its transfer's outcome event (or its rejection), once per command of the batch (commands of one poll are merged
into one batch: a failure first met in one command and repeated by the next is that command's answer too, or its
answers hung on how Kafka cut the polls). The sender may have lost the first answer: quota, its
        database restored from a backup, takes its releases in again and asks again; read before its lots were
        there again, the first answers were not its. Consumers key on the transfer id, so a second answer
        changes nothing. A retry with another field stays unanswered (that transfer stands as it was)."""
        new = {t.id: t for t in outcome.transfers}
        updated = {t.id: t for t in outcome.updated_transfers} if answer_repeats else {}
        ids = new_event_ids(len(requests))
        at = rows.times
        bounds = correlations or [(0, None)]
        k = 0
        corr, cause = bounds[0][1], bounds[0][2] if len(bounds[0]) > 2 else None
        rejected: set = set()  # ids whose rejection this batch (answer_repeats: this command) said
        repeated: set = set()  # standing ids answered again in this batch (answer_repeats: this command)
        failed_here: set[str] = set()  # ids whose first failure is in this batch
        for i, (req, res) in enumerate(zip(requests, outcome.results)):
            while k + 1 < len(bounds) and bounds[k + 1][0] <= i:
                k += 1
                corr, cause = bounds[k][1], bounds[k][2] if len(bounds[k]) > 2 else None
            r = res.result
            key = (k, req.id) if answer_repeats else req.id
            if r is _EXISTS:
                if answer_repeats and key not in repeated:
                    repeated.add(key)
                    # as it stands after this batch (a post of it earlier in the batch has resolved it)
                    t = updated.get(req.id) or new.get(req.id) or view.transfer(req.id)
                    self._standing_outcome(rows, t, ids[i], corr, cause)
                continue  # said once already, when it happened
            if r is _OK:
                t = new[req.id]
                pid = t.post_pending_id or t.void_pending_id
                if t.pending:
                    data = self._outcome_data(t, "", at(t.timestamp))
                    data["expires_at"] = at(t.expires_at)
                    rows.add(TransferPending, data, t.id, ids[i], correlation=corr, causation=cause)
                else:
                    cls = TransferVoided if t.status is _VOIDED else TransferPosted
                    rows.add(cls, self._outcome_data(t, pid, at(t.resolved_at or t.timestamp)), pid or t.id, ids[i],
                             correlation=corr, causation=cause)
                continue
            before = view.transfer(req.id)
            if key in rejected:
                continue
            if req.id in new or before is not None or req.id in failed_here:
                # the id stands as a transfer, or failed before: that was said when it happened (a repeat of the
                # failure, over Kafka, is answered again, also when it failed in an earlier command of this batch)
                if not (answer_repeats and (type(before) is FailedTransfer or req.id in failed_here)):
                    continue
            rejected.add(key)
            failed_here.add(req.id)
            asset = req.asset or self._asset_of(view, req)  # the stated one: its amount is in that unit
            amount = self.assets[asset].format(req.amount) if asset in self.assets else str(req.amount)
            # built from the caller's input: validated by its model
            ev = TransferRejected(transfer_id=req.id, debit_account=req.debit_account_id, credit_account=req.credit_account_id,
                                  asset=asset, amount=amount, code=req.code, pending_id=req.post_pending_id or req.void_pending_id,
                                  refs=list(req.refs), metadata=dict(req.metadata), at=self.clock(),
                                  reason=(before.result if type(before) is FailedTransfer else r).value)
            rows.add(TransferRejected, ev.model_dump(mode="json", by_alias=True), _rejection_subject(req), ids[i],
                     correlation=corr, causation=cause)

    def _standing_outcome(self, rows: OutboxRows, t: Transfer, event_id: str, corr: str | None,
                          cause: str | None = None) -> None:
        """The outcome event a standing transfer's creation published, again; a pending transfer that has expired
        since is answered TransferExpired, one posted or voided since nothing (that was said under the id of the
        transfer that resolved it)."""
        at = rows.times
        if t.pending:
            if t.status is TransferStatus.expired:
                rows.add(TransferExpired, self._outcome_data(t, t.id, at(t.resolved_at or t.timestamp)), t.id,
                         event_id, correlation=corr, causation=cause)
            elif t.status is TransferStatus.pending:
                data = self._outcome_data(t, "", at(t.timestamp))
                data["expires_at"] = at(t.expires_at)
                rows.add(TransferPending, data, t.id, event_id, correlation=corr, causation=cause)
            return
        pid = t.post_pending_id or t.void_pending_id
        cls = TransferVoided if t.status is _VOIDED else TransferPosted
        rows.add(cls, self._outcome_data(t, pid, at(t.resolved_at or t.timestamp)), pid or t.id, event_id,
                 correlation=corr, causation=cause)

    @staticmethod
    def _asset_of(view: LoadedView, req: TransferRequest) -> str:
        for aid in (req.debit_account_id, req.credit_account_id):
            a = view.account(aid)
            if a is not None:
                return a.asset
        p = view.transfer(req.post_pending_id or req.void_pending_id)
        return p.asset if isinstance(p, Transfer) else "UNKNOWN"


def build_bus(app: LedgerApp) -> tuple[MessageBus, Callable[[Session, list[MessageContext]], None]]:
    """The ledger's consumer: TransfersRequested commands, many per engine run."""
    bus = MessageBus()

    @bus.on(TransfersRequested)
    def one(ctx: MessageContext) -> None:
        _apply_commands(app, ctx.session, [ctx])

    def many(session: Session, contexts: list[MessageContext]) -> None:
        _apply_commands(app, session, contexts)

    return bus, many


def _apply_commands(app: LedgerApp, session: Session, contexts: list[MessageContext]) -> None:
    """Apply whole commands in runs of at most MAX_BATCH transfers (a chain never straddles two runs).
    Rejected from a run of several commands refuses the run, not a command: the consumer rolls it back and
    applies the commands one by one, so only a command that is refused alone is dead-lettered."""
    run: list[TransferRequest] = []
    ensure: list[NewAccount] = []
    run_contexts: list[MessageContext] = []
    touched: set[str] = set()  # accounts the run's transfers name
    ensured: set[str] = set()
    for ctx in contexts:
        cmd: TransfersRequested = ctx.event
        try:
            reqs = [to_request(s, app.assets, i) for i, s in enumerate(cmd.transfers)]
        except BadTransfer as exc:
            raise Rejected(exc.reason, str(exc)) from None
        if reqs[-1].linked:
            raise Rejected("linked_event_chain_open", "the last transfer of a command must close its linked chain")
        opens = [to_new_account(a) for a in cmd.open_accounts]
        # a run opens its accounts before any of its transfers: an account this command opens that an earlier
        # command of the run names (not opened by it) would be there for that one too early, which polled alone
        # was refused (…_account_not_found, for good). Such a command starts a run of its own, so the outcome
        # never depends on where Kafka cut the polls.
        late = any(a.id in touched and a.id not in ensured for a in opens)
        if run and (late or len(run) + len(reqs) > MAX_BATCH):
            _submit_run(app, session, run, ensure, run_contexts)
            run, ensure, run_contexts, touched, ensured = [], [], [], set(), set()
        run.extend(reqs)
        ensure.extend(opens)
        run_contexts.append(ctx)
        touched.update(a for r in reqs for a in (r.debit_account_id, r.credit_account_id))
        ensured.update(a.id for a in opens)
    if run:
        _submit_run(app, session, run, ensure, run_contexts)


def _submit_run(app: LedgerApp, session: Session, requests: list[TransferRequest], ensure: list[NewAccount],
                contexts: list[MessageContext]) -> None:
    causation = contexts[0].envelope.id if len(contexts) == 1 else None
    # each transfer's event correlates with, and is caused by, the command that asked for it (the consumer's batch
    # path sets no correlation id: without these a merged run's events said neither, a lone command's no correlation)
    bounds, start = [], 0
    for ctx in contexts:
        bounds.append((start, ctx.envelope.correlationid, ctx.envelope.id))
        start += len(ctx.event.transfers)
    # a lone command's other events (accounts it opened) correlate with it too, as on the one-by-one path
    token = correlation_id.set(contexts[0].envelope.correlationid) if causation else None
    # merged, each account a command opens is announced as that command's (the first that opens it)
    openers: dict[str, tuple] = {}
    for ctx in contexts if causation is None else ():
        for a in ctx.event.open_accounts:
            openers.setdefault(a.account_id, (ctx.envelope.id, ctx.envelope.correlationid))
    try:
        result = app.submit(session, requests, ensure_accounts=ensure, causation=causation, correlations=bounds,
                            answer_repeats=True, openers=openers)
    finally:
        if token is not None:
            correlation_id.reset(token)
    if result.accounts is not None:
        bad = [r for r in result.accounts.results if r.result not in (AccountResult.ok, AccountResult.exists)]
        if bad:
            # merged or not: a command with an invalid account is refused whole, never half applied. Merged, the
            # run is refused: a spec may be bad only beside another command's (the same id, other fields), so
            # the consumer's one-by-one pass tells which command, if any, is refused alone.
            raise Rejected("account_spec_invalid", f"{bad[0].id}: {bad[0].result.value}")

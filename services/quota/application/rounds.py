"""Explicit allocation rounds: a county's waiting requests ordered by its priority policy and decided
against what the pool holds. The inputs are stored with the decisions, so a round can be re-run from its
record and give the same answer (``replay_round``). A request the pool's figures can grant but whose allocation
could not be written (too many lots for one QuotaAllocated, application/allocations.py) is refused
(``too_many_lots``); what the forecast said is stored with the inputs, since the lots are not."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from shared.china_time import cst_date
from services.quota.application.allocations import LotForecast
from services.quota.application.pool import county_pool
from services.quota.application.saga import carry_out
from services.quota.application.tx import Tx
from services.quota.domain.allocation import Outcome, RoundResult, Shortfall, apply_decision, run_allocation_round
from services.quota.domain.assets import ApprovalKind
from services.quota.domain.policy import PoolPolicy, PriorityPolicy
from services.quota.domain.pool_view import available_by_asset
from services.quota.domain.projects import ProjectFacts
from services.quota.domain.requests import QuotaRequest, RequestLine, RequestTransition, expire_if_due, withdraw
from services.quota.storage import request_store, round_store
from services.quota.storage.counties import lock_county


@dataclass(frozen=True)
class RoundRun:
    round_id: str
    county_code: str
    seq: int
    result: RoundResult
    # closed under the lock before deciding, so they neither wait nor hold quota in the round:
    expired_before: tuple[str, ...]  # past their deadline (waiting too long, or a reservation's timeout)
    withdrawn_before: tuple[str, ...] = ()  # their project no longer admitted (project_not_admitted)


def _inputs(available: dict[str, int], requests: list[QuotaRequest], priority: PriorityPolicy) -> dict:
    return {
        "available": available,
        "priority": {"keys": [k.value for k in priority.keys], "class_order": list(priority.class_order),
                     "strategic_industries": sorted(priority.strategic_industries)},
        "requests": [
            {"request_id": r.request_id, "project_id": r.project_id, "project_class": r.project.project_class,
             "tax_per_mu_fen": r.project.tax_per_mu_fen, "industry_code": r.project.industry_code,
             "requested_at": r.requested_at.isoformat(),
             "lines": [[l.asset, l.amount, l.approval_kind.value] for l in r.lines]}
            for r in requests],
    }


def replay_round(county_code: str, inputs: dict) -> RoundResult:
    """The same decisions again, from a round's stored inputs alone (``too_many_lots``: the forecast's answer for
    each request it refused; rounds recorded before it have none)."""
    p = inputs["priority"]
    priority = PriorityPolicy(tuple(p["keys"]), tuple(p["class_order"]), frozenset(p["strategic_industries"]))
    requests = [
        QuotaRequest(r["request_id"], ProjectFacts(r["project_id"], county_code, True, r["project_class"],
                                                   r["tax_per_mu_fen"], r["industry_code"]),
                     county_code, tuple(RequestLine(a, n, ApprovalKind(k)) for a, n, k in r["lines"]),
                     datetime.fromisoformat(r["requested_at"]), datetime.fromisoformat(r["requested_at"]))
        for r in inputs["requests"]]
    unfit = inputs.get("too_many_lots", {})
    return run_allocation_round(inputs["available"], requests, priority,
                                lambda r: tuple(Shortfall(*s) for s in unfit.get(r.request_id, ())))


def run_round(tx: Tx, county_code: str, by: str) -> RoundRun:
    cp = lock_county(tx.session, county_code, tx.now)
    expired = _close_before_deciding(tx, cp.policy, request_store.due_open_requests(tx.session, county_code, tx.now),
                                     lambda req: expire_if_due(req, tx.now))
    withdrawn = _close_before_deciding(tx, cp.policy, request_store.open_requests_not_admitted(tx.session, county_code),
                                       lambda req: withdraw(req, tx.now))
    waiting = request_store.waiting_requests(tx.session, county_code)
    available = available_by_asset(county_pool(tx.session, county_code).figures)
    forecast = LotForecast(tx.session, county_code, cp.policy, cst_date(tx.now))
    result = run_allocation_round(available, waiting, cp.policy.priority, forecast.place)
    inputs = _inputs(available, waiting, cp.policy.priority)
    unfit = {d.request_id: [[s.asset, s.requested, s.available] for s in d.shortfalls]
             for d in result.decisions if d.outcome is Outcome.REFUSED}
    if unfit:
        inputs["too_many_lots"] = unfit
    # not an input of the decisions, but part of the round's record (GET /v1/rounds/{id} shows it as the run did)
    inputs["closed_before"] = {"expired": list(expired), "withdrawn": list(withdrawn)}
    seq = round_store.next_round_seq(tx.session, county_code)
    round_id = f"round-{county_code}-{seq:06d}"
    round_store.record_round(tx.session, round_id, county_code, seq, by, cp.version, inputs, result, tx.now)
    by_id = {r.request_id: r for r in waiting}
    for decision in result.decisions:
        carry_out(tx, cp.policy, apply_decision(by_id[decision.request_id], decision, tx.now, cp.policy))
    return RoundRun(round_id, county_code, seq, result, expired, withdrawn)


def _close_before_deciding(tx: Tx, policy: PoolPolicy, requests: list[QuotaRequest],
                           step: Callable[[QuotaRequest], RequestTransition]) -> tuple[str, ...]:
    """Close what must not count in the round (call under the county's lock); returns the ids closed."""
    return tuple(req.request_id for req in requests if carry_out(tx, policy, step(req)).changed)

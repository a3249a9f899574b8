"""Schemathesis against each service's own OpenAPI document (issue 8, "Bad input").

For every operation of the four services, schema-conforming (positive) and schema-violating (negative) requests,
a bounded and reproducible number of each (Hypothesis ``derandomize``), sent in-process to the real app on a real
database:

- with the county admin's token: never a 5xx (nor an unhandled exception, which is a 500 in production); every
  4xx is the shared error shape ``{reason, message, details?}`` with a machine-readable reason; a refused call
  (4xx) leaves every table of the service as it was (row counts and a hash of every row);
- without a token: every operation but the public probes answers 401 ``missing_token`` (or 404/405 when the
  generated path matches no route at all) and nothing changes.

One test per service and mode walks all operations and lists every problem found (operation, the example
that showed it, what happened), so one run names every defect rather than the first.

Runs on the embedded SQLite file and (authenticated) on PostgreSQL, where values SQLite lets through (NUL
characters, integers beyond 64 bits, strings longer than a column) meet real constraints.
"""
from __future__ import annotations

import json
import os
import traceback
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.badinput.support import SERVICES, changed_tables, error_shape_problem, fingerprint
from tests.support.services import ADMIN, running_service

# Examples per operation and per mode (positive, negative); ~90 operations in all, ~25 ms a call. Fewer on
# PostgreSQL (its extra finds — NUL characters, integer and length limits — show within a few examples) and
# without a token (every call stops at authentication). Dig deeper locally with
# BADINPUT_MAX_EXAMPLES=200 pytest tests/badinput/test_openapi_fuzz.py
EXAMPLES = {"sqlite": 15, "postgresql": 8, "no-token": 5}
if os.environ.get("BADINPUT_MAX_EXAMPLES"):
    EXAMPLES = dict.fromkeys(EXAMPLES, int(os.environ["BADINPUT_MAX_EXAMPLES"]))
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}  # probes: no token by design
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@contextmanager
def fuzz_target(name: str, db_url: str, bootstrap: str, tmp_path):
    """(runtime, app) with relay and consumer stopped: nothing but the fuzzed calls touches the database, so a
    fingerprint taken after one call is the 'before' of the next."""
    with ExitStack() as stack:
        runtime, client = stack.enter_context(running_service(name, db_url, bootstrap, background=False))
        if name == "quota":
            # reconciliation reads the ledger's balances over HTTP: give it a real (in-process) ledger
            from services.quota.application.reconciliation import LedgerBalances

            _, ledger = stack.enter_context(running_service("ledger", f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
                                                            bootstrap, background=False))
            client.app.state.ledger_balances = LedgerBalances("", "dev-admin-token", client=ledger)
        yield runtime, client.app


@dataclass
class Findings:
    calls: int = 0
    changes: int = 0  # accepted calls that changed data: the fingerprint does see writes
    statuses: dict[int, int] = field(default_factory=dict)
    problems: dict[tuple[str, str, str], list] = field(default_factory=dict)  # (op, kind, detail) -> examples

    def add(self, op: str, kind: str, detail: str, example: str) -> None:
        self.problems.setdefault((op, kind, detail), []).append(example)

    def report(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in {self.calls} calls:"]
        for (op, kind, detail), examples in sorted(self.problems.items()):
            lines.append(f"- {op}: {kind}: {detail} [{len(examples)}x] e.g. {examples[0]}")
        return "\n".join(lines)


def describe(case) -> str:
    body = "" if type(case.body).__name__ == "NotSet" else f" body={case.body!r:.300}"
    query = f" query={case.query!r:.200}" if case.query else ""
    media = f" ({case.media_type})" if case.media_type and body else ""
    return f"{case.method.upper()} {case.formatted_path}{query}{body}{media}"


def where(exc: BaseException) -> str:
    """The innermost frames of our own code: where the fix goes."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/.venv/" not in f.filename
              and "site-packages" not in f.filename]
    return " <- ".join(f"{f.filename.split('/main/')[-1]}:{f.lineno} {f.name}" for f in reversed(frames[-3:]))


def fuzz(runtime, app, *, token: bool, max_examples: int) -> Findings:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = Findings()
    state = {"fp": fingerprint(runtime.db)}
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        public = (op.method.upper(), op.path) in PUBLIC

        def check(case) -> None:
            if token:
                headers = ADMIN
            else:
                case.headers.pop("Authorization", None)  # schemathesis fills the bearer scheme with junk
                headers = None
            found.calls += 1
            try:
                response = case.call(headers=headers)
            except Exception as exc:  # noqa: BLE001 - an unhandled error is a 500 in production
                found.add(label, "unhandled exception (500)", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                          f" at {where(exc)}", describe(case))
                state["fp"] = fingerprint(runtime.db)
                return
            status = response.status_code
            found.statuses[status] = found.statuses.get(status, 0) + 1
            if status >= 500:
                found.add(label, f"{status}", response.content[:160].decode(errors="replace"), describe(case))
            if 400 <= status < 500 and (problem := error_shape_problem(status, response.content)):
                found.add(label, "4xx without the error shape", problem, describe(case))
            if not token and not public:
                reason = _reason(response.content)
                # 404 not_found / 405: no route matched the generated path (nothing to authorize)
                if (status, reason) not in ((401, "missing_token"), (404, "not_found"), (405, "method_not_allowed")):
                    found.add(label, "not refused without a token", f"{status} {reason}", describe(case))
            after = fingerprint(runtime.db)
            if 400 <= status < 500 and after != state["fp"]:
                found.add(label, f"{status} but data changed", str(changed_tables(state["fp"], after)), describe(case))
            elif after != state["fp"]:
                found.changes += 1
            state["fp"] = after

        for mode in MODES:
            run = settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                           phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                           )(given(case=op.as_strategy(generation_mode=mode))(check))
            try:
                run()
            except Unsatisfiable:
                pass  # nothing to violate (an operation without parameters has no negative cases)
    return found


def _reason(content: bytes) -> str | None:
    try:
        return json.loads(content).get("reason")
    except (ValueError, AttributeError):
        return None


@pytest.mark.kafka
def test_the_fingerprint_sees_a_write_and_nothing_else(db_url, kafka_bootstrap, tmp_path):
    """The oracle of 'refusals change nothing' must itself notice a change (on both databases)."""
    account = {"accounts": [{"account_id": "county:320612/pool/COD", "asset": "COD", "address": "county:320612/pool"}]}
    with fuzz_target("ledger", db_url, kafka_bootstrap, tmp_path) as (runtime, app):
        with TestClient(app) as client:
            before = fingerprint(runtime.db)
            assert fingerprint(runtime.db) == before
            assert client.post("/v1/accounts", headers=ADMIN, json={"accounts": [{}]}).status_code == 422
            assert fingerprint(runtime.db) == before
            assert client.post("/v1/accounts", headers=ADMIN, json=account).status_code == 200
            assert set(changed_tables(before, fingerprint(runtime.db))) >= {"accounts"}


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_fuzzed_calls_with_an_admin_token_get_no_5xx_and_refusals_change_nothing(service, db_url, kafka_bootstrap,
                                                                                 tmp_path):
    with fuzz_target(service, db_url, kafka_bootstrap, tmp_path) as (runtime, app):
        found = fuzz(runtime, app, token=True, max_examples=EXAMPLES[runtime.db.engine.dialect.name])
    assert found.calls > 0
    assert not found.problems, found.report()


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_fuzzed_calls_without_a_token_are_all_401_and_change_nothing(service, tmp_path, kafka_bootstrap):
    with fuzz_target(service, f"sqlite:///{tmp_path / 'fuzz.sqlite3'}", kafka_bootstrap, tmp_path) as (runtime, app):
        before = fingerprint(runtime.db)
        found = fuzz(runtime, app, token=False, max_examples=EXAMPLES["no-token"])
        after = fingerprint(runtime.db)
    assert found.calls > 0
    assert not found.problems, found.report()
    assert before == after, changed_tables(before, after)

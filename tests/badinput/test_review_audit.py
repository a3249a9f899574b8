"""Review of issue 8's "Bad input" proof: what the other tests here could let pass while the property is false.

1. The authorization matrix (test_authorization_matrix.py) derives "allowed" from the scopes of
   deploy/dev-tokens.json, the very file the services read: a department given another department's scope there
   (the tax bureau a COD release, the ecology bureau the land-use approval) would be expected to succeed and pass.
   Here the answer to "who may do what" is written down from the issue and the design (which department publishes
   which quota, approval, figures, receipts; finance reads and reconciles; the settlement office settles), by
   principal name, and compared with what the services do -- for every write endpoint and every variant whose
   scope depends on the body (all seven release assets, all three approval kinds, indicator files of every
   department), and for the reads.
2. The Kafka intake test checks "wrong source" with one source and one type per topic. Here every event type and
   variant taken on an intake topic (and the ledger's commands) is sent from every department, every service and
   unregistered look-alike sources; only the publishers of the table below may get through, everyone else is
   dead-lettered with an authorization reason. Forged service events on the internal topics a service consumes
   (countypool.ledger.events, .assessment.events, .quota.events) from department sources are refused too. Every
   allowed message must be applied (an inbox row ``applied``), not merely "not refused for its source".
3. Dead letters are checked for more than their reason: the letter carries the original key and bytes unchanged
   and points (topic, partition, offset) at the message it stands for -- a letter that only says "refused" loses
   the input.
4. Oversized messages: the intake test accepts ``invalid_payload`` for its oversized probes (their bulk is in a
   field the contract bounds), so a consumer without any size limit would still pass. Here the message is a
   *valid* event padded with JSON whitespace: above the service's limit it must be ``message_too_large`` with no
   effect (without the limit it would be applied); exactly at the limit it must be applied (nothing good lost).
   (Not the ledger: it takes commands up to 1 MiB, Kafka's own default limit, so the broker refuses larger ones.)
5. Duplicate ids with different bodies arriving in the same poll (the intake test applies the original first).
6. The pace: the intake test sends 7 bad messages against a slack of 3x + 5 s, so a consumer spending up to half
   a second on each bad message would pass. Here 300 bad messages of every kind sit between the good ones.
7. The fuzz runs with the county admin's token only, whose principal has no department: the department paths
   (a release's department taken from the caller's source, imports limited to a department's own figures, the
   settlement office's writes) are never fuzzed. Here the same fuzz (no 5xx, every 4xx shaped, a refused call
   changes nothing) runs with department, finance and settlement-office tokens.
"""
from __future__ import annotations

import json
import os
import random
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import date

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered, EnterpriseReported, IndicatorsReported, ProjectEvaluated
from shared.contracts.ledger import AccountSpec, TransferPosted, TransferSpec, TransfersRequested
from shared.contracts.quota import ApprovalGranted, LotCreated, QuotaReleaseSubmitted, ReclamationAccepted
from shared.contracts.settlement import StatisticsReported, TaxReceiptReported
from shared.envelope import new_envelope
from tests.badinput.support import PRINCIPALS, TopicTail, headers_of, start_consuming_from_end
from tests.badinput.test_authorization_matrix import POLICY, READS, Row, _call
from tests.badinput.test_authorization_matrix import services  # noqa: F401 - the fixture: the four services in process
from tests.support.services import ADMIN, auth, running_service

# -- 1. who may do what, written down independently of deploy/dev-tokens.json ------------------------------------

ADMIN_P, FINANCE, SETTLEMENT_OFFICE = "county-admin", "finance-bureau", "settlement-office"
ECOLOGY, REFORM, LAND_B = "ecology-bureau", "development-reform-commission", "natural-resources-bureau"
TAX, INDUSTRY, STATISTICS = "tax-bureau", "industry-bureau", "statistics-bureau"
EVERYONE = {ADMIN_P, FINANCE, SETTLEMENT_OFFICE, ECOLOGY, REFORM, LAND_B, TAX, INDUSTRY, STATISTICS}

# which department frees which quota (design: 生态环境局 emission rights, 发改委 energy-use rights, 自然资源局 land)
ASSET_OWNER = {"COD": ECOLOGY, "NH3N": ECOLOGY, "SO2": ECOLOGY, "NOX": ECOLOGY, "VOCS": ECOLOGY,
               "ENERGY": REFORM, "LAND": LAND_B}
# and grants which approval (环评 / 能评 / 用地)
APPROVAL_OWNER = {"environmental_impact": ECOLOGY, "energy_review": REFORM, "land_use": LAND_B}
# whose yearly figures (an indicators file names its department); the industry bureau (工信局) runs the
# evaluation and may report every department's part
FIGURES_OWNER = {"ecology": ECOLOGY, "development_reform": REFORM, "natural_resources": LAND_B, "tax": TAX,
                 "statistics": STATISTICS}
COUNTY = "320612"


def _code(n: int) -> str:
    from services.assessment.domain.credit_code import make_credit_code

    return make_credit_code(f"91{COUNTY}{n:09d}")


def _release(asset: str) -> dict:
    return dict(release_id=f"AUDIT-{asset}", enterprise_credit_code=_code(1), township_code=f"{COUNTY}101",
                county_code=COUNTY, asset=asset, amount="1", reason="closure", basis="free", document_ref="doc-1",
                released_on="2024-02-01")


def _rows() -> dict[str, list[tuple[Row, set[str]]]]:
    """Every write row of test_authorization_matrix.POLICY (its endpoint enumeration is checked against the apps
    there), plus the body variants it leaves out, each with the principals that may call it (admin aside)."""
    writes: dict[tuple, set[str]] = {
        # assessment: the industry bureau's evaluation work; the county decides policy and dispositions
        ("POST", "/v1/enterprises", ""): {INDUSTRY},
        ("POST", "/v1/indicators", ""): {INDUSTRY},
        ("POST", "/v1/indicators/withdrawals", ""): {INDUSTRY},
        ("PUT", "/v1/policies/{county_code}/{year}", ""): set(),
        ("POST", "/v1/evaluations", ""): {INDUSTRY},
        ("POST", "/v1/dispositions", ""): set(),
        ("POST", "/v1/dispositions/{credit_code}/{year}/execution", ""): {INDUSTRY},
        ("POST", "/v1/tasks", ""): {INDUSTRY},
        ("POST", "/v1/tasks/{task_id}/completion", ""): {INDUSTRY},
        ("POST", "/v1/tasks/{task_id}/cancellation", ""): {INDUSTRY},
        ("POST", "/v1/projects", ""): {INDUSTRY},
        ("POST", "/v1/imports", "enterprises"): {INDUSTRY},
        **{("POST", "/v1/imports", f"indicators-{d}"): {INDUSTRY, who} for d, who in FIGURES_OWNER.items()},
        # quota: departments bring in what they free and what they approve; the county runs the pool
        ("PUT", "/v1/counties/{county_code}/policy", ""): set(),
        **{("POST", "/v1/releases", a): {who} for a, who in ASSET_OWNER.items()},
        ("POST", "/v1/reclamation-projects", ""): {LAND_B},
        ("POST", "/v1/reclamation-projects/{project_id}/acceptance", ""): {LAND_B},
        **{("POST", "/v1/approvals", k): {who} for k, who in APPROVAL_OWNER.items()},
        ("POST", "/v1/requests", ""): set(),
        ("POST", "/v1/requests/{request_id}/cancel", ""): set(),
        ("POST", "/v1/counties/{county_code}/rounds", ""): set(),
        ("POST", "/v1/reconciliation:run", ""): {FINANCE},  # finance reconciles
        # ledger: only the county writes; finance reads balances
        ("POST", "/v1/accounts", ""): set(),
        ("POST", "/v1/transfers", ""): set(),
        ("POST", "/v1/balances:query", ""): {FINANCE},
        # settlement: the settlement office; receipts from the tax bureau, statistics from the statistics bureau
        ("POST", "/v1/agreements", ""): {SETTLEMENT_OFFICE},
        ("POST", "/v1/agreements/{agreement_id}/versions", ""): {SETTLEMENT_OFFICE},
        ("PUT", "/v1/counties/{county}/settlement-policy", ""): {SETTLEMENT_OFFICE},
        ("POST", "/v1/tax-receipts", ""): {SETTLEMENT_OFFICE, TAX},
        ("POST", "/v1/tax-receipts/import", ""): {SETTLEMENT_OFFICE, TAX},
        ("POST", "/v1/statistics-reports", ""): {SETTLEMENT_OFFICE, STATISTICS},
        ("POST", "/v1/counties/{county}/periods/{period}/draft", ""): {SETTLEMENT_OFFICE},
        ("POST", "/v1/counties/{county}/periods/{period}/finalize", ""): {SETTLEMENT_OFFICE},
    }
    out: dict[str, list[tuple[Row, set[str]]]] = {}
    for service, rows in POLICY.items():
        by_key = {(r.method, r.path, r.variant): r for r in rows}
        template_import = by_key[("POST", "/v1/imports", "indicators-tax")] if service == "assessment" else None
        extra: dict[tuple, Row] = {}
        for key in writes:
            method, path, variant = key
            if key in by_key or not any(r.path == path and r.method == method for r in rows):
                continue
            if path == "/v1/releases":
                extra[key] = Row("POST", path, (), variant, json=_release(variant))
            elif path == "/v1/imports":
                dept = variant.removeprefix("indicators-")
                extra[key] = replace(template_import, variant=variant,
                                     params={"kind": "indicators", "department": dept})
        out[service] = [(r, writes[(r.method, r.path, r.variant)]) for r in [*rows, *extra.values()]]
    readers = {"assessment": {FINANCE, INDUSTRY}, "quota": {FINANCE}, "ledger": {FINANCE},
               "settlement": {FINANCE, SETTLEMENT_OFFICE}}
    for service, rows in READS.items():
        out[service] += [(r, readers[service]) for r in rows]
    return out


def test_the_independent_table_names_every_principal_and_every_write_row():
    """A new principal or endpoint must get a deliberate entry here, not a default."""
    assert {spec["principal"] for spec in PRINCIPALS.values()} == EVERYONE
    rows = _rows()
    assert sum(len(v) for v in rows.values()) == sum(len(v) for v in POLICY.values()) + 4 + 4 + sum(
        len(v) for v in READS.values())  # + NH3N/SO2/NOX/VOCS releases + 4 more departments' indicator files


@pytest.mark.kafka
@pytest.mark.parametrize("service", ["assessment", "quota", "ledger", "settlement"])
def test_each_department_reaches_exactly_what_the_design_gives_it(service, services):  # noqa: F811
    runtime, client = services[service]
    tokens = {spec["principal"]: token for token, spec in PRINCIPALS.items()}
    problems, calls = [], 0
    for row, allowed in _rows()[service]:
        for who, token in sorted(tokens.items()):
            r = _call(client, row, token)
            calls += 1
            may = who == ADMIN_P or who in allowed
            label = f"{row.method} {row.url or row.path}{' [' + row.variant + ']' if row.variant else ''} as {who}"
            reason = r.json().get("reason") if r.headers.get("content-type", "").startswith("application/json") \
                and isinstance(r.json(), dict) else None
            if may and (r.status_code in (401, 403) or r.status_code >= 500):
                problems.append(f"{label}: {r.status_code} {reason}, but the design lets {who} do it")
            if not may and (r.status_code, reason) != (403, "insufficient_scope"):
                problems.append(f"{label}: {r.status_code} {reason}, but {who} may not do it")
            if may and row.path == "/v1/releases" and r.status_code not in (200, 201):
                problems.append(f"{label}: a valid release refused: {r.status_code} {r.text[:200]}")
    assert calls > 0
    assert not problems, f"{len(problems)} of {calls} calls:\n- " + "\n- ".join(problems)


# -- 2-5. Kafka: every type x every source, letters that keep the input, size, duplicates in one poll -------------

DEPT_SOURCE = {ECOLOGY: "/departments/ecology", REFORM: "/departments/development-reform",
               LAND_B: "/departments/natural-resources", TAX: "/departments/tax", INDUSTRY: "/departments/industry",
               STATISTICS: "/departments/statistics"}
SERVICE_SOURCE = {s: f"/countypool/{s}" for s in ("assessment", "quota", "ledger", "settlement")}
# registered nowhere, each one character or one word away from a publisher
LOOKALIKES = ["/departments/ecology/", "/departments/Tax", "/departments/finance", "/countypool/quota/",
              "/countypool/ledger-x"]
SOURCES = [*DEPT_SOURCE.values(), *SERVICE_SOURCE.values(), *LOOKALIKES]
AUTH_REASONS = {"source_not_allowed", "unknown_source", "unexpected_source"}


@dataclass
class Msg:
    label: str
    topic: str
    key: str
    value: bytes
    event_id: str | None
    applied: bool  # True: must be applied (inbox row "applied"); False: must be dead-lettered
    reasons: set[str] = field(default_factory=set)  # the dlq-reason a refused one may get
    no_effect: object = None  # () -> bool for a refused one: its effect is absent
    partition: int | None = None  # None: by key


class Run:
    """One service on real Kafka with its own consumer group from the current end of its topics."""

    def __init__(self, service: str, kafka_bootstrap: str, tmp_path, request):
        self.service = service
        self.bootstrap = kafka_bootstrap
        self.run = uuid.uuid4().hex[:8]
        self.county = str(random.Random(self.run).randint(110000, 659999))
        self.settings: dict = {}
        self.intake = {"assessment": topics.INTAKE_ASSESSMENT, "quota": topics.INTAKE_QUOTA,
                       "settlement": topics.INTAKE_SETTLEMENT, "ledger": topics.LEDGER_COMMANDS}[service]
        if service == "assessment":  # its intake topic is configurable: one of the test's own
            self.intake = request.getfixturevalue("unique_topic")
            self.settings = {"intake_topic": self.intake, "group_id": f"test-audit-{self.run}"}
        self.tmp_path = tmp_path
        self.n = 0

    def code(self, n: int) -> str:
        from services.assessment.domain.credit_code import make_credit_code

        return make_credit_code(f"91{self.county}{n:09d}")

    def msg(self, label: str, event, source: str, *, topic: str | None = None, applied: bool,
            reasons: set[str] | None = None, event_id: str | None = None, no_effect=None) -> Msg:
        self.n += 1
        key = f"audit-{self.run}-{self.n}-{label}"[:200]
        env = new_envelope(event, subject=key, source=source, event_id=event_id)
        return Msg(label, topic or self.intake, key, env.to_json(), env.id, applied,
                   set(reasons or AUTH_REASONS), no_effect)

    def open(self, stack: ExitStack):
        self.runtime, self.client = stack.enter_context(running_service(
            self.service, f"sqlite:///{self.tmp_path / 'svc.sqlite3'}", self.bootstrap, background=False,
            **self.settings))
        return self

    def start(self):
        start_consuming_from_end(self.runtime, self.bootstrap)

    def inbox(self, ids: list[str]) -> dict[str, str]:
        with self.runtime.db.engine.connect() as c:
            rows = c.execute(sa.text("SELECT event_id, outcome FROM inbox")).all()
        want = set(ids)
        return {r[0]: r[1] for r in rows if r[0] in want}


def _send(bootstrap: str, msgs: list[Msg]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024, linger_ms=5)
    try:
        futures = [producer.send(m.topic, key=m.key.encode(), value=m.value, partition=m.partition) for m in msgs]
        producer.flush(30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()


def _deliver_and_judge(run: Run, msgs: list[Msg], timeout: float = 90) -> list[str]:
    """Send ``msgs``, wait until each is applied or dead-lettered by this run's consumer, and list what is wrong:
    an outcome other than expected, a letter whose reason is not the expected one, a letter that does not carry
    the original key and bytes or does not point at the original message, an effect of a refused message."""
    group = run.runtime.consumer.group_id
    names = sorted({m.topic for m in msgs})
    originals = {t: TopicTail(run.bootstrap, t) for t in names}
    letters = {t: TopicTail(run.bootstrap, topics.dlq(t)) for t in names}
    by_key = {m.key: m for m in msgs}
    ids = [m.event_id for m in msgs if m.event_id]
    # an id taken before (or by another message of this batch) in the inbox says nothing of this message: a refused
    # one of those is settled by its letter alone
    taken_before = set(run.inbox(ids))
    repeated = {i for i in ids if ids.count(i) > 1}

    def letter_only(m: Msg) -> bool:
        return m.event_id in taken_before or (m.event_id in repeated and not m.applied)

    try:
        _send(run.bootstrap, msgs)
        deadline = time.monotonic() + timeout
        while True:
            for tail in letters.values():
                tail.until(lambda recs: False, timeout=0.3)
            ours = {r.key.decode(): r for t in letters.values() for r in t.records
                    if r.key and r.key.decode() in by_key and headers_of(r).get("dlq-consumer-group") == group}
            applied = run.inbox(ids)
            pending = [m for m in msgs if m.key not in ours and (letter_only(m) or m.event_id not in applied)]
            if not pending or time.monotonic() > deadline:
                break
        for topic, tail in originals.items():  # where each message landed (partition, offset) on its topic
            keys = {m.key for m in msgs if m.topic == topic}
            tail.until(lambda recs, keys=keys: keys <= {r.key.decode() for r in recs if r.key}, timeout=10)
        where = {(r.topic, r.key.decode()): (r.partition, r.offset, r.value) for t in originals.values()
                 for r in t.records if r.key}
    finally:
        for tail in [*originals.values(), *letters.values()]:
            tail.close()
    problems = [f"{m.label}: " + ("its id was taken before and it was not dead-lettered" if letter_only(m) else
                                  "neither applied nor dead-lettered") + f" after {timeout:.0f}s" for m in pending]
    for m in msgs:
        letter, outcome = ours.get(m.key), applied.get(m.event_id)
        if m in pending:
            continue
        if m.applied:
            if letter is not None:
                problems.append(f"{m.label}: dead-lettered {headers_of(letter).get('dlq-reason')!r} "
                                f"({headers_of(letter).get('dlq-error', '')[:160]}), must be applied")
            elif outcome != "applied":
                problems.append(f"{m.label}: inbox outcome {outcome!r}, must be applied")
            continue
        if letter is None:
            problems.append(f"{m.label}: taken ({outcome!r}), must be dead-lettered with one of {sorted(m.reasons)}")
            continue
        h = headers_of(letter)
        if h.get("dlq-reason") not in m.reasons:
            problems.append(f"{m.label}: dead-lettered {h.get('dlq-reason')!r}, expected one of {sorted(m.reasons)}")
        if not h.get("dlq-error"):
            problems.append(f"{m.label}: the letter has no dlq-error")
        part, off, value = where.get((m.topic, m.key), (None, None, None))
        if (h.get("dlq-original-topic"), h.get("dlq-original-partition"), h.get("dlq-original-offset")) != (
                m.topic, str(part), str(off)) or value != m.value:
            problems.append(f"{m.label}: the letter points at {h.get('dlq-original-topic')}[{h.get('dlq-original-partition')}]"
                            f"@{h.get('dlq-original-offset')}, the message is at {m.topic}[{part}]@{off}")
        if "dlq-value-omitted" in h:
            if h["dlq-value-omitted"] != str(len(m.value)) or letter.value:
                problems.append(f"{m.label}: value omitted as {h['dlq-value-omitted']!r} bytes, it had {len(m.value)}")
        elif letter.value != m.value:
            problems.append(f"{m.label}: the letter's value is not the original message ({len(letter.value or b'')} "
                            f"of {len(m.value)} bytes)")
        if m.no_effect is not None and not m.no_effect():
            problems.append(f"{m.label}: refused, yet it had an effect")
    return problems


def _by_source(run: Run, label: str, make, allowed: set[str], **kw) -> list[Msg]:
    """The same kind of event from every source: applied from the allowed ones, refused from every other."""
    out = []
    for i, src in enumerate(SOURCES):
        event = make(i, src)
        out.append(run.msg(f"{label} from {src}", event, src, applied=src in allowed, **kw))
    return out


def _forged(run: Run, topic: str, make, owner: str) -> list[Msg]:
    """A service's event on its own topic from anyone but that service (departments, the other services, look-alikes):
    never taken. (The owner's own is not sent: other sessions' services read these shared topics too.)"""
    return [run.msg(f"forged {topic.rsplit('.', 2)[-2]} event from {src}", make(i), src, topic=topic, applied=False)
            for i, src in enumerate(SOURCES) if src != owner]


def _transfer_posted(run: Run, prefix: str):
    def make(i):
        return TransferPosted(transfer_id=f"{prefix}audit-{run.run}-{i}", debit_account="external:x/COD",
                              credit_account=f"county:{run.county}/pool/COD", asset="COD", amount="1",
                              code="quota.release", at="2024-03-01T00:00:00Z")
    return make


def _quota_cases(run: Run) -> list[Msg]:
    c = run.county
    r = run.client.post("/v1/reclamation-projects", headers=auth("dev-natural-resources-token"),
                        json={"project_id": f"AUD-{run.run}-RC", "county_code": c, "township_code": f"{c}101",
                              "area": "3.5"})
    assert r.status_code == 201, r.text
    msgs = []
    for asset, who in ASSET_OWNER.items():
        def release(i, src, asset=asset):
            return QuotaReleaseSubmitted(
                release_id=f"AUD-{run.run}-{asset}-{i}", enterprise_credit_code=run.code(i), township_code=f"{c}101",
                county_code=c, asset=asset, amount="1.5", reason="closure", basis="free", document_ref="通环〔2024〕1号",
                released_on=date(2024, 2, 1))
        msgs += _by_source(run, f"QuotaReleaseSubmitted {asset}", release, {DEPT_SOURCE[who]})
    for kind, who in APPROVAL_OWNER.items():
        def approval(i, src, kind=kind):
            return ApprovalGranted(project_id=f"AUD-{run.run}-P{i}", kind=kind, document_ref="批〔2024〕1号",
                                   granted_on=date(2024, 3, 1))
        msgs += _by_source(run, f"ApprovalGranted {kind}", approval, {DEPT_SOURCE[who]})

    def accepted():
        return run.client.get(f"/v1/reclamation-projects/AUD-{run.run}-RC", headers=ADMIN).json()["state"]

    for src in SOURCES:
        ok = src == DEPT_SOURCE[LAND_B]
        if not ok:
            msgs.append(run.msg(f"ReclamationAccepted from {src}", ReclamationAccepted(
                project_id=f"AUD-{run.run}-RC", accepted_on=date(2024, 5, 1), document_ref="验〔2024〕1号"), src,
                applied=False))
    # the allowed acceptance last (its project can be accepted once): the refused ones above must not have
    msgs.append(run.msg("ReclamationAccepted from the land bureau", ReclamationAccepted(
        project_id=f"AUD-{run.run}-RC", accepted_on=date(2024, 5, 1), document_ref="验〔2024〕1号"),
        DEPT_SOURCE[LAND_B], applied=True))
    # forged answers of the ledger, and forged assessment facts
    msgs += _forged(run, topics.LEDGER_EVENTS, _transfer_posted(run, "quota/intake/"), SERVICE_SOURCE["ledger"])
    msgs += _forged(run, topics.ASSESSMENT_EVENTS, lambda i: ProjectEvaluated(
        project_id=f"AUD-{run.run}-FP{i}", applicant_credit_code=run.code(500 + i), county_code=c, park_id=None,
        admitted=True, land="10", investment_per_mu="3000000", tax_per_mu="200000", policy_hash="0" * 64),
        SERVICE_SOURCE["assessment"])
    return msgs


def _assessment_cases(run: Run) -> list[Msg]:
    c = run.county
    r = run.client.post("/v1/enterprises", headers=ADMIN, json={
        "credit_code": run.code(1), "name": "审计企业", "township_code": f"{c}101", "industry_code": "C3311"})
    assert r.status_code in (200, 201), r.text
    msgs = _by_source(run, "EnterpriseReported", lambda i, src: EnterpriseReported(
        credit_code=run.code(100 + i), name=f"企业{i}", township_code=f"{c}101", industry_code="C3311"),
        {DEPT_SOURCE[INDUSTRY]})
    year = iter(range(1995, 2200))
    for dept, who in {**FIGURES_OWNER, "industry": INDUSTRY}.items():
        msgs += _by_source(run, f"IndicatorsReported {dept}", lambda i, src, dept=dept: IndicatorsReported(
            credit_code=run.code(1), year=next(year), department=dept, fields={"tax": "1.00"}),
            {DEPT_SOURCE[who], DEPT_SOURCE[INDUSTRY]})
    return msgs


def _settlement_cases(run: Run) -> list[Msg]:
    c = run.county
    from services.settlement import intake

    def work(uow):
        for i in range(len(SOURCES) * 2):
            intake.record_enterprise(uow.session, EnterpriseRegistered(
                credit_code=run.code(i), name=f"企业{i}", county_code=c, township_code=f"{c}101", in_park=False))

    run.runtime.transaction(work)
    msgs = _by_source(run, "TaxReceiptReported", lambda i, src: TaxReceiptReported(
        receipt_id=f"AUD-{run.run}-T{i}", enterprise_credit_code=run.code(i), month="2024-03", tax_kind="VAT",
        amount="100.00"), {DEPT_SOURCE[TAX]})
    msgs += _by_source(run, "StatisticsReported", lambda i, src: StatisticsReported(
        report_id=f"AUD-{run.run}-S{i}", enterprise_credit_code=run.code(i), month="2024-03", measure="value_added",
        amount="100.00"), {DEPT_SOURCE[STATISTICS]})
    msgs += _forged(run, topics.LEDGER_EVENTS, _transfer_posted(run, "settlement:"), SERVICE_SOURCE["ledger"])
    msgs += _forged(run, topics.QUOTA_EVENTS, lambda i: LotCreated(
        lot_id=f"release:AUD-{run.run}-L{i}", county_code=c, asset="COD", amount="1", retired="0",
        source_kind="release", source_ref=run.code(i), township_code=f"{c}101", dated=date(2024, 2, 1), basis="free"),
        SERVICE_SOURCE["quota"])
    msgs += _forged(run, topics.ASSESSMENT_EVENTS, lambda i: EnterpriseRegistered(
        credit_code=run.code(300 + i), name="伪造", county_code=c, township_code=f"{c}101", in_park=False),
        SERVICE_SOURCE["assessment"])
    return msgs


def _ledger_command(run: Run, tid: str, amount: str = "1") -> TransfersRequested:
    pool, reg = f"county:{run.county}/pool/COD", "external:rights-register/COD"
    return TransfersRequested(
        transfers=[TransferSpec(transfer_id=tid, debit_account=reg, credit_account=pool, asset="COD", amount=amount,
                                code="quota.release")],
        open_accounts=[AccountSpec(account_id=reg, asset="COD", address="external:rights-register"),
                       AccountSpec(account_id=pool, asset="COD", address=f"county:{run.county}/pool")])


def _ledger_cases(run: Run) -> list[Msg]:
    def absent(tid):
        return lambda: run.client.get(f"/v1/transfers/{tid}", headers=ADMIN).status_code == 404

    out = []
    for i, src in enumerate(SOURCES):
        tid = f"audit-{run.run}-x{i}"
        ok = src in (SERVICE_SOURCE["quota"], SERVICE_SOURCE["settlement"])
        out.append(run.msg(f"TransfersRequested from {src}", _ledger_command(run, tid), src, applied=ok,
                           no_effect=None if ok else absent(tid)))
    return out


CASES = {"quota": _quota_cases, "assessment": _assessment_cases, "settlement": _settlement_cases,
         "ledger": _ledger_cases}


@pytest.mark.kafka
@pytest.mark.parametrize("service", ["assessment", "quota", "ledger", "settlement"])
def test_every_type_from_every_source_only_its_publishers_get_through_and_letters_keep_the_input(
        service, kafka_bootstrap, tmp_path, request):
    run = Run(service, kafka_bootstrap, tmp_path, request)
    with ExitStack() as stack:
        run.open(stack)
        msgs = CASES[service](run)
        run.start()
        problems = _deliver_and_judge(run, msgs)
        assert run.runtime.consumer._thread.is_alive(), "the consumer stopped"
    n_ok = sum(m.applied for m in msgs)
    assert n_ok and n_ok < len(msgs)
    assert not problems, f"{service}: {len(problems)} of {len(msgs)} messages:\n- " + "\n- ".join(problems)


def _limit_and_duplicate_cases(run: Run) -> list[Msg]:
    """A valid event padded with JSON whitespace to exactly the consumer's limit (taken) and to one byte more
    (``message_too_large``, no effect: without the limit it would be applied); an event id sent twice with different
    bodies back to back on one partition (one poll): the first applied, the second dead-lettered, its body
    without effect."""
    c, msgs = run.county, []
    if run.service != "ledger":
        # (the ledger takes commands up to 1 MiB, which is Kafka's own default limit: the broker refuses larger ones)
        run_prepare = {"quota": lambda i: (QuotaReleaseSubmitted(
            release_id=f"AUD-{run.run}-BIG{i}", enterprise_credit_code=run.code(700 + i), township_code=f"{c}101",
            county_code=c, asset="COD", amount="2", reason="closure", basis="free", document_ref="x",
            released_on=date(2024, 2, 1)), DEPT_SOURCE[ECOLOGY],
            lambda: run.client.get(f"/v1/releases/AUD-{run.run}-BIG{i}", headers=ADMIN).status_code == 404),
            "assessment": lambda i: (EnterpriseReported(
                credit_code=run.code(700 + i), name="大", township_code=f"{c}101", industry_code="C3311"),
                DEPT_SOURCE[INDUSTRY],
                lambda: run.client.get(f"/v1/enterprises/{run.code(700 + i)}", headers=ADMIN).status_code == 404),
            "settlement": lambda i: (TaxReceiptReported(
                receipt_id=f"AUD-{run.run}-BIG{i}", enterprise_credit_code=run.code(i), month="2024-03",
                tax_kind="VAT", amount="5.00"), DEPT_SOURCE[TAX],
                lambda: run.client.get(f"/v1/tax-receipts/AUD-{run.run}-BIG{i}", headers=ADMIN).status_code == 404),
        }[run.service]
        limit = run.runtime.consumer._size_limits[run.intake]
        assert limit < 1_000_000, limit
        for i, (size, taken) in enumerate([(limit, True), (limit + 1, False)]):
            event, src, absent = run_prepare(i)
            m = run.msg(f"valid event padded to {size} bytes (limit {limit})", event, src, applied=taken,
                        reasons={"message_too_large"}, no_effect=None if taken else absent)
            m.value = m.value + b" " * (size - len(m.value))
            assert len(m.value) == size
            msgs.append(m)
    eid = str(uuid.uuid4())
    first, second, src, kept = {
        "quota": lambda: (*[QuotaReleaseSubmitted(
            release_id=f"AUD-{run.run}-DUP", enterprise_credit_code=run.code(800), township_code=f"{c}101",
            county_code=c, asset="COD", amount=a, reason="closure", basis="free", document_ref="x",
            released_on=date(2024, 2, 1)) for a in ("1.5", "9")], DEPT_SOURCE[ECOLOGY],
            lambda: run.client.get(f"/v1/releases/AUD-{run.run}-DUP", headers=ADMIN).json().get("amount") == "1.5000"),
        "assessment": lambda: (*[EnterpriseReported(
            credit_code=run.code(800), name=n, township_code=f"{c}101", industry_code="C3311") for n in ("甲", "乙")],
            DEPT_SOURCE[INDUSTRY],
            lambda: run.client.get(f"/v1/enterprises/{run.code(800)}", headers=ADMIN).json().get("name") == "甲"),
        "settlement": lambda: (*[TaxReceiptReported(
            receipt_id=f"AUD-{run.run}-DUP", enterprise_credit_code=run.code(1), month="2024-03", tax_kind="VAT",
            amount=a) for a in ("100.00", "200.00")], DEPT_SOURCE[TAX],
            lambda: run.client.get(f"/v1/tax-receipts/AUD-{run.run}-DUP", headers=ADMIN).json().get("amount") == "100.00"),
        "ledger": lambda: (_ledger_command(run, f"audit-{run.run}-dup", "1"), _ledger_command(run, f"audit-{run.run}-dup", "2"),
                           SERVICE_SOURCE["quota"],
                           lambda: run.client.get(f"/v1/transfers/audit-{run.run}-dup", headers=ADMIN).json().get("amount") == "1.0000"),
    }[run.service]()
    a = run.msg("duplicate id: the first body", first, src, applied=True, event_id=eid)
    b = run.msg("duplicate id: another body in the same poll", second, src, applied=False, event_id=eid,
                reasons={"duplicate_id_different_body"}, no_effect=kept)
    a.partition = b.partition = 0
    msgs += [a, b]
    return msgs


@pytest.mark.kafka
@pytest.mark.parametrize("service", ["assessment", "quota", "ledger", "settlement"])
def test_the_size_limit_is_exact_on_valid_events_and_a_duplicate_in_the_same_poll_loses_to_the_first(
        service, kafka_bootstrap, tmp_path, request):
    run = Run(service, kafka_bootstrap, tmp_path, request)
    with ExitStack() as stack:
        run.open(stack)
        if service == "settlement":
            _settlement_cases(run)  # the enterprises receipts need (the messages themselves are not sent)
        msgs = _limit_and_duplicate_cases(run)
        run.start()
        problems = _deliver_and_judge(run, msgs)
        assert run.runtime.consumer._thread.is_alive(), "the consumer stopped"
    assert not problems, f"{service}: {len(problems)} of {len(msgs)} messages:\n- " + "\n- ".join(problems)


# -- 6. the pace, with many bad messages -----------------------------------------------------------------------

N_GOOD, N_BAD = 60, 300
WRONG_SOURCE = {"quota": DEPT_SOURCE[TAX], "assessment": DEPT_SOURCE[TAX], "settlement": DEPT_SOURCE[ECOLOGY],
                "ledger": DEPT_SOURCE[TAX]}


def _raw(run: Run, label: str, value: bytes, reasons: set[str]) -> Msg:
    run.n += 1
    try:
        eid = json.loads(value).get("id")
    except ValueError:
        eid = None
    return Msg(label, run.intake, f"audit-{run.run}-{run.n}-{label}", value, eid, False, reasons)


def _edit(value: bytes, **changes) -> bytes:
    doc = json.loads(value)
    doc.update(changes)
    return json.dumps(doc, ensure_ascii=False).encode()


def _bad(run: Run, sc, i: int, before: list[Msg]) -> Msg:
    event, source = sc.good(10_000 + i)
    good = run.msg("template", event, source, applied=False).value
    kind = i % 8
    if kind == 7 and i >= 24 or kind == 7 and run.service == "ledger":
        kind = 0  # a few oversized ones are enough bytes; the ledger's limit is Kafka's own
    if kind == 0:
        return _raw(run, "malformed JSON", good[: len(good) // 2], {"malformed_json"})
    if kind == 1:
        return _raw(run, "unknown type", _edit(good, type="countypool.NoSuchThingHappened.v1"), {"unknown_type"})
    if kind == 2:
        return _raw(run, "schema version 9", _edit(good, type=f"countypool.{event.name}.v9"), {"unsupported_version"})
    if kind == 3:
        return run.msg("wrong source", event, WRONG_SOURCE[run.service], applied=False)
    if kind == 4:  # an id applied before, with another body
        original = before[i % len(before)]
        doc = json.loads(original.value)
        changed = sc.changed(sc.good(i % len(before))[0])
        return _raw(run, "duplicate id, other body", _edit(run.msg("x", changed, doc["source"], applied=False).value,
                                                           id=doc["id"]), {"duplicate_id_different_body"})
    if kind == 5:
        foreign, fsource = sc.foreign()
        return run.msg("a type this topic does not take", foreign, fsource, applied=False,
                       reasons={"unexpected_type", "unknown_type"})
    if kind == 6:
        return _raw(run, "payload against its schema", _edit(good, data={"unexpected": [1, 2, 3]}), {"invalid_payload"})
    return _raw(run, "oversized", good + b" " * (run.runtime.consumer._size_limits[run.intake] + 1 - len(good)),
                {"message_too_large"})


@pytest.mark.kafka
@pytest.mark.parametrize("service", ["assessment", "quota", "ledger", "settlement"])
def test_the_consumer_keeps_its_pace_through_hundreds_of_bad_messages(service, kafka_bootstrap, tmp_path, request):
    from tests.badinput.test_kafka_intake import SCENARIOS

    run = Run(service, kafka_bootstrap, tmp_path, request)
    with ExitStack() as stack:
        run.open(stack)
        sc = SCENARIOS[service](run.run, kafka_bootstrap, topic=run.intake)
        sc.runtime, sc.client = run.runtime, run.client
        sc.prepare()
        before = [run.msg(f"good {i}", *sc.good(i), applied=True) for i in range(N_GOOD)]
        run.start()
        t = time.monotonic()
        problems = _deliver_and_judge(run, before)
        pace_before = time.monotonic() - t
        bad = [_bad(run, sc, i, before) for i in range(N_BAD)]
        after = [run.msg(f"good {i}", *sc.good(i), applied=True) for i in range(N_GOOD, 2 * N_GOOD)]
        # the bad ones first and among the good ones
        mixed = bad[: N_BAD // 2] + [m for pair in zip(bad[N_BAD // 2:], after) for m in pair] + bad[N_BAD // 2 + N_GOOD:]
        assert len(mixed) == N_BAD + N_GOOD
        t = time.monotonic()
        problems += _deliver_and_judge(run, mixed)
        pace_after = time.monotonic() - t
        consumer = run.runtime.consumer
        assert consumer._thread.is_alive(), "the consumer stopped"
        loop_error = consumer.stats.last_error
    pace = (f"{N_GOOD} good messages applied in {pace_before:.1f}s; {N_BAD} bad ones (each dead-lettered and its "
            f"letter read back) and {N_GOOD} good ones in {pace_after:.1f}s")
    print(f"{service}: {pace}")
    assert not problems, f"{service}: {len(problems)} problems:\n- " + "\n- ".join(problems[:40])
    assert loop_error is None, f"the consumer loop failed and restarted: {loop_error}"
    # each bad message is refused at once (no retries, no back-off): 300 of them and 60 good ones take at most about
    # twice what 60 good ones alone do (test_kafka_intake allows 3x + 5 s for 7, i.e. ~0.7 s per bad message)
    assert pace_after <= 2 * pace_before + 3, pace


# -- 7. the fuzz with the tokens of departments, finance and the settlement office --------------------------------

# in `make test` one non-admin principal per service (each run costs ~5 s of CI); all of them: BADINPUT_ALL_TOKENS=1
_TOKENS = [("quota", "dev-ecology-token"), ("assessment", "dev-tax-token"), ("settlement", "dev-tax-token"),
           ("ledger", "dev-finance-token")]
if os.environ.get("BADINPUT_ALL_TOKENS"):
    _TOKENS += [("quota", "dev-natural-resources-token"), ("quota", "dev-finance-token"),
                ("assessment", "dev-industry-token"), ("settlement", "dev-settlement-admin-token"),
                ("settlement", "dev-statistics-token")]


@pytest.mark.kafka
@pytest.mark.parametrize("service,token", _TOKENS)
def test_fuzzed_calls_with_a_department_token_get_no_5xx_and_refusals_change_nothing(
        service, token, tmp_path, kafka_bootstrap, monkeypatch):
    from tests.badinput import test_openapi_fuzz as fz

    monkeypatch.setattr(fz, "ADMIN", auth(token))  # the header fuzz() sends with token=True
    with fz.fuzz_target(service, f"sqlite:///{tmp_path / 'fuzz.sqlite3'}", kafka_bootstrap, tmp_path) as (runtime, app):
        found = fz.fuzz(runtime, app, token=True, max_examples=6)
    assert found.calls > 0
    assert any(200 <= s < 300 for s in found.statuses), f"nothing got through: {found.statuses}"
    if token != "dev-settlement-admin-token":  # (the settlement office holds every scope of its service)
        assert 403 in found.statuses, f"the department's token was not the one sent: {found.statuses}"
    assert not found.problems, found.report()

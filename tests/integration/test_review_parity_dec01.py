"""Review: one body, two doors. A department may send each intake input over HTTP or as an event on its service's
intake topic "with the same schemas" (design.md, "Who uses it"). Whatever the door, the same body must have the same
outcome: accepted with the same stored effect, or refused with the same machine-readable reason (the HTTP 4xx body's
``reason`` against the dead letter's ``dlq-reason`` header on ``<topic>.dlq``).

For every service that takes department intake (assessment: EnterpriseReported, IndicatorsReported; quota:
QuotaReleaseSubmitted, ReclamationAccepted, ApprovalGranted; settlement: TaxReceiptReported, StatisticsReported) a table
of cases — a valid body, each field at its limit and one past it, amounts with too many decimals, zero, negative,
huge, codes in full-width digits, unknown enum values, optional fields left out, unknown fields, an id sent again with
the same and with another body — is sent over HTTP to one fresh instance and, in the same order, over real Kafka to
another fresh instance (its own SQLite database, its own consumer group positioned at the topics' end, relay off).
Outcomes and the stored records are then compared case by case.

The two doors have their own words for the two refusals that happen before a body reaches the service's code: a
body its schema refuses is HTTP 422 ``invalid_request`` / dead letter ``invalid_payload``, and a publisher without the
scope is HTTP 403 ``insufficient_scope`` / dead letter ``source_not_allowed`` (README, "How events move"). Those pairs
count as the same reason; every other reason must be the same string. Settlement's receipts and statistics reports of
an enterprise not known yet are the one documented difference: 422 ``unknown_enterprise`` over HTTP, waiting for the
enterprise over Kafka.
"""
from __future__ import annotations

import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from services.assessment.domain.credit_code import make_credit_code
from shared.contracts import topics
from tests.badinput.support import TopicTail, headers_of, start_consuming_from_end
from tests.support.services import ADMIN, TOKENS, auth, running_service

pytestmark = pytest.mark.kafka

# the door's own word for the same refusal (README): schema refused, publisher not allowed
SAME_REASON = {"invalid_payload": "invalid_request", "source_not_allowed": "insufficient_scope"}
VOLATILE = {"registered_at", "updated_at", "updated_by", "received_at", "channel", "received_via", "received_by"}

INDUSTRY, TAX, STATS = "/departments/industry", "/departments/tax", "/departments/statistics"
ECOLOGY, LAND_DEPT = "/departments/ecology", "/departments/natural-resources"
TOKEN = {INDUSTRY: "dev-industry-token", TAX: "dev-tax-token", STATS: "dev-statistics-token",
         ECOLOGY: "dev-ecology-token", LAND_DEPT: "dev-natural-resources-token"}


@dataclass
class Case:
    group: str
    label: str
    event: str  # the intake event's name (Kafka type) and the HTTP route it maps to
    body: dict  # the HTTP body; the Kafka event's data (plus ``path_id`` for a route that takes its id in the path)
    source: str  # the department (its envelope source; its dev token on HTTP)
    ref: tuple  # what to read back to compare stored state
    path_id: str | None = None

    @property
    def uid(self) -> str:
        return f"{self.event}: {self.label}"


@dataclass
class Outcome:
    accepted: bool
    reason: str | None
    detail: str = ""

    def key(self) -> tuple:
        return self.accepted, SAME_REASON.get(self.reason, self.reason)

    def __str__(self) -> str:
        return "accepted" if self.accepted else f"refused {self.reason} ({self.detail[:120]})"


@dataclass
class Compared:
    case: Case
    http: Outcome
    kafka: Outcome
    http_state: Any
    kafka_state: Any
    problems: list[str] = field(default_factory=list)


# -- the two doors ---------------------------------------------------------------------------------------------

ROUTES = {
    "EnterpriseReported": "/v1/enterprises", "IndicatorsReported": "/v1/indicators",
    "QuotaReleaseSubmitted": "/v1/releases", "ApprovalGranted": "/v1/approvals",
    "ReclamationAccepted": "/v1/reclamation-projects/{}/acceptance",
    "TaxReceiptReported": "/v1/tax-receipts", "StatisticsReported": "/v1/statistics-reports",
}


def over_http(client, case: Case) -> Outcome:
    path = ROUTES[case.event]
    body = dict(case.body)
    if case.path_id is not None:
        path = path.format(case.path_id)
        body.pop("project_id", None)
    r = client.post(path, headers=auth(TOKEN[case.source]), json=body)
    if r.status_code < 300:
        return Outcome(True, None)
    try:
        doc = r.json()
    except ValueError:
        doc = {}
    return Outcome(False, doc.get("reason") or f"http_{r.status_code}", f"{r.status_code} {doc.get('message', r.text)}")


def envelope(case: Case, subject: str, event_id: str) -> bytes:
    return json.dumps({"specversion": "1.0", "id": event_id, "source": case.source,
                       "type": f"countypool.{case.event}.v1", "subject": subject,
                       "time": datetime.now(timezone.utc).isoformat(), "aggregatetype": "intake",
                       "data": case.body}, ensure_ascii=False).encode()


def over_kafka(bootstrap: str, runtime, topic: str, cases: list[Case], run: str) -> dict[str, Outcome]:
    """Every case in order on one key (one partition: the consumer sees them in the order HTTP got them); waits until
    the service's consumer has stored a position past the last, then reads the inbox (applied) and the dead letters
    (refused, with their reason) of this consumer group."""
    tail = TopicTail(bootstrap, topics.dlq(topic))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    key = f"parity-{run}".encode()
    ids = {c.uid: f"parity-{run}-{i}" for i, c in enumerate(cases)}
    try:
        futures = [producer.send(topic, key=key, value=envelope(c, key.decode(), ids[c.uid])) for c in cases]
        producer.flush(30)
        metas = [f.get(timeout=30) for f in futures]
        partition, last = metas[-1].partition, max(m.offset for m in metas)
        consumer = runtime.consumer
        positions = consumer.positions
        deadline = time.monotonic() + 40
        while True:
            with runtime.db.sessions() as s:
                nxt = s.execute(sa.select(positions.c.next_offset).where(
                    positions.c.group_id == consumer.group_id, positions.c.topic == topic,
                    positions.c.partition == partition)).scalar()
            if nxt is not None and nxt > last:
                break
            assert time.monotonic() < deadline, f"{topic}: the consumer did not get past offset {last} ({nxt})"
            time.sleep(0.1)
        with runtime.db.sessions() as s:
            inbox = consumer.inbox
            applied = {r.event_id for r in s.execute(sa.select(inbox.c.event_id, inbox.c.outcome).where(
                inbox.c.event_id.in_(list(ids.values())))) if r.outcome == "applied"}
        wanted = set(ids.values()) - applied
        group = consumer.group_id

        def ours(recs) -> dict[str, tuple[str, str]]:
            out = {}
            for r in recs:
                h = headers_of(r)
                if h.get("dlq-consumer-group") != group or not r.value:
                    continue
                try:
                    eid = json.loads(r.value).get("id")
                except ValueError:
                    continue
                if eid in wanted:
                    out[eid] = (h.get("dlq-reason", ""), h.get("dlq-error", ""))
            return out

        dead = ours(tail.until(lambda recs: wanted <= set(ours(recs)), timeout=20))
    finally:
        producer.close()
        tail.close()
    out = {}
    for c in cases:
        eid = ids[c.uid]
        if eid in applied:
            out[c.uid] = Outcome(True, None)
        elif eid in dead:
            out[c.uid] = Outcome(False, *dead[eid])
        else:
            out[c.uid] = Outcome(False, "<neither applied nor dead-lettered>")
    return out


def _waits_for_its_enterprise(c: Case, h: Outcome, k: Outcome, kafka_client) -> bool:
    """Settlement's documented pair (services/settlement/README.md): a receipt or statistics report of an enterprise
    not known yet is answered 422 unknown_enterprise over HTTP, and over Kafka waits for it (GET /v1/waiting-inputs):
    the department's topic and the register's events are not ordered against each other."""
    if h.accepted or h.reason != "unknown_enterprise" or not k.accepted:
        return False
    input_id = c.body.get("receipt_id") or c.body.get("report_id")
    waiting = kafka_client.get("/v1/waiting-inputs", params={"limit": 1000}, headers=ADMIN).json()["inputs"]
    return any(w["input_id"] == input_id and w["state"] == "waiting" for w in waiting)


def compare(cases: list[Case], http_client, http_runtime, kafka_runtime, kafka_client, bootstrap: str, topic: str,
            state: Callable) -> dict[str, Compared]:
    run = uuid.uuid4().hex[:8]
    assert len({c.uid for c in cases}) == len(cases), "two cases of one event share a label"
    http = {c.uid: over_http(http_client, c) for c in cases}
    kafka = over_kafka(bootstrap, kafka_runtime, topic, cases, run)
    out: dict[str, Compared] = {}
    for c in cases:
        h, k = http[c.uid], kafka[c.uid]
        hs, ks = state(http_client, http_runtime, c.ref), state(kafka_client, kafka_runtime, c.ref)
        cmp = Compared(c, h, k, hs, ks)
        if h.key() != k.key() and not _waits_for_its_enterprise(c, h, k, kafka_client):
            cmp.problems.append(f"HTTP {h} / Kafka {k}")
        if hs != ks:
            cmp.problems.append(f"stored differently: HTTP {hs} / Kafka {ks}")
        out[c.uid] = cmp
    if os.environ.get("PARITY_DEBUG"):
        for cmp in out.values():
            print(f"{cmp.case.group:16} {cmp.case.label:45} HTTP {cmp.http} | Kafka {cmp.kafka} | {cmp.problems}")
    return out


def divergences(results: dict[str, Compared], group: str) -> list[str]:
    chosen = [r for r in results.values() if r.case.group == group]
    assert chosen, f"no case in group {group}"
    return [f"{r.case.event} {r.case.label}: " + "; ".join(r.problems) for r in chosen if r.problems]


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(x) for x in doc]
    return doc


def _get(client, path: str) -> Any:
    r = client.get(path, headers=ADMIN)
    return _strip(r.json()) if r.status_code == 200 else r.status_code


def _pair(service: str, tmp_path_factory, kafka_bootstrap, **settings):
    """(HTTP instance, Kafka instance) context managers, each on a fresh SQLite database."""
    base = tmp_path_factory.mktemp(f"parity-{service}")
    http = running_service(service, f"sqlite:///{base / 'http.sqlite3'}", kafka_bootstrap, background=False)
    kafka = running_service(service, f"sqlite:///{base / 'kafka.sqlite3'}", kafka_bootstrap, background=False,
                            relay_enabled=False, **settings)
    return http, kafka


def code(county: str, n: int) -> str:
    return make_credit_code(f"91{county}{n:09d}")


def fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


# -- assessment: the register and the yearly figures --------------------------------------------------------------

def assessment_cases(county: str) -> list[Case]:
    tw = f"{county}101"

    def ent(group, label, n, **over):
        body = {"credit_code": code(county, n), "name": f"企业{n}", "township_code": tw, "industry_code": "C3311"}
        for k, v in over.items():
            if v is _DROP:
                body.pop(k, None)
            else:
                body[k] = v
        return Case(group, label, "EnterpriseReported", body, INDUSTRY, ("enterprise", code(county, n)))

    def figs(group, label, n, fields, year=2023, department="tax", **extra):
        body = {"credit_code": code(county, n), "year": year, "department": department, "fields": fields, **extra}
        return Case(group, label, "IndicatorsReported", body, INDUSTRY, ("indicators", code(county, n), year))

    flags = lambda k: [f"county_flag_{i:02d}" for i in range(k)]  # noqa: E731
    c1 = code(county, 1)
    return [
        ent("enterprise", "valid minimal", 1),
        ent("enterprise", "valid with every field", 2, in_park=True, park_id="P01", flags=["high_tech", "safety_hazard"],
            scale="规上"),
        ent("enterprise", "name of 200", 3, name="名" * 200),
        ent("enterprise", "name of 201", 4, name="名" * 201),
        ent("enterprise", "credit code in full width", 5, credit_code=fullwidth(code(county, 5))),
        ent("enterprise", "credit code in lower case", 6, credit_code=code(county, 6).lower()),
        ent("enterprise", "credit code with a bad check character", 7,
            credit_code=code(county, 7)[:17] + ("0" if code(county, 7)[17] != "0" else "1")),
        ent("enterprise", "township in full-width digits", 8, township_code=fullwidth(tw)),
        ent("enterprise", "township of 12 digits", 9, township_code=f"{tw}001"),
        ent("enterprise", "unknown scale", 10, scale="大型"),
        ent("enterprise", "an unknown field", 11, founded="2001"),
        ent("enterprise", "industry code of 11", 12, industry_code="C3311000000"),
        ent("enterprise", "park id of 100", 13, in_park=True, park_id="P" * 100),
        ent("enterprise", "park id of 101", 14, in_park=True, park_id="P" * 101),
        ent("enterprise", "30 flags", 15, flags=flags(30)),
        ent("enterprise", "51 flags", 16, flags=flags(51)),
        ent("enterprise", "a flag of 60", 17, flags=["f" * 60]),
        ent("enterprise", "a flag not a name", 18, flags=["high-tech"]),
        ent("enterprise", "scale left out (optional)", 19, scale=_DROP),
        ent("enterprise", "sent again, same body", 1),
        ent("enterprise", "sent again, renamed", 1, name="企业1（更名）"),
        # the contract's bounds against the register's
        ent("flags-count", "31 flags", 31, flags=flags(31)),
        ent("flags-count", "50 flags", 32, flags=flags(50)),
        ent("flag-length", "a flag of 61", 33, flags=["f" * 61]),
        ent("optional-fields", "industry code left out", 34, industry_code=_DROP),
        ent("optional-fields", "industry code empty", 35, industry_code=""),
        ent("optional-fields", "park id empty", 36, in_park=True, park_id=""),
        # figures of the registered enterprise 1
        figs("figures", "valid", 1, {"tax": "1830000.00", "land": "12.5"}),
        figs("figures", "year 1990", 1, {"tax": "1.00"}, year=1990),
        figs("figures", "year 1989", 1, {"tax": "1.00"}, year=1989),
        figs("figures", "year 2200", 1, {"tax": "1.00"}, year=2200),
        figs("figures", "year 2201", 1, {"tax": "1.00"}, year=2201),
        figs("figures", "tax with three decimals", 1, {"tax": "1.001"}, year=2022),
        figs("figures", "negative tax", 1, {"tax": "-5.00"}, year=2021),
        figs("figures", "zero land", 1, {"land": "0"}, year=2020),
        figs("figures", "huge tax", 1, {"tax": "9" * 30}, year=2019),
        figs("figures", "31 digits", 1, {"tax": "9" * 31}, year=2018),
        figs("figures", "full-width figure", 1, {"tax": "１２３"}, year=2017),
        figs("figures", "unknown field", 1, {"profit": "1"}, year=2016),
        figs("figures", "pollutant misspelt", 1, {"emissions.cod": "1.2"}, year=2015),
        figs("figures", "no fields", 1, {}, year=2014),
        figs("figures", "an unknown top-level field", 1, {"tax": "1.00"}, year=2013, note="x"),
        figs("figures", "not registered", 99, {"tax": "1.00"}),
        figs("figures", "credit code in full width", 1, {"tax": "2.00"}, year=2012) | _recode(fullwidth(c1)),
        figs("figures", "sent again, same body", 1, {"tax": "1830000.00", "land": "12.5"}),
        figs("figures", "sent again, other figures", 1, {"tax": "1900000.00", "land": "12.5"}),
    ]


class _Drop:
    pass


_DROP = _Drop()


class _recode:  # noqa: N801 - used as ``case | _recode(code)``: the same case with another spelling of its code
    def __init__(self, text: str):
        self.text = text

    def __ror__(self, case: Case) -> Case:
        case.body["credit_code"] = self.text
        return case


def assessment_state(client, runtime, ref) -> Any:
    if ref[0] == "enterprise":
        return _get(client, f"/v1/enterprises/{ref[1]}")
    return _get(client, f"/v1/enterprises/{ref[1]}/indicators/{ref[2]}")


@pytest.fixture(scope="module")
def assessment_results(tmp_path_factory, kafka_bootstrap):
    from shared.kafka_admin import ensure_topics

    county = str(random.randint(110000, 659999))
    topic = f"test.parity.{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, [topic, topics.dlq(topic)], partitions=1)
    http_cm, kafka_cm = _pair("assessment", tmp_path_factory, kafka_bootstrap, intake_topic=topic,
                              group_id=f"test-parity-{uuid.uuid4().hex[:8]}")
    with http_cm as (hr, hc), kafka_cm as (kr, kc):
        start_consuming_from_end(kr, kafka_bootstrap)
        results = compare(assessment_cases(county), hc, hr, kr, kc, kafka_bootstrap, topic, assessment_state)
        path = f"/v1/enterprises/{code(county, 2)}"
        _UPDATED_BY["assessment"] = (hc.get(path, headers=ADMIN).json().get("updated_by"),
                                     kc.get(path, headers=ADMIN).json().get("updated_by"))
        return results


# -- quota: releases, reclamation acceptance, approvals -------------------------------------------------------------

def quota_cases(county: str, run: str) -> list[Case]:
    tw = f"{county}101"
    today = date.today()

    def rel(group, label, n, rid=None, **over):
        rid = rid or f"PAR-{run}-R{n}"
        body = {"release_id": rid, "enterprise_credit_code": code(county, n), "township_code": tw,
                "county_code": county, "asset": "COD", "amount": "1.5", "reason": "upgrade_savings", "basis": "free",
                "document_ref": "通环收〔2024〕1号", "released_on": "2024-02-01"}
        for k, v in over.items():
            if v is _DROP:
                body.pop(k, None)
            else:
                body[k] = v
        return Case(group, label, "QuotaReleaseSubmitted", body, ECOLOGY, ("release", rid))

    def acc(group, label, pid, **over):
        body = {"project_id": pid, "accepted_on": "2024-05-01", **over}
        return Case(group, label, "ReclamationAccepted", body, LAND_DEPT, ("reclamation", pid), path_id=pid)

    def appr(group, label, pid, **over):
        body = {"project_id": pid, "kind": "environmental_impact", "document_ref": "环评批复1号",
                "granted_on": "2024-06-01", **over}
        return Case(group, label, "ApprovalGranted", body, ECOLOGY, ("approvals", pid))

    rc = lambda i: f"PAR-{run}-RC{i}"  # noqa: E731
    return [
        rel("release", "valid, upgrade savings", 1),
        rel("release", "valid, closure (held)", 2, reason="closure"),
        rel("release", "valid, paid", 3, basis="paid", buyback_price_per_unit="12000.00"),
        rel("release", "smallest unit", 4, amount="0.0001"),
        rel("release", "one decimal too many", 5, amount="0.00001"),
        rel("release", "zero", 6, amount="0"),
        rel("release", "negative", 7, amount="-1.5"),
        rel("release", "huge", 8, amount="9" * 30),
        rel("release", "released 2000-01-01", 9, released_on="2000-01-01"),
        rel("release", "released 1999-12-31", 10, released_on="1999-12-31"),
        rel("release", "released after today", 11, released_on=(today + timedelta(days=2)).isoformat()),
        rel("release", "county in full-width digits", 12, county_code=fullwidth(county), township_code=fullwidth(tw)),
        rel("release", "township of another county", 13, township_code="110101001"),
        rel("release", "credit code with a bad check character", 14,
            enterprise_credit_code=code(county, 14)[:17] + ("0" if code(county, 14)[17] != "0" else "1")),
        rel("release", "unknown reason", 15, reason="merger"),
        rel("release", "paid without a price", 16, basis="paid"),
        rel("release", "free with a price", 17, buyback_price_per_unit="1.00"),
        rel("release", "price with three decimals", 18, basis="paid", buyback_price_per_unit="1.001"),
        rel("release", "document ref of 200", 19, document_ref="D" * 200),
        rel("release", "document ref of 201", 20, document_ref="D" * 201),
        rel("release", "release id of 150", 21, rid="R" * 150),
        rel("release", "release id of 151", 22, rid="R" * 151),
        rel("release", "an unknown field", 23, note="x"),
        rel("release", "price left out (optional)", 24, buyback_price_per_unit=_DROP),
        rel("release", "asset in lower case", 25, asset="cod"),
        rel("release", "sent again, same body", 1),
        rel("release", "sent again, same amount written longer", 1, amount="1.5000"),
        rel("release", "sent again, other amount", 1, amount="2"),
        acc("acceptance", "valid, registered area", rc(1)),
        acc("acceptance", "area with five decimals", rc(2), accepted_area="1.00001"),
        acc("acceptance", "area above the registered", rc(3), accepted_area="13"),
        acc("acceptance", "zero area", rc(4), accepted_area="0"),
        acc("acceptance", "accepted 1999-12-31", rc(5), accepted_on="1999-12-31"),
        acc("acceptance", "document ref of 200", rc(6), document_ref="D" * 200),
        acc("acceptance", "unknown project", f"PAR-{run}-nowhere"),
        acc("acceptance", "an unknown field", rc(7), note="x"),
        acc("acceptance", "again, same body", rc(1)),
        acc("acceptance", "again, another area", rc(1), accepted_area="3"),
        acc("acceptance-ref", "document ref of 201", rc(8), document_ref="D" * 201),
        appr("approval", "valid", f"PAR-{run}-P1"),
        appr("approval", "granted after today", f"PAR-{run}-P2", granted_on=(today + timedelta(days=2)).isoformat()),
        appr("approval", "granted 1999-12-31", f"PAR-{run}-P3", granted_on="1999-12-31"),
        appr("approval", "document ref of 201", f"PAR-{run}-P4", document_ref="D" * 201),
        appr("approval", "document ref left out (optional)", f"PAR-{run}-P5", document_ref=_DROP_VALUE),
        appr("approval", "an unknown field", f"PAR-{run}-P6", note="x"),
        appr("approval", "unknown kind", f"PAR-{run}-P7", kind="water_permit"),
    ]


_DROP_VALUE = object()


def _clean(cases: list[Case]) -> list[Case]:
    for c in cases:
        c.body = {k: v for k, v in c.body.items() if v is not _DROP_VALUE}
    return cases


def quota_state(client, runtime, ref) -> Any:
    if ref[0] == "release":
        return _get(client, f"/v1/releases/{ref[1]}")
    if ref[0] == "reclamation":
        return _get(client, f"/v1/reclamation-projects/{ref[1]}")
    t = runtime.tables["project_approvals"] if "project_approvals" in runtime.tables else None
    with runtime.db.sessions() as s:
        t = t if t is not None else sa.Table("project_approvals", sa.MetaData(), autoload_with=s.get_bind())
        rows = s.execute(sa.select(t).where(t.c.project_id == ref[1])).mappings().all()
    return sorted((r["kind"], r["document_ref"], str(r["granted_on"])) for r in rows)


@pytest.fixture(scope="module")
def quota_results(tmp_path_factory, kafka_bootstrap):
    county = str(random.randint(110000, 659999))
    run = uuid.uuid4().hex[:8]
    http_cm, kafka_cm = _pair("quota", tmp_path_factory, kafka_bootstrap)
    with http_cm as (hr, hc), kafka_cm as (kr, kc):
        for client in (hc, kc):  # the 增减挂钩 projects whose acceptance is sent, registered on both instances
            for i in range(1, 9):
                r = client.post("/v1/reclamation-projects", headers=auth(TOKEN[LAND_DEPT]),
                                json={"project_id": f"PAR-{run}-RC{i}", "county_code": county,
                                      "township_code": f"{county}101", "area": "12.5", "registered_on": "2024-01-10"})
                assert r.status_code == 201, r.text
        start_consuming_from_end(kr, kafka_bootstrap)
        return compare(_clean(quota_cases(county, run)), hc, hr, kr, kc, kafka_bootstrap, topics.INTAKE_QUOTA,
                       quota_state)


# -- settlement: tax receipts and statistics ----------------------------------------------------------------------

def settlement_cases(county: str, run: str) -> list[Case]:
    def receipt(group, label, rid=None, n=1, **over):
        rid = rid or f"PAR-{run}-T-{label.replace(' ', '-')}"
        body = {"receipt_id": rid, "enterprise_credit_code": code(county, n), "month": "2024-03", "tax_kind": "VAT",
                "amount": "1000.00", **over}
        return Case(group, label, "TaxReceiptReported", body, TAX, ("receipt", rid))

    def stat(group, label, rid=None, **over):
        rid = rid or f"PAR-{run}-S-{label.replace(' ', '-')}"
        body = {"report_id": rid, "enterprise_credit_code": code(county, 1), "month": "2024-03",
                "measure": "value_added", "amount": "50000.00", **over}
        return Case(group, label, "StatisticsReported", body, STATS, ("statistics", rid))

    again = f"PAR-{run}-T-again"
    return [
        receipt("receipt", "valid"),
        receipt("receipt", "one fen", amount="0.01"),
        receipt("receipt", "three decimals", amount="1.001"),
        receipt("receipt", "zero", amount="0"),
        receipt("receipt", "negative", amount="-1.00"),
        receipt("receipt", "one trillion yuan", amount="1000000000000.00"),
        receipt("receipt", "above one trillion yuan", amount="1000000000000.01"),
        receipt("receipt", "month 13", month="2024-13"),
        receipt("receipt", "month not begun", month="2099-01"),
        receipt("receipt", "tax kind by its bureau name", tax_kind="增值税"),
        receipt("receipt", "tax kind in lower case", tax_kind="vat"),
        receipt("receipt", "tax kind of 40", tax_kind="T" * 40),
        receipt("receipt", "enterprise not in the register", n=77),
        receipt("receipt", "credit code in full width", enterprise_credit_code=fullwidth(code(county, 1))),
        receipt("receipt", "an unknown field", note="x"),
        receipt("receipt", "corrects an unknown receipt", corrects=f"PAR-{run}-nothing"),
        receipt("receipt", "receipt id of 200", rid="T" * 200),
        receipt("receipt", "receipt id of 201", rid="U" * 201),
        receipt("receipt", "sent once", rid=again),
        receipt("receipt", "sent again, same body", rid=again),
        receipt("receipt", "sent again, other amount", rid=again, amount="2000.00"),
        receipt("tax-kind", "tax kind of 41", tax_kind="T" * 41),
        stat("statistics", "valid"),
        stat("statistics", "three decimals", amount="1.001"),
        stat("statistics", "negative", amount="-1.00"),
        stat("statistics", "unknown measure", measure="profit"),
        stat("statistics", "an unknown field", note="x"),
    ]


def settlement_state(client, runtime, ref) -> Any:
    if ref[0] == "receipt":
        return _get(client, f"/v1/tax-receipts/{ref[1]}")
    from services.settlement.storage.tables import statistics_reports as t

    with runtime.db.sessions() as s:
        row = s.execute(sa.select(t).where(t.c.report_id == ref[1])).mappings().first()
    return None if row is None else {k: v for k, v in row.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def settlement_results(tmp_path_factory, kafka_bootstrap):
    from services.settlement import intake
    from shared.contracts.assessment import EnterpriseRegistered

    county = str(random.randint(110000, 659999))
    run = uuid.uuid4().hex[:8]
    http_cm, kafka_cm = _pair("settlement", tmp_path_factory, kafka_bootstrap)
    with http_cm as (hr, hc), kafka_cm as (kr, kc):
        for runtime in (hr, kr):  # the register (EnterpriseRegistered, as assessment publishes it) on both
            runtime.transaction(lambda uow: intake.record_enterprise(uow.session, EnterpriseRegistered(
                credit_code=code(county, 1), name="企业1", county_code=county, township_code=f"{county}101",
                in_park=False)))
        start_consuming_from_end(kr, kafka_bootstrap)
        return compare(settlement_cases(county, run), hc, hr, kr, kc, kafka_bootstrap, topics.INTAKE_SETTLEMENT,
                       settlement_state)


# -- guards: what both doors do alike -------------------------------------------------------------------------------

def test_enterprise_register_cases_have_one_outcome_on_both_doors(assessment_results):
    """Names, codes (full width, lower case, bad check character), townships, scale, park, flags at their limits, an
    unknown field, a resend: HTTP and Kafka agree. Otherwise a department's enterprise would be in the register or not
    depending on the door its system happens to use, and so be evaluated (or not) by that accident."""
    assert not divergences(assessment_results, "enterprise")


def test_indicator_cases_have_one_outcome_on_both_doors(assessment_results):
    """Years at 1990/2200 and past them, too many decimals, negative, zero, huge and full-width figures, unknown and
    misspelt fields, no fields, an unregistered enterprise, resends: the same outcome and the same merged figures.
    Otherwise an enterprise's score (its class, its closure) would depend on the door its figures took."""
    assert not divergences(assessment_results, "figures")


def test_release_cases_have_one_outcome_on_both_doors(quota_results):
    """Amounts (smallest unit, one decimal more, zero, negative, huge), dates at 2000-01-01 and today, full-width
    county, township of another county, bad credit code, unknown reason, paid/free prices, lengths at 150/200 and past,
    unknown field, resends (also "1.5000" for "1.5"): HTTP and Kafka (the consumer's batch path) agree, and the stored
    release is the same. Otherwise freed quota would enter the county pool, or not, by the door it took."""
    assert not divergences(quota_results, "release")


def test_reclamation_acceptance_cases_have_one_outcome_on_both_doors(quota_results):
    """Area with too many decimals, above the registered, zero; a date before 2000; an unknown project; an unknown
    field; the acceptance again with the same and another area: the same outcome and reason on both doors."""
    assert not divergences(quota_results, "acceptance")


def test_approval_cases_have_one_outcome_on_both_doors(quota_results):
    """Dates after today and before 2000, a document reference past 200 characters, left out, an unknown field, an
    unknown kind (its payload is validated before the publisher's scope, built from the kind, is checked): an
    approval confirms a reservation into an allocation, so its acceptance must not depend on the door."""
    assert not divergences(quota_results, "approval")


def test_receipt_and_statistics_cases_have_one_outcome_on_both_doors(settlement_results):
    """Fen, too many decimals, zero, negative, the one-trillion-yuan bound and one fen past it, month 13, a month not
    begun, tax kind names, unregistered and full-width enterprises, unknown fields, ids of 200/201, a resend with the
    same and another amount: the same outcome and stored receipt. A receipt taken on one door and refused on the other
    is revenue a township is, or is not, paid its share of."""
    assert not divergences(settlement_results, "receipt")
    assert not divergences(settlement_results, "statistics")


# -- divergences --------------------------------------------------------------------------------------------------

def test_an_enterprise_with_31_to_50_flags_is_registered_over_http_but_dead_lettered_over_kafka(assessment_results):
    """The register holds up to 50 flags (register.MAX_FLAGS; POST /v1/enterprises takes 50), the intake contract
    only 30: an enterprise a department's system reports with its 31 county flags is registered over HTTP and
    dead-lettered ``invalid_payload`` over Kafka — absent from the register, so never evaluated nor admitted, for the
    door it took."""
    assert not divergences(assessment_results, "flags-count")


def test_a_flag_of_61_characters_is_refused_with_the_same_reason_on_both_doors(assessment_results):
    """A flag longer than 60 characters: HTTP answers 422 ``invalid_enterprise`` (register.make_enterprise), the
    intake topic dead-letters ``invalid_payload`` (contract). A department's system that fixes refusals by reason
    cannot: the same mistake has two names."""
    assert not divergences(assessment_results, "flag-length")


def test_left_out_or_empty_industry_code_and_empty_park_are_refused_alike(assessment_results):
    """``industry_code`` is optional in EnterpriseReported (default "") and required (min 1) over HTTP; ``park_id`` ""
    is refused by HTTP's schema (min 1) and by the register on Kafka: HTTP says ``invalid_request``, the dead letter
    ``invalid_enterprise``. The contract promises a field the service can never take (an entry without an industry
    code is always refused on Kafka, even for an enterprise whose code the register holds)."""
    assert not divergences(assessment_results, "optional-fields")


def test_the_register_names_a_department_by_door_and_the_tokens_join_the_two_names(assessment_results):
    """``updated_by`` of a register entry is the principal ("industry-bureau") over HTTP and the envelope source
    ("/departments/industry") over Kafka, as README's intake section says: the two names of one bureau, which the
    tokens file joins (its principal's ``sources``). An audit of who changed an entry reads them through it. (The
    review asked for one name; left as documented: the source is what a Kafka record proves.)"""
    by = _UPDATED_BY.get("assessment")
    assert by is not None, "updated_by was not read"
    tokens = json.loads(TOKENS.read_text(encoding="utf-8"))
    [spec] = [t for t in tokens.values() if t["principal"] == by[0]]
    assert by[1] in spec["sources"], (by, spec)


_UPDATED_BY: dict[str, tuple] = {}


def test_a_reclamation_acceptance_with_a_201_character_document_ref_is_taken_over_http_only(quota_results):
    """ReclamationAccepted bounds ``document_ref`` to 200 characters (the column's width); the HTTP acceptance body
    (api/schemas.ReclamationAcceptanceIn) does not: over Kafka the acceptance is dead-lettered ``invalid_payload``,
    over HTTP the land enters the pool (SQLite) or the call is 422 ``invalid_value`` from the database (PostgreSQL).
    12.5 亩 of reclaimed land are in the county's pool, or not, by the door."""
    assert not divergences(quota_results, "acceptance-ref")


def test_a_tax_kind_of_41_characters_is_refused_with_the_same_reason_on_both_doors(settlement_results):
    """TaxReceiptIn bounds ``tax_kind`` to 40 characters (422 ``invalid_request``); TaxReceiptReported takes 200 and
    the domain refuses it (``invalid_tax_kind``). The tax bureau's system sees one mistake under two reasons."""
    assert not divergences(settlement_results, "tax-kind")


def test_on_postgresql_the_201_character_acceptance_is_refused_by_the_database_not_for_its_field(
        quota_results, pg_url, kafka_bootstrap):
    """The same acceptance over HTTP on PostgreSQL (the production database): the body passes, the column refuses the
    value, and the answer is 422 ``invalid_value`` with the database's message — not the field-level refusal the
    intake topic gives (``invalid_payload``, naming ``document_ref``). One mistake, a third reason, and one that no
    longer says which field is wrong."""
    kafka = quota_results["ReclamationAccepted: document ref of 201"].kafka
    county, pid = str(random.randint(110000, 659999)), f"PAR-{uuid.uuid4().hex[:8]}-RC"
    with running_service("quota", pg_url, kafka_bootstrap, background=False) as (_, client):
        r = client.post("/v1/reclamation-projects", headers=auth(TOKEN[LAND_DEPT]),
                        json={"project_id": pid, "county_code": county, "township_code": f"{county}101",
                              "area": "12.5", "registered_on": "2024-01-10"})
        assert r.status_code == 201, r.text
        http = over_http(client, Case("pg", "document ref of 201", "ReclamationAccepted",
                                      {"project_id": pid, "accepted_on": "2024-05-01", "document_ref": "D" * 201},
                                      LAND_DEPT, ("reclamation", pid), path_id=pid))
    assert http.key() == kafka.key(), f"HTTP (PostgreSQL) {http} / Kafka {kafka}"

"""The generated tiny county (ops.generator) end to end: its departments' intake events over Kafka, then the
same data as department files (which must change nothing), an evaluation, its exits and relocations, and
its projects, whose admission must be what the generator expects."""
from __future__ import annotations

import json
import uuid

from kafka import KafkaProducer
from sqlalchemy import text

from ops.generator import CountyGenerator, write_dataset
from shared.contracts import topics
from tests.support.services import ADMIN, wait_for

from .conftest import TopicTail, of_type

DEPARTMENTS = ("industry", "tax", "development_reform", "ecology", "natural_resources")


def test_generated_county_through_intake_files_evaluation_exits_and_projects(consuming_service, kafka_bootstrap,
                                                                             events_tail, tmp_path):
    runtime, c, topic = consuming_service
    write_dataset(CountyGenerator("tiny", seed=42), tmp_path, xlsx=True)
    lines = (tmp_path / "events" / f"{topics.INTAKE_ASSESSMENT}.jsonl").read_bytes().splitlines()
    dlq = TopicTail(kafka_bootstrap, f"{topic}.dlq")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for line in lines:
        producer.send(topic, key=json.loads(line)["subject"].encode(), value=line)
    producer.flush()
    producer.close()

    def applied() -> int:
        with runtime.db.sessions() as s:
            return s.execute(text("SELECT count(*) FROM inbox WHERE outcome = 'applied'")).scalar()

    wait_for(lambda: applied() == len(lines), timeout=60, what=f"{len(lines)} intake events applied")
    assert dlq.until(lambda recs: True, timeout=1) == [], "no intake event is refused"
    dlq.close()

    # the generator's county code is fixed and other tests may use it: our events are told apart by the
    # correlation id our requests carry
    cid = f"generated-county-{uuid.uuid4().hex}"
    c.headers["x-correlation-id"] = cid
    files = tmp_path / "files"
    reg = c.post("/v1/imports", headers=ADMIN, files={"file": ("e.xlsx", (files / "industry/enterprises.xlsx").read_bytes())},
                 data={"kind": "enterprises"}).json()
    assert (reg["rejected"], reg["outcomes"]) == (0, {"unchanged": reg["rows"]}), reg["bad_rows"][:3]
    for dept in DEPARTMENTS:
        out = c.post("/v1/imports", headers=ADMIN, files={"file": ("i.csv", (files / f"{dept}/indicators.csv").read_bytes())},
                     data={"kind": "indicators", "department": dept}).json()
        assert (out["rejected"], out["outcomes"]) == (0, {"unchanged": out["rows"]}), (dept, out["bad_rows"][:3])

    exits = json.loads((tmp_path / "http/exits.json").read_text())
    county, year = exits[0]["county_code"], exits[0]["year"]
    run = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county, "year": year})
    assert run.status_code == 201, run.text
    for ex in exits:
        d = c.post("/v1/dispositions", headers=ADMIN, json={k: ex[k] for k in ("credit_code", "year", "decided", "decided_by", "reason")})
        assert d.status_code == 201, d.text
        e = c.post(f"/v1/dispositions/{ex['credit_code']}/{ex['year']}/execution", headers=ADMIN,
                   json={"effective_on": ex["effective_on"], "to_park_id": ex["to_park_id"]})
        assert e.status_code == 201, e.text

    expected = {json.loads(x)["project_id"]: json.loads(x) for x in (tmp_path / "expected/projects.jsonl").read_text().splitlines()}
    for body in json.loads((tmp_path / "http/projects.json").read_text()):
        r = c.post("/v1/projects", headers=ADMIN, json=body)
        assert r.status_code == 201, r.text
        want = expected[body["project_id"]]
        assert (r.json()["admitted"], [f["code"] for f in r.json()["failures"]]) == (want["admitted"], want["failures"]), want["scenario"]

    freed = {"close": "EnterpriseExited", "relocate": "EnterpriseRelocated"}
    wanted = {(freed[ex["decided"]], ex["credit_code"]) for ex in exits} | {("ProjectEvaluated", p) for p in expected}
    got = lambda: {(e["type"].split(".")[1], e["subject"]) for e in events_tail.correlated(cid)}  # noqa: E731
    assessed = lambda: len(of_type(events_tail.correlated(cid), "EnterpriseAssessed"))  # noqa: E731
    events_tail.until(lambda _: wanted <= got() and assessed() == run.json()["run"]["enterprise_count"], timeout=30)

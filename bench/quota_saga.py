"""A generated county-year through the whole quota saga, on PostgreSQL and Kafka, with the real ledger.

Prints figures, never asserts timing. One run:

* generates a county with ``ops.generator`` (``--size medium``: ~8,500 releases, ~2,600 exits and
  relocations, ~775 projects, ~710 quota requests, ~1,900 approvals; ``small`` is 10x smaller);
* starts the quota and ledger services in-process, each on a fresh PostgreSQL database (beside
  ``TEST_DATABASE_URL`` or ``--pg-url``, dropped afterwards), on real Kafka, automatic rounds every
  ``--round-interval`` seconds;
* intake: ProjectEvaluated and EnterpriseExited/Relocated (as the assessment service would say them), every
  release and reclamation acceptance on ``countypool.intake.quota`` (department sources), until every lot
  is booked in the ledger;
* demand: every quota request over HTTP in the order of its date; half of the requests' approvals are
  published at once (before the reservation), the other half as soon as the request is reserved; until no
  request waits for a round or the ledger and every fully approved reservation is allocated;
* reconciliation of the pool against the ledger (must agree).

Reported: events per second end to end (messages through Kafka: intake + quota outbox + ledger outbox, over
the whole run), per phase, and request -> reserved latency p50/p99 (arrival to reserved, which includes the
wait for the next automatic round; and round -> reserved, the saga's own part).

Usage:  .venv/bin/python bench/quota_saga.py [--size medium|small|tiny] [--seed 42] [--round-interval 0.5]
        [--request-rate 10]   (requests per second; default 0 = every request at once, a burst)
        [--bootstrap HOST:PORT] [--pg-url URL] [--out bench/results/quota_saga.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform as host
import statistics
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.support import DEFAULT_PG, ScratchDatabases, percentile  # noqa: E402
from ops.generator import CountyGenerator  # noqa: E402
from ops.generator.http import reclamation_body, request_body  # noqa: E402
from ops.generator.tables import amount as asset_amount  # noqa: E402
from shared.amounts import format_amount  # noqa: E402
from shared.contracts.assessment import EnterpriseExited, EnterpriseRelocated, ProjectEvaluated  # noqa: E402
from shared.contracts.quota import ApprovalGranted, QuotaReleaseSubmitted, ReclamationAccepted  # noqa: E402
from shared.envelope import new_envelope  # noqa: E402
from tests.integration.quota.harness import SOURCES, new_county  # noqa: E402
from tests.integration.quota.harness import platform  # noqa: E402
from tests.support.services import ADMIN, auth  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "quota_saga.json"
ASSESSMENT = "/countypool/assessment"


DEPARTMENT_SOURCE = {"ecology": SOURCES["ecology"], "development_reform": SOURCES["energy"],
                     "natural_resources": SOURCES["land"]}


class Bench:
    """The generated county under another code: topics are shared, and other runs (demos, other benches)
    use the generator's 320612 with the same release and request ids; a code of its own keeps this run's
    transfer ids apart from theirs."""

    def __init__(self, plat, gen: CountyGenerator):
        self.p, self.gen = plat, gen
        self.county = gen.counties[0]
        self.code = new_county()
        self.producer = KafkaProducer(bootstrap_servers=plat.bootstrap, acks="all", linger_ms=5,
                                      batch_size=256 * 1024)
        self.published = 0

    def re(self, text_: str | None) -> str | None:
        """The generated id or code under this run's county code."""
        return None if text_ is None else text_.replace(self.county.code, self.code)

    def send(self, env, topic: str) -> None:
        self.producer.send(topic, key=env.subject.encode(), value=env.to_json())
        self.published += 1

    def q(self, sql: str, **params):
        with self.p.quota_rt.db.sessions() as s:
            return s.execute(text(sql), params).all()

    def wait(self, what: str, done, timeout: float = 1800, every: float = 0.5) -> float:
        started = time.perf_counter()
        last = None
        while time.perf_counter() - started < timeout:
            state = done()
            if state is True:
                return time.perf_counter() - started
            if state != last:
                print(f"    {what}: {state}", flush=True)
                last = state
            time.sleep(every)
        raise SystemExit(f"timed out waiting for {what}: {last}")

    # -- phase A: what departments and the assessment service publish ---------------------------------
    def intake(self, enterprises, extras) -> dict:
        code = self.code
        prices = {a: format_amount(f, 2) for a, f in self.gen.prices_fen(self.county).items()}
        r = self.p.quota.put(f"/v1/counties/{code}/policy", headers=ADMIN, json={"prices": prices})
        assert r.status_code == 200, r.text
        for rc in extras["reclamations"]:
            body = reclamation_body(rc)
            body.update(project_id=self.re(body["project_id"]), county_code=code,
                        township_code=self.re(body["township_code"]))
            r = self.p.quota.post("/v1/reclamation-projects", headers=auth("dev-natural-resources-token"), json=body)
            assert r.status_code in (200, 201), r.text
        started = time.perf_counter()
        for p in extras["projects"]:
            tax_per_mu = Decimal(p.expected_yearly_tax) / 100 / (Decimal(p.land) / 10_000) if p.land else Decimal(0)
            ev = ProjectEvaluated(
                project_id=self.re(p.project_id), applicant_credit_code=p.applicant_credit_code, county_code=code,
                park_id=self.re(p.park_id), admitted=p.expected_admitted, land=format_amount(p.land, 4),
                investment_per_mu="0.00", tax_per_mu=str(tax_per_mu.quantize(Decimal("0.01"))),
                industry_code=p.industry_code, project_class="A" if p.relocated_enterprise else None, policy_hash="bench")
            self.send(new_envelope(ev, subject=ev.project_id, source=ASSESSMENT), ev.topic)
        releases = []
        for e in enterprises:
            if e.disposition in ("close", "relocate"):
                ev = (EnterpriseExited(credit_code=e.credit_code, county_code=code, township_code=self.re(e.township_code),
                                       effective_on=e.effective_on) if e.disposition == "close" else
                      EnterpriseRelocated(credit_code=e.credit_code, county_code=code,
                                          from_township_code=self.re(e.township_code),
                                          to_park_id=self.re(e.to_park_id) or "park", effective_on=e.effective_on))
                self.send(new_envelope(ev, subject=e.credit_code, source=ASSESSMENT), ev.topic)
            releases.extend(e.releases)
        for r in sorted(releases, key=lambda r: (r.released_on, r.release_id)):
            ev = QuotaReleaseSubmitted(
                release_id=self.re(r.release_id), enterprise_credit_code=r.enterprise_credit_code,
                township_code=self.re(r.township_code), county_code=code, asset=r.asset,
                amount=asset_amount(r.asset, r.amount), reason=r.reason, basis=r.basis,
                buyback_price_per_unit=None if r.buyback_price_fen is None else format_amount(r.buyback_price_fen, 2),
                document_ref=r.document_ref, released_on=r.released_on)
            self.send(new_envelope(ev, subject=ev.release_id, source=DEPARTMENT_SOURCE[r.department]), ev.topic)
        accepted = [rc for rc in extras["reclamations"] if rc.accepted_on is not None]
        for rc in accepted:
            ev = ReclamationAccepted(project_id=self.re(rc.project_id), accepted_on=rc.accepted_on,
                                     accepted_area=None if rc.accepted_area is None else format_amount(rc.accepted_area, 4),
                                     document_ref=rc.document_ref)
            self.send(new_envelope(ev, subject=ev.project_id, source=SOURCES["land"]), ev.topic)
        self.producer.flush()
        lots = len(releases) + len(accepted)
        print(f"  intake: {len(releases)} releases, {len(accepted)} reclamation acceptances, "
              f"{len(extras['projects'])} projects published", flush=True)

        def booked():
            (n_booked, n_all), = self.q("select count(*) filter (where ledger_state = 'booked'), count(*) from lots")
            return True if n_booked == lots else f"{n_booked}/{lots} lots booked ({n_all} made)"

        self.wait("lots", booked)
        return {"seconds": time.perf_counter() - started, "releases": len(releases), "lots": lots}

    # -- phase B: requests, rounds, reservations, approvals ------------------------------------------
    def demand(self, extras, rate: float = 0) -> dict:
        approvals: dict[str, list] = {}
        for a in extras["approvals"]:
            approvals.setdefault(a.request_id, []).append(a)
        requests = sorted(extras["quota_requests"], key=lambda q: (q.requested_at, q.request_id))
        admitted = {p.project_id for p in extras["projects"] if p.expected_admitted}
        started = time.perf_counter()
        late: set[str] = set()
        sent: set[str] = set()
        refused = 0
        for i, req in enumerate(requests):
            if rate > 0:  # paced arrivals: latency without a burst's queue
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            body = request_body(req)
            body.update(request_id=self.re(body["request_id"]), project_id=self.re(body["project_id"]), county_code=self.code)
            r = self.p.quota.post("/v1/requests", headers=ADMIN, json=body)
            if r.status_code != 201:
                refused += 1
                assert req.project_id not in admitted, r.text
                continue
            if i % 2 == 0:  # early: before the round and the ledger's answer
                self._approve(body["request_id"], approvals, sent)
            else:
                late.add(body["request_id"])
        self.producer.flush()
        print(f"  demand: {len(requests) - refused} requests in, {refused} refused (projects not admitted)", flush=True)
        complete = {self.re(q.request_id) for q in requests
                    if {l.approval_kind for l in q.lines} <= {a.kind for a in approvals.get(q.request_id, [])}}

        def settled():
            rows = self.q("select request_id, state from quota_requests")
            for rid, state in rows:
                if state == "reserved" and rid in late and rid not in sent:
                    self._approve(rid, approvals, sent)
            self.producer.flush()
            states: dict[str, int] = {}
            for _, state in rows:
                states[state] = states.get(state, 0) + 1
            waiting = sum(1 for rid, state in rows if state in ("requested", "reserving")
                          or (state == "reserved" and rid in complete))
            return True if waiting == 0 else f"{states}"

        self.wait("requests", settled, every=0.25)
        return {"seconds": time.perf_counter() - started, "requests": len(requests) - refused, "refused": refused}

    def _approve(self, request_id: str, approvals: dict, sent: set) -> None:
        """``request_id`` under this run's code; ``approvals`` keyed by the generated request id."""
        for a in approvals.get(request_id.replace(self.code, self.county.code), []):
            ev = ApprovalGranted(project_id=self.re(a.project_id), kind=a.kind, document_ref=a.document_ref,
                                 granted_on=a.granted_on)
            self.send(new_envelope(ev, subject=ev.project_id, source=DEPARTMENT_SOURCE[a.department]), ev.topic)
        sent.add(request_id)

    def latencies(self) -> dict:
        arrival = [r[0] for r in self.q(
            "select extract(epoch from reserved_at - requested_at) from quota_requests where reserved_at is not null")]
        saga = [r[0] for r in self.q(
            "select extract(epoch from q.reserved_at - r.ran_at) from quota_requests q "
            "join round_decisions d on d.request_id = q.request_id and d.outcome = 'granted' "
            "join rounds r on r.round_id = d.round_id where q.reserved_at is not null")]
        out = {}
        for name, xs in (("request_to_reserved", arrival), ("round_to_reserved", saga)):
            xs = [float(x) for x in xs]
            out[name] = {"n": len(xs), "p50_ms": round(percentile(xs, 0.5) * 1000, 1), "p99_ms": round(percentile(xs, 0.99) * 1000, 1),
                         "mean_ms": round(statistics.fmean(xs) * 1000, 1) if xs else None}
        return out

    def outbox_counts(self) -> dict:
        counts = {}
        for name, rt in (("quota", self.p.quota_rt), ("ledger", self.p.ledger_rt)):
            with rt.db.sessions() as s:
                counts[name] = s.execute(text("select count(*) from outbox")).scalar()
        return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="medium", choices=["tiny", "small", "medium"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--round-interval", type=float, default=0.5)
    ap.add_argument("--request-rate", type=float, default=0,
                    help="requests per second (0: all at once, as a burst)")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    gen = CountyGenerator(args.size, seed=args.seed, year=2025)
    county = gen.counties[0]
    enterprises = list(gen.enterprises(county))
    extras = gen.extras(county)
    print(f"county {county.code} ({args.size}, seed {args.seed}): {len(enterprises)} enterprises", flush=True)

    with ScratchDatabases(args.pg_url, "quota") as scratch, \
            platform(scratch.create(), scratch.create(), args.bootstrap,
                     auto_round_interval_seconds=args.round_interval, consumer_max_records=500) as plat:
        bench = Bench(plat, gen)
        t0 = time.perf_counter()
        a = bench.intake(enterprises, extras)
        b = bench.demand(extras, args.request_rate)
        rep = plat.wait_reconciled(bench.code, timeout=300)
        total = time.perf_counter() - t0
        outboxes = bench.outbox_counts()
        messages = bench.published + outboxes["quota"] + outboxes["ledger"]
        states = dict(bench.q("select state, count(*) from quota_requests group by state"))
        result = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": host.node(),
            "size": args.size, "seed": args.seed, "county_code": bench.code, "round_interval_s": args.round_interval,
            "request_rate": args.request_rate,
            "intake": a, "demand": b, "request_states": states,
            "messages": {"intake_published": bench.published, **{f"{k}_outbox": v for k, v in outboxes.items()},
                         "total": messages},
            "seconds": round(total, 2), "events_per_second": round(messages / total, 1),
            "latency": bench.latencies(), "reconciled": rep["agrees"],
        }
        bench.producer.close()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"\n{messages} messages end to end in {total:.1f}s = {messages / total:.0f} events/s; "
          f"request->reserved p50 {result['latency']['request_to_reserved']['p50_ms']} ms, "
          f"p99 {result['latency']['request_to_reserved']['p99_ms']} ms; round->reserved p50 "
          f"{result['latency']['round_to_reserved']['p50_ms']} ms, p99 {result['latency']['round_to_reserved']['p99_ms']} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

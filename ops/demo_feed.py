"""What the demo feeds and how: the generated county as written by ``ops.generator`` (events/*.jsonl envelopes,
http/*.json bodies, files/ CSVs), relabelled under a county code of this run, published to the departments'
Kafka intake topics and sent over HTTP with the department's or the county's token; and the wait until every
service has taken in everything (outbox backlogs empty, every demo consumer group at the end of its topics,
nothing moving)."""
from __future__ import annotations

import csv
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from ops.demo_platform import DemoPlatform
from shared.auth import SIGNATURE_HEADER, signature_of
from shared.kafka_security import kafka_python_options

TOKENS = {
    "admin": "dev-admin-token",  # the county government's operators (evaluation, decisions, rounds)
    "finance": "dev-finance-token",  # 财政局: reads everything it may
    "settlement": "dev-settlement-admin-token",  # the settlement office: agreements, policy, statements
    "industry": "dev-industry-token",
    "tax": "dev-tax-token",
    "ecology": "dev-ecology-token",
    "development_reform": "dev-development-reform-token",
    "natural_resources": "dev-natural-resources-token",
}
# Fields of HTTP bodies and event payloads that carry the county code (ids made from it, region codes, parties).
# Credit codes carry a region code too, but are left alone (their check character depends on it).
CODE_FIELDS = frozenset({"county_code", "township_code", "from_township_code", "origin", "destination", "release_id",
                         "project_id", "request_id", "agreement_id"})
_RELABEL_NS = uuid.UUID("6f0c7d1e-5a43-4c5e-9a7b-2f1d0c9e8b71")


class DemoError(RuntimeError):
    pass


def random_county_code(avoid: Iterable[str] = ()) -> str:
    """A 6-digit code unlikely to be used by another run on the same broker (the quota bench does the same)."""
    r = random.SystemRandom()
    avoid = set(avoid)
    while True:
        code = str(r.randrange(110000, 990000))
        if code not in avoid:
            return code


class Relabel:
    """The generated county under another code: ``320612`` in ids, region codes and parties becomes ``new``
    (only where it is not preceded by a letter or digit, so ``91320612…`` credit codes and receipt ids made of
    them stay as they are). Event ids are derived anew (uuid5 of the old id and the code), so a demo's
    events never share an id with another run's."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new
        self._re = re.compile(rf"(?<![0-9A-Za-z]){re.escape(old)}")

    @property
    def active(self) -> bool:
        return self.old != self.new

    def text(self, s: str | None) -> str | None:
        return s if s is None or not self.active else self._re.sub(self.new, s)

    def body(self, obj):
        if not self.active:
            return obj
        if isinstance(obj, list):
            return [self.body(x) for x in obj]
        if isinstance(obj, dict):
            return {k: (self.text(v) if k in CODE_FIELDS and isinstance(v, str) else self.body(v)) for k, v in obj.items()}
        return obj

    def envelope(self, env: dict) -> dict:
        if not self.active:
            return env
        out = dict(env, data=self.body(env["data"]), subject=self.text(env["subject"]))
        for k in ("id", "correlationid"):
            if out.get(k):
                out[k] = str(uuid.uuid5(_RELABEL_NS, f"{self.new}/{env[k]}"))
        return out


class Dataset:
    """A directory written by ``ops.generator`` (see ops/generator/README.md)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest = json.loads((self.root / "manifest.json").read_text(encoding="utf-8"))
        self.county = self.manifest["per_county"][0]
        self._http: dict[str, list] = {}

    def http(self, name: str) -> list[dict]:
        if name not in self._http:
            self._http[name] = json.loads((self.root / "http" / f"{name}.json").read_text(encoding="utf-8"))
        return self._http[name]

    def events(self, topic: str, types: set[str] | None = None, skip: Callable[[dict], bool] | None = None) -> list[dict]:
        out = []
        with open(self.root / "events" / f"{topic}.jsonl", encoding="utf-8") as f:
            for line in f:
                env = json.loads(line)
                name = env["type"].split(".")[1]
                if (types is None or name in types) and not (skip and skip(env)):
                    out.append(env)
        return out

    def table(self, path: str) -> list[dict[str, str]]:
        with open(self.root / "files" / f"{path}.csv", encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    def file(self, path: str) -> bytes:
        return (self.root / "files" / f"{path}.csv").read_bytes()


def _signing_keys(path: Path) -> dict[str, str]:
    """source -> the dev API key of the principal that owns it (deploy/dev-tokens.json)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {source: token for token, spec in doc.items() for source in spec.get("sources", [])}


_DEV_TOKENS = Path(__file__).resolve().parents[1] / "deploy" / "dev-tokens.json"


class Feeder:
    """Publishing to Kafka like a department does (key = subject) and calling the services' HTTP APIs."""

    def __init__(self, platform: DemoPlatform, relabel: Relabel):
        self.p = platform
        self.re = relabel
        self.producer = KafkaProducer(bootstrap_servers=platform.bootstrap, acks="all", linger_ms=10,
                                      batch_size=512 * 1024, max_request_size=8 * 1024 * 1024,
                                      **kafka_python_options())
        self.clients = {s: httpx.Client(base_url=platform.url(s), timeout=600) for s in platform.services}
        self.published: dict[str, int] = {}
        self.http_calls = 0
        self.signing_keys = _signing_keys(_DEV_TOKENS)

    def close(self) -> None:
        try:
            self.producer.close(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        for c in self.clients.values():
            c.close()

    # -- kafka -------------------------------------------------------------------------------------
    def publish(self, topic: str, envelopes: Iterable[dict]) -> int:
        n = 0
        for env in envelopes:
            env = self.re.envelope(env)
            value = json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode()
            # signed as a department signs (COUNTYPOOL_INTAKE_SIGNATURES): the demo runs whatever that setting says
            key = self.signing_keys.get(env.get("source", ""))
            headers = [(SIGNATURE_HEADER, signature_of(key, value).encode())] if key else []
            self.producer.send(topic, key=env["subject"].encode(), value=value, headers=headers)
            n += 1
        self.producer.flush(timeout=120)
        self.published[topic] = self.published.get(topic, 0) + n
        return n

    # -- http --------------------------------------------------------------------------------------
    def call(self, service: str, method: str, path: str, who: str = "admin", *, expect=(200, 201), **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKENS[who]}", **kw.pop("headers", {})}
        r = self.clients[service].request(method, path, headers=headers, **kw)
        self.http_calls += 1
        if expect is not None and r.status_code not in expect:
            raise DemoError(f"{method} {service}{path} answered {r.status_code}: {r.text[:800]}")
        return r

    def get(self, service: str, path: str, who: str = "finance", **params) -> dict | list:
        return self.call(service, "GET", path, who, params=params or None).json()

    def pages(self, service: str, path: str, items: str, cursor_param: str, cursor_field: str, who: str = "finance",
              **params) -> list[dict]:
        """Every item of a paginated list (``items`` key, next cursor in ``cursor_field``)."""
        out, cursor = [], None
        while True:
            q = dict(params)
            if cursor is not None:
                q[cursor_param] = cursor
            page = self.get(service, path, who, **q)
            out.extend(page[items])
            cursor = page.get(cursor_field)
            if cursor is None:
                return out


class Settler:
    """Waits until the platform is quiet: every outbox published, every demo consumer group has applied (and
    committed) everything on its topics, the counters of published and consumed events have stopped moving,
    and an optional condition holds."""

    def __init__(self, platform: DemoPlatform, verbose: bool = True):
        self.p = platform
        self.verbose = verbose
        self.admin = KafkaAdminClient(bootstrap_servers=platform.bootstrap, client_id="countypool-demo-settle",
                                      **kafka_python_options())
        self.consumer = KafkaConsumer(bootstrap_servers=platform.bootstrap, **kafka_python_options())
        self.waited = 0.0

    def close(self) -> None:
        for c in (self.consumer, self.admin):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def observe(self) -> dict:
        backlog = published = consumed = 0
        dead: dict[str, int] = {}
        for s in self.p.services:
            for name, labels, value in self.p.metrics(s):
                if name == "countypool_outbox_backlog":
                    backlog += int(value)
                elif name == "countypool_events_published_total":
                    published += int(value)
                elif name == "countypool_events_consumed_total":
                    consumed += int(value)
                elif name == "countypool_events_dead_lettered_total" and value:
                    key = f"{s}:{labels.get('reason', '?')}"
                    dead[key] = dead.get(key, 0) + int(value)
        lag = self.p.group_lag(self.consumer, self.admin)
        return {"backlog": backlog, "lag": sum(lag.values()), "lag_by": lag, "published": published,
                "consumed": consumed, "dead": dead}

    def wait(self, what: str, condition: Callable[[], object] | None = None, timeout: float = 900,
             every: float = 0.25, quiet_checks: int = 3, still_for: float = 20) -> dict:
        """Quiet = backlog 0, lag 0 and ``condition()`` True over ``quiet_checks`` observations in a row with the
        same counters (a consumer commits its batch before the relay has published what the batch emitted: the
        next observation sees the count move). If a group's Kafka offsets stay behind while nothing at all has
        moved for ``still_for`` seconds (an offset commit lost in a rebalance is only repeated with the next
        batch; the database position is the real one), that counts as quiet too, with a note."""
        started = time.monotonic()
        prev, same, still_since, last_shown, shown_at = None, 0, time.monotonic(), None, 0.0
        while True:
            dead = self.p.dead()
            if dead:
                raise DemoError(f"{', '.join(dead)} exited while waiting for {what} (see <service>.log in {self.p.data_dir})")
            o = self.observe()
            extra = condition() if condition else True
            key = (o["backlog"], o["lag"], o["published"], o["consumed"], extra)
            now = time.monotonic()
            if key != prev:
                prev, same, still_since = key, 0, now
            else:
                same += 1
            if o["backlog"] == 0 and extra is True:
                if o["lag"] == 0 and same >= quiet_checks - 1:
                    self.waited += now - started
                    return o
                if o["lag"] and now - still_since >= still_for:
                    print(f"      … {what}: nothing moved for {still_for:.0f}s with Kafka offsets behind "
                          f"{ {k: v for k, v in o['lag_by'].items() if v} } (commits after the last batch); "
                          "taking it as settled", flush=True)
                    self.waited += now - started
                    return o
            status = f"backlog {o['backlog']}, lag {o['lag']}" + ("" if extra is True else f", {extra}")
            if self.verbose and status != last_shown and now - shown_at > 3:
                print(f"      … {what}: {status}", flush=True)
                last_shown, shown_at = status, now
            if now - started > timeout:
                raise DemoError(f"{what} did not settle within {timeout:.0f}s: {status}, lag per group {o['lag_by']}")
            time.sleep(every)

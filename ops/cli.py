"""`countypool` — what operators do by hand.

  countypool import assessment FILE --kind enterprises|indicators [--department D] [--year Y] [--all-or-nothing]
  countypool verify [--from-seq N]           verify the ledger's journal hash chain (from a checkpoint)
  countypool lag                             consumer lag per group and topic
  countypool dlq list TOPIC [--reason R]     dead-lettered messages of a topic not re-driven yet, with their reasons
  countypool dlq redrive TOPIC [--reason R]  publish them to their topic again once the cause is fixed (each
                                             once: see ops/kafka_ops.py; exit status 1 when one could not be)
  countypool settlement run|finalize COUNTY PERIOD
  countypool settlement export COUNTY PERIOD [--format csv|xlsx|json] [--headers zh|en] [-o FILE]
  countypool replay SERVICE [--write]        rebuild a service's read models from its event store, compare
                                             with the live ones (--write: rewrite the rows that differ)

Imports and replays run against the service's own database (same settings as the service, e.g.
COUNTYPOOL_ASSESSMENT_DATABASE_URL); the events they write are published by the running service's relay.
`lag` and `dlq` talk to Kafka (KAFKA_BOOTSTRAP_SERVERS); `verify` and `settlement` to the services' HTTP APIs
(COUNTYPOOL_<SERVICE>_URL, token --token T before the command or COUNTYPOOL_TOKEN).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import httpx
from tqdm import tqdm

from shared.settings import DEFAULT_PORTS


def _url(service: str) -> str:
    return os.environ.get(f"COUNTYPOOL_{service.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[service]}")


def _client(service: str, token: str | None) -> httpx.Client:
    token = token or os.environ.get("COUNTYPOOL_TOKEN", "dev-admin-token")
    return httpx.Client(base_url=_url(service), headers={"Authorization": f"Bearer {token}"}, timeout=300)


def _fail(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("reason" in body or "message" in body):
            print(f"error {resp.status_code}: {body.get('reason')}: {body.get('message')}", file=sys.stderr)
        else:  # not one of our services' answers (a proxy, another server at that URL): say what came back
            text = " ".join(resp.text.split())[:500]
            print(f"error {resp.status_code} from {resp.request.url}: {text}", file=sys.stderr)
        sys.exit(2)


def _json(resp: httpx.Response):
    """The answer's JSON; a body that is not (another server at that URL) is one line and status 2."""
    try:
        return resp.json()
    except ValueError:
        text = " ".join(resp.text.split())[:200]
        print(f"error: {resp.request.url} answered {resp.status_code} without JSON: {text}", file=sys.stderr)
        sys.exit(2)


# -- import ----------------------------------------------------------------------------------------
def cmd_import(args) -> int:
    if args.service != "assessment":
        print("imports of tax receipts go through the settlement API: POST /v1/tax-receipts/import", file=sys.stderr)
        return 2
    from services.assessment.imports import ImportOptions, ImportRefused, import_file
    from services.assessment.main import build

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    runtime, _ = build()
    runtime.migrate()
    bars: dict[str, tqdm] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total or None, desc=phase, unit="row", file=sys.stderr)
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = import_file(runtime, data, ImportOptions(args.kind, args.department, args.year, args.all_or_nothing),
                             principal=args.principal, progress=progress)
    except ImportRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    finally:
        for b in bars.values():
            b.close()
        runtime.db.dispose()
    print(f"{report.rows} rows, {report.accepted} accepted, {report.rejected} rejected"
          + ("" if report.written else " — nothing written (all-or-nothing)"))
    for bad in report.bad_rows:
        reasons = "; ".join(f"{p.column or p.field}: {p.reason}" for p in bad.problems)
        print(f"  line {bad.line}: {bad.credit_code or '-'}: {reasons}")
    return 0 if not report.bad_rows else 1


# -- ledger ----------------------------------------------------------------------------------------
def cmd_verify(args) -> int:
    with _client("ledger", args.token) as c:
        r = c.get("/v1/journal/verify", params={"from_seq": args.from_seq})
        _fail(r)
        v = _json(r)
    if v["ok"]:
        print(f"journal verifies: {v['checked']} entries from seq {v['from_seq']} (head {v['head_seq']})")
        return 0
    print(f"journal BROKEN at seq {v['first_broken_seq']}: {v['reason']} ({v['checked']} entries verified before it)")
    return 1


def cmd_replay(args) -> int:
    import importlib

    build = importlib.import_module(f"services.{args.service}.main").build
    rebuild = importlib.import_module(f"services.{args.service}.replay").rebuild
    runtime, _ = build()
    with tqdm(desc=f"{args.service} events", unit="event", unit_scale=True, file=sys.stderr) as bar:
        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        try:
            report = rebuild(runtime.db, repair=args.write, progress=bar.update, total=total)
        except NotImplementedError as exc:  # the service refuses to rewrite rows from its events
            refused = exc
            report = getattr(exc, "report", None)
        else:
            refused = None
        finally:
            runtime.db.dispose()
    if report is not None:
        rows = ", ".join(f"{m} {n}" for m, n in sorted(report.rows.items()))
        print(f"{report.events_read} events folded in {report.fold_seconds:.2f} s "
              f"({report.events_per_second:,.0f}/s) into {rows}")
        if report.equal:
            print("rebuilt read models equal the live ones")
            return 0
        for d in report.differences[:50]:
            print(f"  {d}")
    if refused is not None:
        # the rows that differ were printed above (they used to be lost: only this line was said)
        if report is not None:
            print(f"{len(report.differences)} rows differ; none rewritten")
        print(f"not rewritten: {refused}", file=sys.stderr)
        return 1
    if not args.write:
        print(f"{len(report.differences)} rows differ")
        return 1
    print(f"{len(report.differences)} rows differed; {report.repaired} rows rewritten from the events; "
          f"{len(report.remaining)} still differ")
    for d in report.remaining[:50]:
        print(f"  still: {d}")
    return 0 if not report.remaining else 1


# -- kafka -----------------------------------------------------------------------------------------
def _bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def cmd_lag(args) -> int:
    from ops.kafka_ops import consumer_lag, require_kafka

    require_kafka(_bootstrap())
    rows = consumer_lag(_bootstrap())
    print(f"{'group':<26}{'topic':<34}{'committed':>12}{'end':>12}{'lag':>10}")
    for r in rows:
        if r.missing:
            print(f"{r.group:<26}{r.topic:<34}  the topic does not exist")
            continue
        print(f"{r.group:<26}{r.topic:<34}{r.committed:>12}{r.end:>12}{r.lag:>10}")
    return 0


def cmd_dlq(args) -> int:
    from collections import Counter

    from ops.kafka_ops import read_dlq, redrive, require_kafka, where

    require_kafka(_bootstrap())
    queue = read_dlq(_bootstrap(), args.topic)
    letters = queue.letters
    if args.reason:
        letters = [d for d in letters if d.reason == args.reason]
    of_reason = f" with reason {args.reason}" if args.reason else ""
    if args.reason and not letters and queue.letters:
        present = Counter(d.reason for d in queue.letters)
        print(f"no dead letters{of_reason} on {queue.topic}; reasons there: "
              + ", ".join(f"{r or '(none)'} ({n})" for r, n in sorted(present.items())), file=sys.stderr)
    if args.action == "list":
        for d in letters[: args.limit]:
            omitted = f" [no body: {d.value_omitted} bytes left out]" if d.value_omitted is not None else ""
            print(f"{where(d)} key={d.key} reason={d.reason}: {d.error[:200]}{omitted}")
        shown = f" ({args.limit} shown)" if len(letters) > args.limit else ""
        earlier = f"; {queue.redriven} re-driven before, not listed" if queue.redriven else ""
        print(f"{len(letters)} dead letters{of_reason}{shown}{earlier}")
        return 0
    result = redrive(_bootstrap(), letters)
    for _, why in result.refused:
        print(f"not re-driven: {why}", file=sys.stderr)
    for d, why in result.failed:
        print(f"FAILED {where(d)}: {why} (still a dead letter)", file=sys.stderr)
    for _, why in result.unmarked:
        print(f"warning: {why}", file=sys.stderr)
    print(f"re-drove {len(result.sent)} messages{of_reason} to their original topics"
          + (f"; {len(result.refused)} refused" if result.refused else "")
          + (f"; {len(result.failed)} failed" if result.failed else ""))
    return 0 if result.ok else 1


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return n


# -- settlement ------------------------------------------------------------------------------------
COUNTY_CODE = re.compile(r"[0-9]{6}")  # as the APIs check them
PERIOD_LABEL = re.compile(r"[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?")


def _county(value: str) -> str:
    if not COUNTY_CODE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a county code (six digits, e.g. 320612)")
    return value


def _period(value: str) -> str:
    if not PERIOD_LABEL.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a period (a month 2026-03, a quarter 2026-Q1 or a year 2026)")
    return value


def cmd_settlement(args) -> int:
    with _client("settlement", args.token) as c:
        base = f"/v1/counties/{args.county}/periods/{args.period}"
        if args.action in ("run", "finalize"):
            r = c.post(f"{base}/{'draft' if args.action == 'run' else 'finalize'}")
            _fail(r)
            print(json.dumps(_json(r), indent=2, ensure_ascii=False))
            return 0
        fmt = args.format
        r = c.get(f"{base}/statement/export", params={"format": fmt, "headers": args.headers})
        _fail(r)
        out = Path(args.output or f"statement-{args.county}-{args.period}.{fmt}")
        try:
            out.write_bytes(r.content)
        except OSError as exc:
            print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {out} ({len(r.content)} bytes)")
        return 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="countypool", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--token", help="bearer token (default: $COUNTYPOOL_TOKEN)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import a department file with a progress bar and a bad-row report")
    p.add_argument("service", choices=["assessment"])
    p.add_argument("file")
    p.add_argument("--kind", choices=["enterprises", "indicators"], required=True)
    p.add_argument("--department")
    p.add_argument("--year", type=int)
    p.add_argument("--all-or-nothing", action="store_true")
    p.add_argument("--principal", default="operator-cli")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("verify", help="verify the ledger journal")
    p.add_argument("--from-seq", type=int, default=1)
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("replay", help="rebuild a service's read models from its event store")
    p.add_argument("service", choices=["ledger", "quota", "settlement", "assessment"])
    p.add_argument("--write", action="store_true", help="rewrite the live rows that differ (default: compare only)")
    p.set_defaults(fn=cmd_replay)

    p = sub.add_parser("lag", help="consumer lag per group and topic")
    p.set_defaults(fn=cmd_lag)

    p = sub.add_parser("dlq", help="dead-letter topics")
    p.add_argument("action", choices=["list", "redrive"])
    p.add_argument("topic")
    p.add_argument("--reason")
    p.add_argument("--limit", type=_positive, default=1000, help="list: show at most this many (all are counted)")
    p.set_defaults(fn=cmd_dlq)

    p = sub.add_parser("settlement", help="run, finalize or export a settlement period")
    p.add_argument("action", choices=["run", "finalize", "export"])
    p.add_argument("county", type=_county)
    p.add_argument("period", type=_period)
    p.add_argument("--format", choices=["csv", "xlsx", "json"], default="csv")
    p.add_argument("--headers", choices=["zh", "en"], default="zh")
    p.add_argument("-o", "--output")
    p.set_defaults(fn=cmd_settlement)

    args = ap.parse_args(argv)
    sys.exit(_run(args))


def _run(args) -> int:
    """A command's exit status; what keeps it from running (Kafka, a service or a database away, a topic
    missing) is one line on stderr and status 2, not a traceback."""
    from kafka.errors import KafkaError
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError

    from shared.db import DB_ERRORS, driver_error

    from ops.kafka_ops import KafkaUnavailable, NoSuchTopic
    from shared.kafka_security import KafkaSecurityError
    from shared.settings import SettingsError

    try:
        return args.fn(args)
    except (KafkaUnavailable, NoSuchTopic, KafkaSecurityError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KafkaError as exc:
        print(f"error: Kafka at {_bootstrap()}: {exc}", file=sys.stderr)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except httpx.TransportError as exc:
        try:
            url = str(exc.request.url)
        except RuntimeError:  # no request attached
            url = "the service"
        print(f"error: cannot reach {url}: {exc} (set COUNTYPOOL_<SERVICE>_URL?)", file=sys.stderr)
    except DB_ERRORS as exc:  # SQLAlchemy's, or psycopg's own from the raw COPY paths
        cause = driver_error(exc)
        reason = (str(cause).strip().splitlines() or [""])[0]
        print(f"error: database: {type(cause).__name__}: {reason}", file=sys.stderr)
    except ArgumentError as exc:  # a database URL SQLAlchemy cannot parse, or a dialect it does not know
        print(f"error: database URL: {(str(exc).strip().splitlines() or [''])[0]} "
              f"(set COUNTYPOOL_<SERVICE>_DATABASE_URL or DATABASE_URL?)", file=sys.stderr)
    except ValidationError as exc:  # a COUNTYPOOL_* setting the service cannot take
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or exc.title
        print(f"error: setting {where}: {first.get('msg', exc)}", file=sys.stderr)
    # (these used to end in a traceback and exit status 1, which `replay` uses for "rows differ")
    return 2


if __name__ == "__main__":
    main()

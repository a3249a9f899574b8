"""Write a generated county (or province) to a directory in one streaming pass:

    files/<department>/<table>.csv   (and .xlsx with ``xlsx=True``)
    events/<intake topic>.jsonl      one CloudEvents envelope per line, in publishing order
    http/<name>.json                 JSON arrays of HTTP bodies
    expected/projects.jsonl          what the generator meant each project to get (admitted, failures)
    manifest.json                    counts, per-county totals, sha256 of every other file

Only one county's extras and a few counters are in memory at a time; enterprises stream.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from shared.amounts import format_amount

from . import http as bodies
from . import tables as T
from .county import CountyGenerator
from .events import INTAKE_TOPICS, EventFactory
from .model import ASSET_SCALE, ASSETS, DEPARTMENTS, CountySummary

FORMAT_VERSION = 1
HTTP_FILES = ("counties", "price_lists", "exits", "reclamation_projects", "projects", "quota_requests", "agreements")
XLSX_MAX_ROWS = 1_048_575  # data rows per sheet (one header row)


class _CsvSink:
    def __init__(self, path: Path, headers: list[str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(headers)
        self.rows = 0

    def row(self, values: list[str] | None) -> None:
        if values is not None:
            self.w.writerow(values)
            self.rows += 1

    def close(self) -> None:
        self.f.close()


class _JsonArraySink:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", encoding="utf-8")
        self.f.write("[")
        self.items = 0

    def add(self, obj: Any) -> None:
        self.f.write(("\n" if self.items == 0 else ",\n") + json.dumps(obj, ensure_ascii=False))
        self.items += 1

    def close(self) -> None:
        self.f.write("\n]\n")
        self.f.close()


class _LinesSink:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "wb")
        self.items = 0

    def add(self, env) -> None:
        if env is not None:
            self.f.write(env.to_json() + b"\n")
            self.items += 1

    def close(self) -> None:
        self.f.close()


def _amounts(d: dict[str, int]) -> dict[str, str]:
    return {a: format_amount(v, ASSET_SCALE[a]) for a, v in d.items()}


def write_dataset(gen: CountyGenerator, out: str | Path, *, xlsx: bool = False,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write everything; returns the manifest (also written to manifest.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    csvs = {t.key: _CsvSink(out / (t.path + ".csv"), t.headers) for t in T.ALL_TABLES}
    topics = {topic: _LinesSink(out / "events" / f"{topic}.jsonl") for topic in INTAKE_TOPICS}
    assessment, quota, settlement = (topics[t] for t in INTAKE_TOPICS)
    http = {name: _JsonArraySink(out / "http" / f"{name}.json") for name in HTTP_FILES}
    expected = _LinesSink(out / "expected" / "projects.jsonl")
    ev = EventFactory(gen.seed, gen.size.name, gen.year)
    per_county = []
    try:
        for county in gen.counties:
            for row in T.township_rows(county):
                csvs["townships"].row(row)
            for row in T.park_rows(county):
                csvs["parks"].row(row)
            http["counties"].add(bodies.county_body(county))
            prices = gen.price_list(county)
            for p in prices:
                csvs["price_list"].row(T.price_row(p))
            http["price_lists"].add(bodies.price_list_body(county.code, prices))

            summary = CountySummary(county.code)
            for n, e in enumerate(gen.enterprises(county), 1):
                summary.add(e)
                csvs["enterprises"].row(T.register_row(e))
                for dept in DEPARTMENTS:
                    csvs[f"indicators_{dept}"].row(T.indicator_row(dept, e))
                for env in ev.enterprise(e):
                    assessment.add(env)
                if e.disposition:
                    csvs["exits"].row(T.exit_row(e))
                    http["exits"].add(bodies.exit_body(e, f"{county.name}人民政府常务会议"))
                    for r in e.releases:
                        csvs[f"releases_{r.department}"].row(T.release_row(r))
                        quota.add(ev.release(r))
                if progress and n % 1000 == 0:
                    progress(1000)
            if progress:
                progress(summary.enterprises % 1000)
            gen.remember_summary(summary)

            x = gen.extras(county)
            for rc in x["reclamations"]:
                csvs["reclamation"].row(T.reclamation_row(rc))
                http["reclamation_projects"].add(bodies.reclamation_body(rc))
                quota.add(ev.reclamation(rc))
            for p in x["projects"]:
                csvs["projects"].row(T.project_row(p))
                http["projects"].add(bodies.project_body(p, gen.year))
                expected.f.write(json.dumps({"project_id": p.project_id, "scenario": p.scenario,
                                             "admitted": p.expected_admitted, "failures": list(p.expected_failures)},
                                            ensure_ascii=False).encode() + b"\n")
            requested = {a: 0 for a in ASSETS}
            for q in x["quota_requests"]:
                for row in T.request_rows(q):
                    csvs["quota_requests"].row(row)
                http["quota_requests"].add(bodies.request_body(q))
                for line in q.lines:
                    requested[line.asset] += line.amount
            for a in x["approvals"]:
                csvs[f"approvals_{a.department}"].row(T.approval_row(a))
                quota.add(ev.approval(a))
            for a in x["agreements"]:
                csvs["agreements"].row(T.agreement_row(a))
                http["agreements"].add(bodies.agreement_body(a))
            receipts_total = 0
            receipts = 0
            for t in x["tax_receipts"]:
                csvs["tax_receipts"].row(T.receipt_row(t))
                settlement.add(ev.receipt(t))
                receipts += 1
                receipts_total += t.amount if t.corrects is None else 0
            per_county.append({
                "county_code": county.code, "name": county.name, "enterprises": summary.enterprises,
                "closures": summary.closures, "relocations": len(summary.relocations),
                "released": _amounts(summary.released),
                "reusable_after_default_retirement": _amounts(summary.reusable),
                "reclaimed_land_accepted": format_amount(sum(rc.pooled_area for rc in x["reclamations"]), 4),
                "requested": _amounts(requested),
                "projects": len(x["projects"]),
                "projects_expected_admitted": sum(p.expected_admitted for p in x["projects"]),
                "quota_requests": len(x["quota_requests"]), "approvals": len(x["approvals"]),
                "agreement_versions": len(x["agreements"]), "tax_receipts": receipts,
                "tax_receipts_total_before_corrections": format_amount(receipts_total, 2),
            })
            if len(gen.counties) > 1:
                gen.forget(county)
    finally:
        for s in (*csvs.values(), *topics.values(), *http.values(), expected):
            s.close()
    if xlsx:
        for t in T.ALL_TABLES:
            csv_to_xlsx(t, out / (t.path + ".csv"), out / (t.path + ".xlsx"), gen.year)
    elapsed = time.perf_counter() - started
    rows = {k: s.rows for k, s in csvs.items()}
    manifest = {
        "generator": "ops.generator", "format_version": FORMAT_VERSION, "seed": gen.seed, "size": gen.size.name,
        "year": gen.year, "data_year": gen.data_year, "counties": len(gen.counties),
        "enterprises": gen.size.enterprises, "rows": rows, "events": {t: s.items for t, s in topics.items()},
        "http": {n: s.items for n, s in http.items()}, "per_county": per_county,
        "files": {str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*"))
                  if p.is_file() and p.name != "manifest.json"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    manifest["_elapsed_seconds"] = elapsed  # not written: the file stays deterministic
    manifest["_rows_total"] = sum(rows.values()) + sum(s.items for s in topics.values())
    return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def csv_to_xlsx(table: T.Table, csv_path: Path, xlsx_path: Path, year: int) -> None:
    """One sheet per table (continued on further sheets past Excel's row limit); figures as number
    cells, codes as text. Byte-for-byte deterministic: fixed document dates and zip timestamps."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    numeric = [c.kind == T.NUM for c in table.columns]
    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        ws, n, sheet = None, XLSX_MAX_ROWS, 0
        for row in reader:
            if n >= XLSX_MAX_ROWS:
                sheet += 1
                ws = wb.create_sheet(table.title if sheet == 1 else f"{table.title}{sheet}")
                ws.append(header)
                n = 0
            ws.append([Decimal(v) if num and v else v for v, num in zip(row, numeric)])  # type: ignore[union-attr]
            n += 1
        if ws is None:
            wb.create_sheet(table.title).append(header)
    buf = io.BytesIO()
    wb.save(buf)
    _normalize_xlsx(buf.getvalue(), xlsx_path, year)


_STAMP = re.compile(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)")


def _normalize_xlsx(data: bytes, path: Path, year: int) -> None:
    stamp = f"{year}-01-01T00:00:00Z".encode()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            content = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = _STAMP.sub(lambda m: m.group(1) + stamp + m.group(3), content)
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            zout.writestr(zi, content)

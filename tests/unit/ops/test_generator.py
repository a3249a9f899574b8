"""The county generator: deterministic, valid against the contracts and domains it feeds, consistent
in its amounts, and streaming at province size."""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import pytest

from ops.generator import CountyGenerator, write_dataset
from ops.generator.__main__ import main as cli_main
from ops.generator.model import ASSET_SCALE, ASSETS, DEPARTMENTS, SOURCE
from ops.generator.sizes import SIZES
from ops.generator.tables import ALL_TABLES, INDICATORS, REGISTER, RELEASES
from services.assessment.domain.credit_code import is_valid_credit_code
from services.assessment.domain.rows import (
    map_enterprise_columns, map_indicator_columns, parse_enterprise_row, parse_indicator_row,
)
from shared.amounts import parse_amount
from shared.contracts import topics
from shared.envelope import decode, registered_events

ROOT = Path(__file__).resolve().parents[3]


def _tree_hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _events(d: Path, topic: str) -> list:
    with open(d / "events" / f"{topic}.jsonl", "rb") as f:
        return [decode(line) for line in f]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny42")
    write_dataset(CountyGenerator("tiny", 42), out, xlsx=True)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small7")
    write_dataset(CountyGenerator("small", 7), out)
    return out


# -- determinism --------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files(tiny, tmp_path):
    write_dataset(CountyGenerator("tiny", 42), tmp_path, xlsx=True)
    again = _tree_hashes(tmp_path)
    assert again == _tree_hashes(tiny)
    assert any(name.endswith(".xlsx") for name in again)
    manifest = json.loads((tiny / "manifest.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in again.items() if k != "manifest.json"} == manifest["files"]


def test_different_seed_differs(tiny, tmp_path):
    write_dataset(CountyGenerator("tiny", 43), tmp_path)
    other = _tree_hashes(tmp_path)
    mine = _tree_hashes(tiny)
    for name in ("files/industry/enterprises.csv", "events/countypool.intake.assessment.jsonl",
                 "files/tax/indicators.csv"):
        assert other[name] != mine[name]
    ids_a = {env.id for env, _ in _events(tiny, topics.INTAKE_ASSESSMENT)}
    ids_b = {env.id for env, _ in _events(tmp_path, topics.INTAKE_ASSESSMENT)}
    assert not ids_a & ids_b


def test_lazy_api_matches_written_rows(tiny):
    gen = CountyGenerator("tiny", 42)
    rows = _csv(tiny / "files/industry/enterprises.csv")
    assert [r["统一社会信用代码"] for r in rows] == [e.credit_code for e in gen.enterprises()]
    c = gen.counties[0]
    assert gen.enterprise(c, 17) == list(gen.enterprises())[17]


# -- identities -----------------------------------------------------------------------------------------


def test_every_credit_code_is_valid_and_enterprises_unique(small):
    codes = [r["统一社会信用代码"] for r in _csv(small / "files/industry/enterprises.csv")]
    assert len(codes) == 2000 == len(set(codes))
    others = [r["申请单位统一社会信用代码"] for r in _csv(small / "files/county/projects.csv")]
    others += [r["统一社会信用代码"] for t in RELEASES.values() for r in _csv(small / (t.path + ".csv"))]
    others += [r["统一社会信用代码"] for r in _csv(small / "files/tax/tax_receipts.csv")]
    others += [r["企业统一社会信用代码"] for r in _csv(small / "files/county/agreements.csv")]
    bad = [c for c in codes + others if not is_valid_credit_code(c)]
    assert not bad
    assert all(c[2:8] == "320612" for c in codes)


def test_township_and_park_codes(small):
    towns = {r["乡镇代码"] for r in _csv(small / "files/county/townships.csv")}
    assert towns == {f"320612{100 + k}" for k in range(16)}
    parks = {r["园区编号"]: r["所在乡镇代码"] for r in _csv(small / "files/county/parks.csv")}
    assert set(parks) == {f"P{k:02d}" for k in range(1, 9)}
    for r in _csv(small / "files/industry/enterprises.csv"):
        assert r["乡镇代码"] in towns
        if r["是否在园区"] == "是":
            assert parks[r["园区编号"]] == r["乡镇代码"]
        else:
            assert r["园区编号"] == ""


# -- events ---------------------------------------------------------------------------------------------


def test_every_event_validates_against_its_contract(tiny, small):
    dev_sources = {s for spec in json.loads((ROOT / "deploy/dev-tokens.json").read_text()).values()
                   for s in spec.get("sources", [])}
    assert set(SOURCE.values()) <= dev_sources
    by_name = {name: cls for (name, _), cls in registered_events().items()}
    for d in (tiny, small):
        seen_ids = set()
        kinds = defaultdict(int)
        for topic in (topics.INTAKE_ASSESSMENT, topics.INTAKE_QUOTA, topics.INTAKE_SETTLEMENT):
            for env, event in _events(d, topic):
                assert by_name[env.event_name].topic == topic
                assert env.source in dev_sources
                assert env.id not in seen_ids
                seen_ids.add(env.id)
                kinds[env.event_name] += 1
        assert set(kinds) == {"EnterpriseReported", "IndicatorsReported", "QuotaReleaseSubmitted",
                              "ReclamationAccepted", "ApprovalGranted", "TaxReceiptReported"}


def test_event_ids_are_stable_across_runs(tiny, tmp_path):
    write_dataset(CountyGenerator("tiny", 42), tmp_path)
    for topic in (topics.INTAKE_QUOTA, topics.INTAKE_SETTLEMENT):
        assert [e.id for e, _ in _events(tmp_path, topic)] == [e.id for e, _ in _events(tiny, topic)]


def test_indicator_events_agree_with_the_files(tiny):
    by_key = {}
    for env, ev in _events(tiny, topics.INTAKE_ASSESSMENT):
        if env.event_name == "IndicatorsReported":
            assert env.subject == ev.credit_code and env.source == SOURCE[ev.department]
            by_key[(ev.credit_code, ev.department)] = dict(ev.fields)
    for dept, table in INDICATORS.items():
        for row in _csv(tiny / (table.path + ".csv")):
            part = parse_indicator_row(row, department=dept)
            fields = by_key[(row["统一社会信用代码"], dept)]
            values = part.set_fields()
            assert set(values) == set(fields)
            scale = {"land": 4, "energy": 3, "electricity": 0, "employees": 0}
            for k, v in fields.items():
                assert parse_amount(v, 4 if k.startswith("emissions.") else scale.get(k, 2),
                                    allow_zero=True, allow_negative=True) == values[k]


# -- files parse with the assessment import ------------------------------------------------------------------


def test_register_and_indicator_rows_parse(small):
    gen = {e.credit_code: e for e in CountyGenerator("small", 7).enterprises()}
    rows = _csv(small / (REGISTER.path + ".csv"))
    cmap = map_enterprise_columns(rows[0].keys())
    assert not cmap.ignored and not cmap.errors
    for n, row in enumerate(rows, 2):
        ent = parse_enterprise_row(row, columns=cmap, row_number=n)
        src = gen[ent.credit_code]
        assert (ent.township_code, ent.park_id, ent.in_park, ent.scale) == (src.township_code, src.park_id, src.in_park, src.scale)
        assert ent.flags() == frozenset(src.flags)
    for dept, table in INDICATORS.items():
        rows = _csv(small / (table.path + ".csv"))
        cmap = map_indicator_columns(rows[0].keys())
        assert not cmap.ignored and not cmap.errors
        for n, row in enumerate(rows, 2):
            part = parse_indicator_row(row, department=dept, year=2024, columns=cmap, row_number=n)
            src = gen[part.credit_code]
            for f, v in part.set_fields().items():
                if f.startswith("emissions."):
                    asset = {"NH3-N": "NH3N", "NOx": "NOX", "VOCs": "VOCS"}.get(f[10:], f[10:])
                    assert src.emissions[asset] == v
                else:
                    assert getattr(src, f) == v


def test_xlsx_rows_parse_like_the_csv(tiny):
    from openpyxl import load_workbook

    for table, parse in ((REGISTER, None), *((t, d) for d, t in INDICATORS.items())):
        ws = load_workbook(tiny / (table.path + ".xlsx"), read_only=True).active
        it = ws.iter_rows(values_only=True)
        header = next(it)
        assert list(header) == table.headers
        csv_rows = _csv(tiny / (table.path + ".csv"))
        xrows = [dict(zip(header, r)) for r in it]
        assert len(xrows) == len(csv_rows)
        for x, c in zip(xrows, csv_rows):
            if parse is None:
                assert parse_enterprise_row(x) == parse_enterprise_row(c)
            else:
                assert parse_indicator_row(x, department=parse) == parse_indicator_row(c, department=parse)
    for t in ALL_TABLES:
        assert (tiny / (t.path + ".xlsx")).is_file()


# -- consistency of amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,seed", [("tiny", 42), ("small", 7)])
def test_releases_only_for_departed_enterprises_and_within_holdings(size, seed):
    from services.quota.domain.policy import PoolPolicy
    from services.quota.domain.releases import parse_release

    policy = PoolPolicy(county_code="320612")
    dispositions = defaultdict(int)
    for e in CountyGenerator(size, seed).enterprises():
        dispositions[e.disposition] += 1
        if e.disposition is None:
            assert not e.releases and e.effective_on is None
            continue
        assert not e.in_park and "utility" not in e.flags
        assert e.releases and {r.asset for r in e.releases} >= {"LAND", "ENERGY"}
        held = {"LAND": e.land, "ENERGY": e.energy, **e.emissions}
        for r in e.releases:
            assert r.enterprise_credit_code == e.credit_code and r.township_code == e.township_code
            assert r.reason == {"close": "closure", "relocate": "relocation"}[e.disposition]
            assert r.held == held[r.asset] and 0 < r.amount <= r.held
            assert r.released_on > e.effective_on and r.released_on.year == 2025
            assert (r.basis == "paid") == (r.buyback_price_fen is not None)
            body = {"release_id": r.release_id, "department": r.department, "enterprise_credit_code": r.enterprise_credit_code,
                    "township_code": r.township_code, "county_code": r.county_code, "asset": r.asset,
                    "amount": format(r.amount / 10 ** ASSET_SCALE[r.asset], f".{ASSET_SCALE[r.asset]}f"),
                    "reason": r.reason, "basis": r.basis, "document_ref": r.document_ref, "released_on": r.released_on}
            if r.buyback_price_fen is not None:
                body["buyback_price_per_unit"] = f"{r.buyback_price_fen // 100}.{r.buyback_price_fen % 100:02d}"
            assert parse_release(body, policy).amount == r.amount
        if e.disposition == "close":
            assert all(r.amount == r.held for r in e.releases)
        else:
            assert e.to_park_id and next(r for r in e.releases if r.asset == "LAND").amount == e.land
    assert dispositions["close"] >= 1 and dispositions["relocate"] >= 1


def test_file_event_and_manifest_totals_agree(small):
    manifest = json.loads((small / "manifest.json").read_text(encoding="utf-8"))
    county = manifest["per_county"][0]
    from_files = {a: 0 for a in ASSETS}
    release_ids = set()
    exits = {r["统一社会信用代码"]: r["处置方式"] for r in _csv(small / "files/industry/exits.csv")}
    for t in RELEASES.values():
        for r in _csv(small / (t.path + ".csv")):
            from_files[r["指标类型"]] += parse_amount(r["收储数量"], ASSET_SCALE[r["指标类型"]])
            assert r["统一社会信用代码"] in exits
            release_ids.add(r["收储编号"])
    from_events = {a: 0 for a in ASSETS}
    for env, ev in _events(small, topics.INTAKE_QUOTA):
        if env.event_name == "QuotaReleaseSubmitted":
            from_events[ev.asset] += parse_amount(ev.amount, ASSET_SCALE[ev.asset])
            release_ids.discard(ev.release_id)
    assert not release_ids
    assert from_files == from_events
    assert {a: parse_amount(v, ASSET_SCALE[a], allow_zero=True) for a, v in county["released"].items()} == from_files
    assert len(exits) == county["closures"] + county["relocations"]


@pytest.mark.parametrize("size,seed", [("tiny", 42), ("small", 7)])
def test_projects_requests_approvals(size, seed):
    from services.assessment.domain.admission import AdmissionPolicy, ProjectApplication, check_admission
    from services.quota.domain.policy import PoolPolicy
    from services.quota.domain.projects import ProjectFacts
    from services.quota.domain.requests import open_request

    gen = CountyGenerator(size, seed)
    county = gen.counties[0]
    x = gen.extras(county)
    summary = gen.summary(county)
    admission = AdmissionPolicy()
    parks = {p.park_id for p in county.parks}
    scenarios = set()
    for p in x["projects"]:
        scenarios.add(p.scenario)
        assert is_valid_credit_code(p.applicant_credit_code)
        assert p.park_id is None or p.park_id in parks
        result = check_admission(ProjectApplication(
            id=p.project_id, applicant_credit_code=p.applicant_credit_code, park_id=p.park_id,
            in_park_or_cluster=p.in_park_or_cluster, land=p.land, investment=p.investment,
            expected_yearly_tax=p.expected_yearly_tax, energy_need=p.energy_need, industry_code=p.industry_code,
            emission_needs=p.emission_needs, two_high=p.two_high, on_safety_or_env_list=p.on_safety_or_env_list,
        ), admission)
        assert tuple(f.code for f in result.failures) == p.expected_failures, p
    assert {"ok", "below_investment", "below_tax", "two_high"} <= scenarios
    if size == "small":
        assert {"exact_threshold", "just_below_tax", "outside_park", "below_both", "on_list"} <= scenarios

    admitted = {p.project_id: p for p in x["projects"] if p.expected_admitted}
    policy = PoolPolicy(county_code=county.code)
    registry = {pid: ProjectFacts(pid, county.code, True) for pid in admitted}
    requested = {a: 0 for a in ASSETS}
    for q in x["quota_requests"]:
        assert q.project_id in admitted
        lines = [{"asset": l.asset, "amount": format(l.amount / 10 ** ASSET_SCALE[l.asset], f".{ASSET_SCALE[l.asset]}f"),
                  "approval_kind": l.approval_kind} for l in q.lines]
        opened = open_request(q.request_id, q.project_id, q.county_code, lines, q.requested_at, registry, policy)
        assert opened.line_amounts == tuple((l.asset, l.amount) for l in q.lines)
        for l in q.lines:
            assert 0 < l.amount <= l.need == admitted[q.project_id].needs()[l.asset]
            requested[l.asset] += l.amount
    reclaimed = sum(rc.pooled_area for rc in x["reclamations"])
    for a in ASSETS:
        pool = summary.reusable[a] + (reclaimed if a == "LAND" else 0)
        assert 100 * requested[a] <= 85 * pool, a
    kinds = {q.request_id: {l.approval_kind for l in q.lines} for q in x["quota_requests"]}
    for ap in x["approvals"]:
        assert ap.kind in kinds[ap.request_id]
        assert ap.granted_on.year == 2025
    for rc in x["reclamations"]:
        assert rc.accepted_area is None or 0 < rc.accepted_area <= rc.area


@pytest.mark.parametrize("size,seed", [("tiny", 42), ("small", 7)])
def test_agreements_and_tax_receipts(size, seed):
    from services.settlement.domain.agreements import AgreementBook, RevenueSharingAgreement, ScheduleStep

    gen = CountyGenerator(size, seed)
    county = gen.counties[0]
    x = gen.extras(county)
    relocated = {e.credit_code: e for e in gen.summary(county).relocations}
    book = AgreementBook(RevenueSharingAgreement(
        agreement_id=a.agreement_id, version=a.version, effective_from=a.effective_from, enterprise=a.enterprise,
        origin=a.origin, destination=a.destination, local_shares_bp=a.local_shares_bp,
        schedule=tuple(ScheduleStep(s.first_year, s.last_year, s.origin_weight, s.destination_weight) for s in a.schedule),
        start=a.start, end=a.end, remainder_to=a.remainder_to, guaranteed_minimum_fen=a.guaranteed_minimum_fen,
        statistics_weights=a.statistics_weights, project_id=a.project_id,
    ) for a in x["agreements"])
    firsts = {a.enterprise: a for a in x["agreements"] if a.version == 1}
    assert set(firsts) == set(relocated)
    assert any(a.version == 2 for a in x["agreements"])
    for code, a in firsts.items():
        e = relocated[code]
        assert a.origin == f"township:{e.township_code}" and a.destination == f"park:{e.to_park_id}"
        assert a.start > e.effective_on and a.start.day == 1
        assert book.versions(a.agreement_id)[0].enterprise == code
    receipts = {}
    for t in x["tax_receipts"]:
        assert t.enterprise_credit_code in firsts and t.amount > 0
        assert firsts[t.enterprise_credit_code].start.strftime("%Y-%m") <= t.month <= "2025-12"
        if t.corrects:
            orig = receipts[t.corrects]
            assert (orig.month, orig.tax_kind, orig.enterprise_credit_code) == (t.month, t.tax_kind, t.enterprise_credit_code)
            assert t.reported_on > orig.reported_on
        if t.tax_kind == "CIT":
            assert int(t.month[5:]) % 3 == 0
        assert t.receipt_id not in receipts
        receipts[t.receipt_id] = t
    assert {t.tax_kind for t in receipts.values()} == {"VAT", "CIT"}


# -- province: streaming ------------------------------------------------------------------------------------


def test_province_streams_without_materializing():
    gen = CountyGenerator("province", 42)
    assert gen.size.enterprises >= 100_000 and len(gen.counties) == 40
    made = []
    real = gen.enterprise
    gen.enterprise = lambda county, i: made.append(i) or real(county, i)  # type: ignore[method-assign]
    tracemalloc.start()
    first = list(itertools.islice(gen.enterprises(), 3000))  # crosses into the second county
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(made) == 3000  # lazily: nothing beyond what was taken
    assert peak < 40 * 2**20
    assert first[2500].county_code == gen.counties[1].code and first[2500].index == 0
    assert first[2600] == real(gen.counties[1], 100)  # any row alone, no pass
    codes = [e.credit_code for e in first]
    assert len(set(codes)) == len(codes) and all(is_valid_credit_code(c) for c in codes)
    # one county's extras need one pass over that county only
    made.clear()
    x = gen.extras(gen.counties[7])
    assert len(made) == gen.size.enterprises_per_county and x["projects"] and x["agreements"]
    assert all(p.park_id is None or p.park_id.startswith(gen.counties[7].code + "-P") for p in x["projects"])
    t0 = time.perf_counter()
    for _ in itertools.islice(gen.enterprises(gen.counties[39]), 1000):
        pass
    assert time.perf_counter() - t0 < 10.0  # the last county starts at once


def test_multi_county_write_and_cli(tmp_path):
    size = SIZES["province"].scaled(counties=3, enterprises_per_county=40)
    m = write_dataset(CountyGenerator(size, 5), tmp_path / "p")
    assert [c["county_code"] for c in m["per_county"]][0] == "320612" and len(m["per_county"]) == 3
    assert m["rows"]["enterprises"] == 120 and m["rows"]["townships"] == 48
    for env, _ in _events(tmp_path / "p", topics.INTAKE_QUOTA):
        assert env.source in SOURCE.values()

    assert cli_main(["--size", "tiny", "--seed", "42", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    out = tmp_path / "cli"
    for topic in (topics.INTAKE_ASSESSMENT, topics.INTAKE_QUOTA, topics.INTAKE_SETTLEMENT):
        assert (out / "events" / f"{topic}.jsonl").stat().st_size > 0
    for name in ("projects", "quota_requests", "agreements", "price_lists", "exits", "reclamation_projects", "counties"):
        assert isinstance(json.loads((out / "http" / f"{name}.json").read_text(encoding="utf-8")), list)
    assert all(d in {p.parent.name for p in (out / "files").glob("*/*.csv")} for d in DEPARTMENTS)

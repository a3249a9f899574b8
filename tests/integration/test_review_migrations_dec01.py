"""Review (Dec 01) of the services' database migrations as a county meets them: an installation upgraded in place.

Each test migrates a fresh database to the revision just before a recent migration, writes rows as the code of that
revision wrote them (plain inserts through the tables reflected at that revision, or, where the old state is a web of
statements and runs, the state made by today's service and then taken down to the old revision, which drops exactly
what the newer revisions added), upgrades to head, starts the real service on it (tests/support/services.py) and
checks through its HTTP API that the old rows read back and behave as the migration's docstring promises, that new
writes work, that the upgraded schema equals a fresh head database's (columns with type, nullability and default,
primary keys, unique constraints, indexes: sqlalchemy.inspect), and that downgrade then upgrade works where a downgrade
exists. SQLite and PostgreSQL (real), real Kafka (the services' background relay and consumer left stopped: only the
HTTP API and the database are under test here).
"""
from __future__ import annotations

import importlib
import random
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from shared import migrations
from shared.db import Database
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, running_service
from tests.unit.assessment.factories import code as credit_code

UTC = timezone.utc
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


# -- databases, revisions, schemas ---------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def dbs(request, tmp_path):
    """(the upgraded installation's database, a fresh one for the head schema), on one backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}", f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    server = request.getfixturevalue("pg_server_url")
    with fresh_database(server) as old, fresh_database(server) as fresh:
        yield old, fresh


def _location(service: str):
    return importlib.import_module(f"services.{service}.main").MIGRATIONS


def migrate(url: str, service: str, revision: str = "head") -> None:
    db = Database(url, service)
    try:
        migrations.upgrade(db, _location(service), revision)
    finally:
        db.dispose()


def downgrade(url: str, service: str, revision: str) -> None:
    db = Database(url, service)
    cfg = Config()
    cfg.set_main_option("script_location", str(_location(service)))
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        db.dispose()


def revision_of(url: str) -> str:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        eng.dispose()


def insert(url: str, table: str, *rows: dict) -> None:
    """Rows as the code of the database's current revision wrote them: through the table as it stands (reflected)."""
    eng = sa.create_engine(url)
    try:
        t = sa.Table(table, sa.MetaData(), autoload_with=eng)
        with eng.begin() as c:
            c.execute(t.insert(), list(rows))
    finally:
        eng.dispose()


def execute(url: str, sql: str, **params) -> list:
    eng = sa.create_engine(url)
    try:
        with eng.begin() as c:
            res = c.execute(sa.text(sql), params)
            return res.all() if res.returns_rows else []
    finally:
        eng.dispose()


def schema(url: str) -> dict:
    eng = sa.create_engine(url)
    try:
        ins = inspect(eng)
        out = {}
        for t in sorted(ins.get_table_names()):
            cols = sorted((c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in ins.get_columns(t))
            idx = sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in ins.get_indexes(t))
            uqs = sorted(tuple(u["column_names"]) for u in ins.get_unique_constraints(t))
            pk = tuple(ins.get_pk_constraint(t)["constrained_columns"])
            out[t] = {"columns": cols, "indexes": idx, "unique": uqs, "pk": pk}
        return out
    finally:
        eng.dispose()


def assert_schema_is_heads(old: str, fresh: str, service: str) -> None:
    migrate(fresh, service)
    got, want = schema(old), schema(fresh)
    assert set(got) == set(want), (set(got) ^ set(want))
    for t in want:
        assert got[t] == want[t], f"{service}.{t} upgraded in place differs from a fresh database at head"


def _service(name: str, url: str, kafka: str):
    return running_service(name, url, kafka, background=False)


# -- quota: 0008 project_class 20, 0009 project land_allowed --------------------------------------------------------

def _county() -> str:
    return f"{random.randint(110000, 659999)}"


def _old_project(county: str, project_id: str, project_class: str | None, **extra) -> dict:
    return dict(project_id=project_id, county_code=county, applicant_credit_code=credit_code(9, county),
                park_id="park-1", admitted=True, project_class=project_class, tax_per_mu_fen=15_000_000,
                industry_code="C39", failures="[]", updated_at=T0, **extra)


def _old_request(county: str, request_id: str, project_id: str, project_class: str, now: datetime) -> dict:
    return dict(request_id=request_id, project_id=project_id, county_code=county, state="requested",
                requested_at=now, deadline=now + timedelta(days=30), approvals="[]", reserved_assets="[]",
                reason=None, updated_at=now, project_admitted=True, project_class=project_class,
                tax_per_mu_fen=15_000_000, industry_code="C39", park_id="park-1", digest="0" * 64,
                requested_by="dev-admin", reserved_at=None)


def _request(c, county: str, request_id: str, project_id: str, **lines: str):
    return c.post("/v1/requests", headers=ADMIN, json=dict(
        request_id=request_id, project_id=project_id, county_code=county,
        lines=[{"asset": a, "amount": n} for a, n in lines.items()]))


def test_quota_projects_evaluated_before_0009_keep_their_land_and_new_writes_take_20_character_classes(
        dbs, kafka_bootstrap):
    """A county upgrading past 0008/0009: projects assessment admitted under the old code (land_allowed unknown)
    must still be served LAND (NULL read as allowed, as 0009 says), their waiting requests must read back, and a
    class label of 11-20 characters must now be stored (0008: on the old width PostgreSQL refused the row and the
    project kept its quota). If not, a county's admitted projects lose their land quota at the upgrade."""
    old, fresh = dbs
    county = _county()
    now = datetime.now(UTC).replace(microsecond=0)
    migrate(old, "quota", "0007")
    insert(old, "projects", _old_project(county, f"P-{county}-old", "A类(优先发展)"),
           _old_project(county, f"P-{county}-none", None))
    insert(old, "quota_requests", _old_request(county, f"R-{county}-old", f"P-{county}-old", "A类(优先发展)", now))
    insert(old, "request_lines", dict(request_id=f"R-{county}-old", asset="LAND", position=0, amount=20_000,
                                      approval_kind="land_use"))
    migrate(old, "quota")
    assert revision_of(old) == "0009"
    assert execute(old, "SELECT land_allowed FROM projects WHERE project_id = :p", p=f"P-{county}-old") == [(None,)]
    long_class = "A类(优先发展)-重点扶持企业-第一类型"  # 20 characters
    assert len(long_class) == 20
    with _service("quota", old, kafka_bootstrap) as (_, c):
        assert c.put(f"/v1/counties/{county}/policy", headers=ADMIN, json={}).status_code == 200
        r = c.get(f"/v1/requests/R-{county}-old", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "requested" and [ln["asset"] for ln in r.json()["lines"]] == ["LAND"], r.text
        for pid in (f"P-{county}-old", f"P-{county}-none"):
            r = _request(c, county, f"R-{pid}-new", pid, LAND="1.5", COD="1")
            assert r.status_code == 201, r.text  # not 409 land_not_allowed_for_class
        # what the consumer writes for a ProjectEvaluated now: a 20-character label, land withheld
        execute(old, "UPDATE projects SET project_class = :c, land_allowed = :f WHERE project_id = :p",
                c=long_class, f=False, p=f"P-{county}-none")
        r = _request(c, county, f"R-{county}-long", f"P-{county}-none", COD="1")
        assert r.status_code == 201, r.text
        assert execute(old, "SELECT project_class FROM quota_requests WHERE request_id = :r",
                       r=f"R-{county}-long") == [(long_class,)]
        refused = _request(c, county, f"R-{county}-land", f"P-{county}-none", LAND="1")
        assert refused.status_code == 409 and refused.json()["reason"] == "land_not_allowed_for_class", refused.text
        rounds = c.post(f"/v1/counties/{county}/rounds", headers=ADMIN)
        assert rounds.status_code == 201, rounds.text
    assert_schema_is_heads(old, fresh, "quota")


def test_quota_lots_and_consumptions_from_before_0007_keep_earning_compensation(dbs, kafka_bootstrap):
    """0007: lots and consumptions taken in before the flag existed keep earning 腾退补偿 (their events said so).
    If they read false, the enterprises that freed that quota would lose their compensation."""
    old, fresh = dbs
    county = _county()
    ent = credit_code(1, county)
    migrate(old, "quota", "0006")
    lot = f"lot-{county}-1"
    insert(old, "lots", dict(lot_id=lot, county_code=county, asset="COD", amount=100_000, retired=10_000,
                             remaining=60_000, source_kind="release", source_ref=f"REL-{county}-1",
                             township_code=f"{county}100", dated=date(2024, 2, 1), basis="free", buyback_price_fen=None,
                             origin_id=ent, ledger_state="booked", created_at=T0))
    insert(old, "consumptions", dict(request_id=f"R-{county}-1", project_id=f"P-{county}-1", county_code=county,
                                     lot_id=lot, asset="COD", source_kind="release", source_ref=f"REL-{county}-1",
                                     township_code=f"{county}100", amount=30_000, amount_due_fen=300_000,
                                     allocated_at=T0))
    insert(old, "allocations", dict(request_id=f"R-{county}-1", asset="COD", project_id=f"P-{county}-1",
                                    county_code=county, amount=30_000, price_fen_per_unit=10, amount_due_fen=300_000,
                                    allocated_on=date(2024, 3, 1), allocated_at=T0))
    migrate(old, "quota")
    with _service("quota", old, kafka_bootstrap) as (_, c):
        assert c.put(f"/v1/counties/{county}/policy", headers=ADMIN, json={}).status_code == 200
        lots = c.get(f"/v1/counties/{county}/lots", headers=ADMIN, params={"asset": "COD"})
        assert lots.status_code == 200, lots.text
        (only,) = [x for x in lots.json()["lots"] if x["lot_id"] == lot]
        assert only["earns_compensation"] is True, only
        prov = c.get(f"/v1/projects/P-{county}-1/provenance", headers=ADMIN)
        assert prov.status_code == 200, prov.text
        text = prov.text
        assert lot in text and '"earns_compensation":false' not in text.replace(" ", ""), text
    assert_schema_is_heads(old, fresh, "quota")


def test_quota_downgrade_of_0009_and_0008_then_upgrade_keeps_the_rows(dbs, kafka_bootstrap):
    """Downgrade (an aborted roll-out) and upgrade again: the projects and requests written meanwhile stay, and
    the schema is head's again. If not, rolling a release back would cost the county its waiting requests."""
    old, fresh = dbs
    county = _county()
    now = datetime.now(UTC).replace(microsecond=0)
    migrate(old, "quota")
    insert(old, "projects", _old_project(county, f"P-{county}", "B", land_allowed=True))
    insert(old, "quota_requests", _old_request(county, f"R-{county}", f"P-{county}", "B", now))
    insert(old, "request_lines", dict(request_id=f"R-{county}", asset="COD", position=0, amount=10_000,
                                      approval_kind="environmental_impact"))
    downgrade(old, "quota", "0007")
    assert revision_of(old) == "0007"
    assert "land_allowed" not in {c["name"] for c in inspect(sa.create_engine(old)).get_columns("projects")}
    migrate(old, "quota")
    assert execute(old, "SELECT project_class, land_allowed FROM projects WHERE project_id = :p",
                   p=f"P-{county}") == [("B", None)]
    with _service("quota", old, kafka_bootstrap) as (_, c):
        assert c.put(f"/v1/counties/{county}/policy", headers=ADMIN, json={}).status_code == 200
        r = c.get(f"/v1/requests/R-{county}", headers=ADMIN)
        assert r.status_code == 200 and r.json()["state"] == "requested", r.text
        assert _request(c, county, f"R-{county}-2", f"P-{county}", LAND="1").status_code == 201
    assert_schema_is_heads(old, fresh, "quota")


def test_quota_downgrade_of_0008_refuses_class_labels_it_cannot_hold(dbs, kafka_bootstrap):
    """A project admitted as a class of more than 10 characters cannot be taken back below 0008 without cutting its
    label: the downgrade refuses with a message that says so (PostgreSQL said only "value too long"), and the rows
    and the revision stay as they were."""
    old, _ = dbs
    county = _county()
    long_class = "A类(优先发展)-重点扶持企业"
    migrate(old, "quota")
    insert(old, "projects", _old_project(county, f"P-{county}", long_class, land_allowed=True))
    with pytest.raises(Exception) as refused:
        downgrade(old, "quota", "0007")
    assert "0008 downgrade refused" in str(refused.value) and "restore the backup" in str(refused.value), refused.value
    assert revision_of(old) == "0009"
    assert execute(old, "SELECT project_class FROM projects WHERE project_id = :p", p=f"P-{county}") == [(long_class,)]


# -- settlement: 0007 policy effective_from, 0009 settled top-up parties ---------------------------------------------

def _s_county() -> str:
    return f"{random.randint(110000, 659999)}"


def _policy_row(county: str, version: int, bp: int, weights: tuple[int, int, int], at: datetime) -> dict:
    return dict(county_code=county, version=version, policy_id="POL", compensation_bp=bp, township_weight=weights[0],
                park_weight=weights[1], fund_weight=weights[2], recorded_at=at, recorded_by="dev-settlement-admin")


def test_settlement_policy_versions_from_before_0007_keep_meaning_what_they_meant(dbs, kafka_bootstrap):
    """0007: versions recorded before a period of validity existed read as in force from the beginning, the latest
    of them splitting every allocation. The API must answer the latest one, list them all, take a new dated
    version after them and not take the same terms again as a change. Otherwise the county's compensation share
    silently changes at the upgrade."""
    old, fresh = dbs
    county = _s_county()
    migrate(old, "settlement", "0006")
    insert(old, "settlement_policies", _policy_row(county, 1, 3000, (4, 3, 3), T0),
           _policy_row(county, 2, 2500, (5, 3, 2), T0 + timedelta(days=30)))
    migrate(old, "settlement")
    path = f"/v1/counties/{county}/settlement-policy"
    with _service("settlement", old, kafka_bootstrap) as (_, c):
        got = c.get(path, headers=ADMIN)
        assert got.status_code == 200, got.text
        assert got.json()["version"] == 2 and got.json()["effective_from"] is None, got.text
        versions = c.get(f"{path}/versions", headers=ADMIN)
        assert versions.status_code == 200, versions.text
        same = {k: v for k, v in got.json().items() if k in ("policy_id", "compensation_share", "compensation_bp",
                                                              "township_weight", "park_weight", "fund_weight",
                                                              "weights")}
        again = c.put(path, headers=ADMIN, json=same)
        assert again.status_code in (200, 201), again.text
        assert again.json()["version"] == 2, f"the same terms stored as a change: {again.text}"
        changed = c.put(path, headers=ADMIN, json={**same, "fund_weight": 3, "park_weight": 2})
        assert changed.status_code in (200, 201), changed.text
        assert changed.json()["version"] == 3 and changed.json()["effective_from"] is not None, changed.text
        assert c.get(path, headers=ADMIN).json()["version"] == 3
    assert_schema_is_heads(old, fresh, "settlement")


def _agreement(county: str, agreement_id: str, ent: str, origin: str, dest: str, minimum: int) -> dict:
    return dict(agreement_id=agreement_id, version=1, county_code=county, effective_from=date(2025, 1, 1),
                enterprise=ent, project_id=None, origin=origin, destination=dest, remainder_to=dest,
                starts_on=date(2025, 1, 1), ends_on=date(2027, 12, 31), local_shares='{"VAT": 5000}',
                schedule="[[1, null, 6, 4]]", guaranteed_minimum_fen=minimum, minimum_payer=None,
                statistics_origin_weight=None, statistics_destination_weight=None, recorded_at=T0,
                recorded_by="dev-settlement-admin")


def _settled_2025(old: str, county: str, agreement_id: str, *, topup: int, share: int, tax: int,
                  finalized_at: datetime) -> None:
    """The county's 2025 statement as the code before 0009 finalized it: its header, the month it settled and the
    year's top-up (no payer, no payee)."""
    insert(old, "statements", dict(
        county_code=county, period="2025", period_kind="year", period_start=date(2025, 1, 1),
        period_end=date(2025, 12, 31), status="finalized", as_of=finalized_at, finalized_at=finalized_at,
        content_hash="a" * 64, policy_id="POL", policy_version=1, line_count=2, money_total_fen=share + topup,
        unmatched_receipts=0, computed_at=finalized_at, computed_by="dev-settlement-admin"))
    insert(old, "settled_months", dict(agreement_id=agreement_id, tax_kind="VAT", month="2025-12", county_code=county,
                                       tax_fen=tax, origin_share_fen=share, settled_in="2025"))
    insert(old, "settled_topups", dict(agreement_id=agreement_id, agreement_year=1, county_code=county,
                                       amount_fen=topup, settled_in="2025"))


def test_settlement_topups_settled_before_0009_are_adjusted_between_the_parties_in_force(dbs, kafka_bootstrap):
    """0009: a top-up settled before payer and payee were kept reads as paid by the parties of the version in
    force. A late receipt for its year must then reduce that top-up (the origin gives back what the receipt now
    pays it), with no reversal of the whole amount between unknown parties; the new statement stores the parties.
    If not, the township would be paid twice (its minimum and the late tax share) or a draft would fail."""
    old, fresh = dbs
    county = _s_county()
    ent = credit_code(1, county)
    origin, dest = f"township:{county}101", f"park:P{county}"
    agreement_id = f"AG{county}"
    migrate(old, "settlement", "0008")
    insert(old, "settlement_policies", dict(_policy_row(county, 1, 3000, (4, 3, 3), T0), effective_from=None))
    insert(old, "enterprises", dict(credit_code=ent, county_code=county, name="企业1", known_from="assessment",
                                    recorded_at=T0))
    insert(old, "agreement_versions", _agreement(county, agreement_id, ent, origin, dest, minimum=100_000))
    # 2025-12 VAT 200,000 fen: local 100,000, origin 6/10 = 60,000; the minimum 100,000: topped up 40,000
    _settled_2025(old, county, agreement_id, topup=40_000, share=60_000, tax=200_000,
                  finalized_at=datetime(2026, 1, 10, 2, tzinfo=UTC))
    migrate(old, "settlement")
    assert execute(old, "SELECT payer, payee FROM settled_topups WHERE agreement_id = :a", a=agreement_id) == [
        (None, None)]
    with _service("settlement", old, kafka_bootstrap) as (_, c):
        periods = c.get(f"/v1/counties/{county}/periods", headers=ADMIN)
        assert periods.status_code == 200 and "2025" in periods.text, periods.text
        late = c.post("/v1/tax-receipts", headers=ADMIN, json=dict(
            receipt_id=f"TAX-{county}-late", enterprise_credit_code=ent, month="2025-12", tax_kind="VAT",
            amount="1000.00"))  # 100,000 fen: origin's part 30,000 more
        assert late.status_code in (200, 201), late.text
        draft = c.post(f"/v1/counties/{county}/periods/2026-01/draft", headers=ADMIN)
        assert draft.status_code in (200, 201), draft.text
        st = c.get(f"/v1/counties/{county}/periods/2026-01/statement", headers=ADMIN, params={"limit": 100})
        assert st.status_code == 200, st.text
        lines = st.json()["lines"]
        net: dict[str, int] = {}
        for ln in lines:
            fen = round(float(ln["amount"]) * 100)
            net[ln["payee"]] = net.get(ln["payee"], 0) + fen
            net[ln["payer"]] = net.get(ln["payer"], 0) - fen
        assert net.get(origin, 0) == 0, f"the origin is guaranteed 100,000 for the year and had it: {lines}"
        moved = sorted((ln["payer"], ln["payee"], ln["amount"]) for ln in lines)
        assert all(x in (origin, dest) for p in moved for x in p[:2]), moved
        assert not any(ln["amount"] in ("400.00", "-400.00") for ln in lines), f"the old top-up reversed whole: {lines}"
        fin = c.post(f"/v1/counties/{county}/periods/2026-01/finalize", headers=ADMIN, json={})
        assert fin.status_code in (200, 201), fin.text
    assert execute(old, "SELECT amount_fen, payer, payee FROM settled_topups WHERE agreement_id = :a",
                   a=agreement_id) == [(10_000, dest, origin)], "the top-up settled again keeps its parties now"
    with _service("settlement", old, kafka_bootstrap) as (_, c):
        assert c.get(f"/v1/counties/{county}/periods/2025/statement", headers=ADMIN).status_code == 200
    assert_schema_is_heads(old, fresh, "settlement")


def test_settlement_downgrade_of_0009_and_0007_then_upgrade(dbs, kafka_bootstrap):
    """0009 and 0007 have downgrades: taking an installation back to 0006 and up again keeps its policies and
    top-ups and gives head's schema. Otherwise a rolled-back release leaves a database the service cannot start on."""
    old, fresh = dbs
    county = _s_county()
    migrate(old, "settlement")
    with _service("settlement", old, kafka_bootstrap) as (_, c):
        r = c.put(f"/v1/counties/{county}/settlement-policy", headers=ADMIN,
                  json={"policy_id": "POL", "compensation_bp": 3000, "township_weight": 4, "park_weight": 3,
                        "fund_weight": 3})
        assert r.status_code in (200, 201), r.text
    insert(old, "settled_topups", dict(agreement_id=f"AG{county}", agreement_year=1, county_code=county,
                                       amount_fen=5, payer="park:P1", payee=f"township:{county}101", settled_in="2025"))
    try:
        downgrade(old, "settlement", "0008")
        downgrade(old, "settlement", "0006")
        pytest.fail("0008 has no downgrade: expected to stop there")
    except AttributeError:
        pass  # 0008 positions_know_their_topic: no downgrade, as the brief allows; 0009 went down
    assert revision_of(old) == "0008"
    migrate(old, "settlement")
    assert execute(old, "SELECT amount_fen, payer FROM settled_topups WHERE county_code = :c", c=county) == [(5, None)]
    with _service("settlement", old, kafka_bootstrap) as (_, c):
        assert c.get(f"/v1/counties/{county}/settlement-policy", headers=ADMIN).json()["version"] == 1
    assert_schema_is_heads(old, fresh, "settlement")


# -- assessment: 0008 task closing note, 0009 run cluster ranking ----------------------------------------------------

class _County:
    def __init__(self):
        self.code_ = f"{random.randint(110000, 659999)}"
        self.township = self.code_ + "101"

    def code(self, n: int) -> str:
        return credit_code(n, self.code_)


def _assessment_world(c, county: _County) -> None:
    for n, park in ((1, "P-A"), (2, "P-B")):
        r = c.post("/v1/enterprises", headers=ADMIN, json={
            "credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township,
            "industry_code": "C3311", "park_id": park, "in_park": True})
        assert r.status_code == 201, r.text


def test_assessment_tasks_and_runs_from_before_0008_and_0009_read_as_documented(dbs, kafka_bootstrap):
    """Tasks closed before 0008 kept their closing note in ``note`` (closing_note empty); runs made before 0009
    have no kept ranking: by run id 404 ranking_not_kept, the county-year's ranking computed from today's figures
    (run id null). A task still open at the upgrade is closed with its order kept. A run made after the upgrade
    keeps its ranking. If not, a county's task history or its cluster ranking would be unreadable after upgrading."""
    old, fresh = dbs
    county = _County()
    from tests.integration.assessment.test_evaluation_api import BIG as figures

    with _service("assessment", old, kafka_bootstrap) as (_, c):
        _assessment_world(c, county)
        for n in (1, 2):
            r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": 2023,
                                                              "department": "tax", "fields": figures})
            assert r.status_code == 201, r.text
        run = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2023})
        assert run.status_code in (200, 201), run.text
        run_id = run.json()["run"]["run_id"]
        kept = c.get(f"/v1/evaluations/{run_id}/clusters", headers=ADMIN).json()
        for tid in ("T-closed", "T-open"):
            r = c.post("/v1/tasks", headers=ADMIN, json={"task_id": f"{tid}-{county.code_}", "credit_code": county.code(1),
                                                         "disposition": "upgrade", "deadline": "2030-01-01",
                                                         "note": "完成节能改造"})
            assert r.status_code == 201, r.text
    # the old code: closing a task replaced its note with the closing one; runs kept no ranking
    execute(old, "UPDATE rectification_tasks SET status = 'done', closed_on = :d, note = :n, closing_note = '' "
                 "WHERE id = :i", d=date(2024, 2, 1), n="已验收", i=f"T-closed-{county.code_}")
    downgrade(old, "assessment", "0007")
    assert revision_of(old) == "0007"
    migrate(old, "assessment")
    with _service("assessment", old, kafka_bootstrap) as (_, c):
        t = c.get(f"/v1/tasks/T-closed-{county.code_}", headers=ADMIN)
        assert t.status_code == 200, t.text
        assert (t.json()["status"], t.json()["note"], t.json()["closing_note"]) == ("done", "已验收", ""), t.text
        done = c.post(f"/v1/tasks/T-open-{county.code_}/completion", headers=ADMIN,
                      json={"on": datetime.now(UTC).date().isoformat(), "note": "已验收"})
        assert done.status_code == 200, done.text
        assert (done.json()["note"], done.json()["closing_note"]) == ("完成节能改造", "已验收"), done.text
        by_id = c.get(f"/v1/evaluations/{run_id}/clusters", headers=ADMIN)
        assert by_id.status_code == 404 and by_id.json()["reason"] == "ranking_not_kept", by_id.text
        now = c.get(f"/v1/clusters/{county.code_}/2023/ranking", headers=ADMIN)
        assert now.status_code == 200, now.text
        assert now.json()["run_id"] is None
        assert {k: v for k, v in now.json().items() if k not in ("run_id", "county_code", "year")} == \
            {k: v for k, v in kept.items() if k not in ("run_id", "county_code", "year")}, "same figures, same ranking"
    assert_schema_is_heads(old, fresh, "assessment")


# -- every service: 0004 relay place (the quota's numbering), on an outbox the old code left half published -------------

def test_quota_outbox_rows_left_unpublished_before_the_relay_place_migration_are_published_after_it(
        dbs, kafka_bootstrap, unique_topic):
    """0004 (relay_keeps_its_place): rows the old relay had not yet marked published when the county stopped to
    upgrade must be published by the new relay; rows it had published before them must not be. Otherwise events
    written just before the upgrade (a reservation, a release) would never reach the ledger or settlement."""
    from kafka import KafkaConsumer

    old, _ = dbs
    migrate(old, "quota", "0003")
    rows = []
    for n, published in enumerate((True, True, False, False, True)):
        rows.append(dict(event_id=f"ev-{unique_topic}-{n}", event_type="QuotaReleased", topic=unique_topic,
                         key=f"k{n}", envelope=f'{{"id": "ev-{unique_topic}-{n}"}}', created_at=T0,
                         published_at=T0 if published else None))
    for r in rows:  # one transaction each, as the old code's writers did
        insert(old, "outbox", r)
    migrate(old, "quota")
    with _service("quota", old, kafka_bootstrap) as (runtime, _):
        runtime.relay.drain(timeout=30)
    consumer = KafkaConsumer(unique_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, enable_auto_commit=False)
    try:
        got = {m.value.decode() for m in consumer}
    finally:
        consumer.close()
    ids = {v.split('"')[3] for v in got}
    assert {f"ev-{unique_topic}-2", f"ev-{unique_topic}-3"} <= ids, f"unpublished rows left behind: {sorted(ids)}"
    assert not ids & {f"ev-{unique_topic}-0", f"ev-{unique_topic}-1"}, f"published rows sent again: {sorted(ids)}"

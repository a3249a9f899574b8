"""The bulk paths of a county-sized import and evaluation, on SQLite and PostgreSQL: tuples written straight to
the driver read back as SQLAlchemy's own inserts do, and a generated county imported from CSV (bad rows
among the good) and evaluated gives the run the Fraction reference computes from the same stored inputs,
one event of each contract per enterprise."""
from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import select

from services.assessment.domain.credit_code import make_credit_code
from services.assessment.domain.evaluation import run_evaluation
from services.assessment.evaluations import evaluate, load_county
from services.assessment.events import Actor
from services.assessment.imports import ImportOptions, import_file
from services.assessment.policies import current_policy
from services.assessment.storage.bulk_rows import insert_dicts, insert_tuples
from services.assessment.storage.tables import enterprise_results as R
from services.assessment.storage.tables import enterprises as E
from shared.bulk import bulk_insert
from shared.envelope import decode
from tests.support.services import running_service

YEAR = 2023


def test_driver_inserts_read_back_like_sqlalchemys(db_url, kafka_bootstrap):
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, _):
        now = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
        rows = [{"credit_code": make_credit_code(f"91320623{n:09d}"), "name": f"企业{n}", "county_code": "320623",
                 "township_code": "320623101", "in_park": n % 2 == 0, "park_id": None if n % 3 else "P-1",
                 "industry_code": "C3311", "flags": "[]", "scale": None, "status": "active", "revision": 1,
                 "registered_at": now, "updated_at": now, "updated_by": "t"} for n in range(6)]
        with runtime.db.sessions() as s, s.begin():
            bulk_insert(s, E, rows[:2])
            insert_dicts(s, E, rows[2:4])
            insert_tuples(s, E, list(rows[4]), [tuple(r.values()) for r in rows[4:]])
        with runtime.db.sessions() as s:
            back = [dict(r._mapping) for r in s.execute(select(E).order_by(E.c.credit_code))]
        for got, want in zip(back, rows):
            got = {k: v.replace(tzinfo=v.tzinfo or timezone.utc) if isinstance(v, datetime) else v for k, v in got.items()}
            assert got == want


def county_files(county: str, n: int, seed: int = 3) -> tuple[bytes, bytes, set[int]]:
    """(register CSV, indicators CSV, lines of the indicators file that must be refused)."""
    rnd = random.Random(seed)
    reg, ind = io.StringIO(), io.StringIO()
    rw, iw = csv.writer(reg), csv.writer(ind)
    rw.writerow(["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "园区编号", "安全隐患", "公用事业", "规模"])
    iw.writerow(["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "销售收入(万元)", "工业增加值(万元)",
                 "综合能耗(吨标准煤)", "用电量(万千瓦时)", "COD(吨)", "氨氮(吨)", "研发经费(万元)", "年平均职工人数"])
    bad: set[int] = set()
    for i in range(n):
        code = make_credit_code(f"91{county}{i:09d}")
        rw.writerow([code if i % 7 else code.lower(), f"企业{i}", f"{county}{rnd.randint(100, 119)}", "C3311",
                     rnd.choice(["是", "否"]), rnd.choice(["", "P-1"]), rnd.choice(["否", "否", "是"]),
                     "是" if i % 50 == 0 else "否", rnd.choice(["", "", "规上", "规下"])])
        revenue = rnd.randint(0, 80000)
        row = [code, YEAR, f"{rnd.randint(0, 2000) / 10:.1f}", f"{rnd.randint(0, 3000) / 100:.2f}", revenue,
               f"{revenue * rnd.randint(-5, 35) / 100:.2f}", rnd.choice(["", rnd.randint(0, 5000)]),
               f"{rnd.randint(0, 3000) / 10:.1f}", rnd.choice(["", "0", f"{rnd.randint(0, 500) / 100:.2f}"]),
               rnd.choice(["", f"{rnd.randint(0, 50) / 100:.2f}"]), f"{rnd.randint(0, 500) / 100:.2f}", rnd.randint(0, 800)]
        if i % 37 == 5:
            row[2] = "-1"  # negative land
            bad.add(i + 2)
        elif i % 41 == 6:
            row[3] = "1,234.5"  # thousands separators: the careful path takes them
        iw.writerow(row)
    iw.writerow([make_credit_code(f"91{county}999999999"), YEAR, "1", "1", "1", "1", "1", "1", "1", "1", "1", "1"])
    bad.add(n + 2)  # not in the register
    return reg.getvalue().encode(), ind.getvalue().encode(), bad


def test_a_county_imported_and_evaluated_equals_the_reference(db_url, kafka_bootstrap):
    county, n = f"{random.randint(110000, 659999)}", 600
    register, figures, bad = county_files(county, n)
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, _):
        reg = import_file(runtime, register, ImportOptions(kind="enterprises"), principal="t", chunk_size=250)
        ind = import_file(runtime, figures, ImportOptions(kind="indicators", department="industry"), principal="t",
                          chunk_size=250)
        assert (reg.rejected, reg.outcomes) == (0, {"created": n})
        recorded = n - (len(bad) - 1)  # the unregistered code is not one of the county's n
        assert {b.line for b in ind.bad_rows} == bad and ind.outcomes == {"recorded": recorded}
        run, created = runtime.transaction(lambda uow: evaluate(uow.session, uow.outbox, county, YEAR, Actor("t"),
                                                                datetime.now(timezone.utc)))
        assert created
        with runtime.db.sessions() as s:
            inputs = load_county(s, county, YEAR)
            policy = current_policy(s, county, YEAR).policy
            stored = dict(s.execute(select(R.c.credit_code, R.c.breakdown).where(R.c.run_id == run.run_id)).all())
            envelopes = s.execute(select(runtime.tables["outbox"].c.envelope)).scalars().all()
        ref = run_evaluation(county, YEAR, inputs.enterprises, inputs.indicators, policy, reference=True)
        assert run.content_hash == ref.content_hash
        assert stored == {r.credit_code: j for r, j in zip(ref.results, ref.result_json)}
        kinds = Counter()
        for text in envelopes:
            env, event = decode(text)  # every event decodes against its registered contract
            kinds[env.event_name] += 1
            if env.event_name == "EnterpriseAssessed":
                result = json.loads(stored[event.credit_code])
                assert (event.class_label, event.rank) == (result["class_label"], result["rank"])
        assert kinds == {"EnterpriseRegistered": n, "IndicatorsRecorded": recorded, "EnterpriseAssessed": recorded,
                         "AssessmentPolicyChanged": 1, "EvaluationRunMadeCurrent": 1}

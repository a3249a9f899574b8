"""Seed 三.1 names 对周边环境影响较大 first among the grounds for closure: the register takes it over HTTP (the flag
large_environmental_impact) and from a file (the column 周边环境影响较大), and the evaluation recommends closure for
it whatever the class. On SQLite and PostgreSQL."""
from __future__ import annotations

from tests.support.services import ADMIN

from .test_dispositions_api import FIGURES
from .test_imports_api import to_csv, upload


def _recommendations(c, county) -> dict[int, tuple[str, str, list[str]]]:
    run = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert run.status_code == 201, run.text
    rid = run.json()["run"]["run_id"]
    out = {}
    for n in FIGURES:
        b = c.get(f"/v1/evaluations/{rid}/enterprises/{county.code(n)}", headers=ADMIN).json()
        out[n] = (b["class_label"], b["recommendation"]["disposition"],
                  [r["code"] for r in b["recommendation"]["reasons"]])
    return out


def _figures(c, county) -> None:
    for n, fields in FIGURES.items():
        r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": 2023,
                                                          "department": "tax", "fields": fields})
        assert r.status_code == 201, r.text


def test_the_flag_given_over_http_closes_a_class_a_enterprise(county, service):
    _, c, _ = service
    for n in FIGURES:
        flags = ["large_environmental_impact"] if n == 1 else []
        body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township,
                "industry_code": "C3311", "flags": flags}
        assert c.post("/v1/enterprises", headers=ADMIN, json=body).status_code == 201
    _figures(c, county)
    got = _recommendations(c, county)
    assert got[1] == ("A", "close", ["flag_large_environmental_impact", "good_class_outside_park"])
    assert got[6][1] == "upgrade" and got[7][1] == "relocate"  # without the flag: by class, as before


def test_the_register_files_column_sets_the_flag(county, service):
    _, c, _ = service
    header = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "周边环境影响较大"]
    rows = [[county.code(n), f"企业{n}", county.township, "C3311", "否", "是" if n == 7 else "否"] for n in FIGURES]
    imported = upload(c, to_csv(header, rows), "register.csv", kind="enterprises")
    assert imported.status_code == 200 and imported.json()["bad_rows"] == [], imported.text
    flags = c.get(f"/v1/enterprises/{county.code(7)}", headers=ADMIN).json()["flags"]
    assert flags == ["large_environmental_impact"]
    _figures(c, county)
    got = _recommendations(c, county)
    assert got[7][:2] == ("C", "close") and "flag_large_environmental_impact" in got[7][2]
    assert got[1][1] == "upgrade"

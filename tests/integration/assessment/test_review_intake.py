"""Review of the assessment intake (tests first): the register and the yearly figures arriving over HTTP, over
``countypool.intake.assessment`` and by CSV/XLSX import must be taken or refused alike, record the same exact
values, keep each department's part, and publish one event per change that says what was stored."""
from __future__ import annotations

import json

from sqlalchemy import text

from services.assessment.domain.credit_code import make_credit_code
from shared.contracts.assessment import EnterpriseReported, IndicatorsReported
from shared.envelope import new_envelope
from tests.support.services import ADMIN, wait_for

from .conftest import TopicTail
from .test_imports_api import to_csv, to_xlsx, upload

INDUSTRY, TAX, NATURAL_RESOURCES = "/departments/industry", "/departments/tax", "/departments/natural-resources"


def lettered(county, n: int) -> str:
    """A valid credit code of this county with letters in its body (so case and full width matter)."""
    return make_credit_code(f"91{county.code_}MA{n:07d}")


def full_width(s: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch for ch in s)


def register(c, county, code: str, **kw) -> None:
    body = {"credit_code": code, "name": "企业", "township_code": county.township, "industry_code": "C3311", **kw}
    r = c.post("/v1/enterprises", headers=ADMIN, json=body)
    assert r.status_code in (200, 201), r.text


def post_figures(c, code: str, year: int, department: str, **fields):
    return c.post("/v1/indicators", headers=ADMIN,
                  json={"credit_code": code, "year": year, "department": department, "fields": fields})


def figures_of(c, code: str, year: int = 2023):
    r = c.get(f"/v1/enterprises/{code}/indicators/{year}", headers=ADMIN)
    return r.json() if r.status_code == 200 else None


def send(bootstrap: str, topic: str, event, source: str, *, subject: str | None = None, drop=(), env=None, **data) -> object:
    """Publish ``event`` as a department would; ``data`` overrides payload keys (bypassing the producer-side
    model, as another department's system would), ``drop`` leaves keys out. Returns the envelope (to resend)."""
    from kafka import KafkaProducer

    if env is None:
        env = new_envelope(event, subject=subject or event.credit_code, source=source)
        env.data.update(data)
        for k in drop:
            env.data.pop(k, None)
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    p.send(topic, key=env.subject.encode(), value=env.to_json())
    p.flush()
    p.close()
    return env


def handled(runtime) -> int:
    st = runtime.consumer.stats
    return st.applied + st.dead_lettered + st.duplicates


def wait_handled(runtime, n: int) -> None:
    wait_for(lambda: handled(runtime) >= n, what=f"{n} intake messages handled")


def outbox(runtime, name: str, key: str) -> list[dict]:
    with runtime.db.sessions() as s:
        rows = s.execute(text("SELECT envelope FROM outbox WHERE event_type = :t AND key = :k ORDER BY position"),
                         {"t": f"countypool.{name}.v1", "k": key}).scalars().all()
    return [json.loads(r)["data"] for r in rows]


# -- one department's correction against another department's standing figure ----------------------------------

def test_a_correction_contradicting_another_department_s_figure_is_refused_whoever_reported_first(service, county):
    _, c, _ = service
    first, second = county.code(1), county.code(2)
    register(c, county, first)
    register(c, county, second)

    # tax reports land first, natural resources agrees; then tax "corrects" land
    assert post_figures(c, first, 2023, "tax", land="12.5").status_code == 201
    assert post_figures(c, first, 2023, "natural_resources", land="12.5").status_code == 201
    # the same story with natural resources first: the correction is a 409
    assert post_figures(c, second, 2023, "natural_resources", land="12.5").status_code == 201
    assert post_figures(c, second, 2023, "tax", land="12.5").status_code == 201
    other_first = post_figures(c, second, 2023, "tax", land="13")
    assert (other_first.status_code, other_first.json()["reason"]) == (409, "conflicting_departments")

    tax_first = post_figures(c, first, 2023, "tax", land="13")
    got = figures_of(c, first)
    parts = {p["department"]: p["figures"] for p in got["parts"]}
    assert parts["natural_resources"]["land"] == "12.5000"
    # natural resources still says 12.5: tax's 13 conflicts with it as much as in the other order
    assert (tax_first.status_code, tax_first.json().get("reason")) == (409, "conflicting_departments"), tax_first.text
    assert got["figures"]["land"] == "12.5000", "the merged figure silently follows one of two disagreeing departments"


# -- the three channels take the same input alike ---------------------------------------------------------------

def test_kafka_takes_a_credit_code_in_lower_case_or_full_width_as_http_and_import_do(county, consuming_service, kafka_bootstrap):
    runtime, c, topic = consuming_service
    a, b, h = lettered(county, 1), lettered(county, 2), lettered(county, 3)
    # the HTTP door (and the import, rows.normalize_credit_code) read what people type: lower case, full width
    r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": h.lower(), "name": "甲", "township_code": county.township,
                                                       "industry_code": "C3311"})
    assert (r.status_code, r.json()["enterprise"]["credit_code"]) == (201, h), r.text
    assert post_figures(c, full_width(h), 2023, "tax", tax="1.00").status_code == 201
    register(c, county, b)
    dlq = TopicTail(kafka_bootstrap, f"{topic}.dlq")

    ent = EnterpriseReported(credit_code=a, name="乙", township_code=county.township, industry_code="C3311")
    send(kafka_bootstrap, topic, ent, INDUSTRY, credit_code=a.lower())
    fig = IndicatorsReported(credit_code=b, year=2023, department="tax", fields={"tax": "1.00"})
    send(kafka_bootstrap, topic, fig, TAX, credit_code=full_width(b))
    wait_handled(runtime, 2)
    reasons = [dict(r.headers)["dlq-reason"].decode() for r in dlq.until(lambda _: True, timeout=2)]
    dlq.close()
    assert runtime.consumer.stats.dead_lettered == 0, f"refused on Kafka what HTTP and the import take: {reasons}"
    assert c.get(f"/v1/enterprises/{a}", headers=ADMIN).status_code == 200
    assert figures_of(c, b)["figures"] == {"tax": "1.00"}


def test_a_year_is_taken_or_refused_alike_by_http_kafka_and_import(county, consuming_service, kafka_bootstrap):
    runtime, c, topic = consuming_service
    by_http, by_import, by_kafka = county.code(1), county.code(2), county.code(3)
    for code in (by_http, by_import, by_kafka):
        register(c, county, code)
    years = (1995, 2150)
    dlq = TopicTail(kafka_bootstrap, f"{topic}.dlq")
    for year in years:
        post_figures(c, by_http, year, "tax", land="1")
        upload(c, to_csv(["统一社会信用代码", "用地面积(亩)"], [[by_import, "1"]]), "tax.csv", kind="indicators",
               department="tax", year=year)
        ev = IndicatorsReported(credit_code=by_kafka, year=2023, department="tax", fields={"land": "1"})
        send(kafka_bootstrap, topic, ev, TAX, year=year)
    wait_handled(runtime, len(years))
    reasons = [dict(r.headers)["dlq-reason"].decode() for r in dlq.until(lambda _: True, timeout=2)]
    dlq.close()
    taken = {code: [y for y in years if figures_of(c, code, y) is not None] for code in (by_http, by_import, by_kafka)}
    assert taken[by_http] == taken[by_import] == taken[by_kafka], (taken, reasons)


def test_the_same_figures_by_every_channel_are_stored_and_published_alike(county, consuming_service, kafka_bootstrap):
    """元/kWh over HTTP and Kafka, 万元/万kWh in CSV text and XLSX numbers; a zero R&D is a figure, an empty cell none."""
    runtime, c, topic = consuming_service
    codes = [county.code(n) for n in range(1, 5)]
    for code in codes:
        register(c, county, code)
    yuan = {"land": "12.5", "tax": "1830000.00", "value_added": "-120000.50", "rnd": "0", "electricity": "250000",
            "emissions.COD": "1.2", "employees": "10"}
    assert post_figures(c, codes[0], 2023, "tax", **yuan).status_code == 201
    send(kafka_bootstrap, topic, IndicatorsReported(credit_code=codes[1], year=2023, department="tax", fields=yuan), TAX)
    header = ["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "工业增加值(万元)", "研发经费(万元)",
              "用电量(万千瓦时)", "COD(吨)", "从业人员", "综合能耗(吨标准煤)"]
    csv_row = [codes[2], "2023", "12.5", "183", "-12.00005", "0", "25", "1.2", "10", ""]
    xlsx_row = [codes[3], 2023, 12.5, 183, -12.00005, 0, 25, 1.2, 10, ""]
    for data, name in ((to_csv(header, [csv_row]), "t.csv"), (to_xlsx(header, [xlsx_row]), "t.xlsx")):
        out = upload(c, data, name, kind="indicators", department="tax").json()
        assert out["outcomes"] == {"recorded": 1}, out
    wait_handled(runtime, 1)

    expected = {"land": "12.5000", "tax": "1830000.00", "value_added": "-120000.50", "rnd": "0.00",
                "electricity": "250000", "emissions.COD": "1.2000", "employees": "10"}
    for code in codes:
        got = figures_of(c, code)
        assert got["figures"] == expected, code
        assert set(got["sources"]) == set(expected) and set(got["sources"].values()) == {"tax"}
        [event] = outbox(runtime, "IndicatorsRecorded", code)
        assert (event["department"], event["year"], event["fields"]) == ("tax", 2023, expected), code


# -- the register: what a message does not say ------------------------------------------------------------------

def test_an_enterprise_message_that_does_not_carry_scale_or_flags_keeps_them(county, consuming_service, kafka_bootstrap):
    """A register file without the 规模 / 安全隐患 columns keeps what the register says (register.KEEPABLE); a message
    without those keys says no more about them than the file does."""
    runtime, c, topic = consuming_service
    code = county.code(1)
    full = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "规模", "安全隐患", "其他标记"]
    out = upload(c, to_csv(full, [[code, "甲", county.township, "C3311", "否", "规上", "是", "high_tech"]]), "r.csv",
                 kind="enterprises")
    assert out.json()["outcomes"] == {"created": 1}, out.text

    renamed = EnterpriseReported(credit_code=code, name="甲公司", township_code=county.township, industry_code="C3311")
    send(kafka_bootstrap, topic, renamed, INDUSTRY, drop=("scale", "flags"))
    wait_handled(runtime, 1)
    e = wait_for(lambda: (r := c.get(f"/v1/enterprises/{code}", headers=ADMIN).json())["name"] == "甲公司" and r,
                 what="rename")
    assert (e["scale"], e["flags"]) == ("规上", ["high_tech", "safety_hazard"]), e
    last = outbox(runtime, "EnterpriseRegistered", code)[-1]
    assert (last["scale"], last["flags"]) == (e["scale"], e["flags"])

    # over HTTP alike; keys sent, even empty, say so
    body = {"credit_code": code, "name": "甲有限公司", "township_code": county.township, "industry_code": "C3311"}
    r = c.post("/v1/enterprises", headers=ADMIN, json=body)
    assert r.status_code == 200, r.text
    assert (r.json()["enterprise"]["scale"], r.json()["enterprise"]["flags"]) == ("规上", ["high_tech", "safety_hazard"])
    r = c.post("/v1/enterprises", headers=ADMIN, json={**body, "flags": [], "scale": None})
    assert (r.json()["enterprise"]["scale"], r.json()["enterprise"]["flags"]) == (None, []), r.text


# -- resends, refusals and events ------------------------------------------------------------------------------

def test_a_redelivered_message_after_a_correction_and_a_refused_one_change_nothing(county, consuming_service, kafka_bootstrap):
    runtime, c, topic = consuming_service
    code = county.code(1)
    register(c, county, code)
    original = send(kafka_bootstrap, topic, IndicatorsReported(credit_code=code, year=2023, department="tax",
                                                               fields={"tax": "100.00", "land": "5"}), TAX)
    wait_handled(runtime, 1)
    send(kafka_bootstrap, topic, IndicatorsReported(credit_code=code, year=2023, department="tax",
                                                    fields={"tax": "200.00"}), TAX)
    wait_handled(runtime, 2)
    send(kafka_bootstrap, topic, None, TAX, env=original)  # the broker redelivers the first message
    # natural resources disagrees on land and adds revenue: refused whole, nothing of it kept
    send(kafka_bootstrap, topic, IndicatorsReported(credit_code=code, year=2023, department="natural_resources",
                                                    fields={"land": "6", "revenue": "7.00"}), NATURAL_RESOURCES)
    wait_handled(runtime, 4)

    st = runtime.consumer.stats
    assert (st.applied, st.duplicates, st.dead_lettered) == (2, 1, 1)
    got = figures_of(c, code)
    assert got["figures"] == {"land": "5.0000", "tax": "200.00"}
    assert [p["department"] for p in got["parts"]] == ["tax"]
    assert [e["fields"] for e in outbox(runtime, "IndicatorsRecorded", code)] == [
        {"land": "5.0000", "tax": "100.00"}, {"tax": "200.00"}]

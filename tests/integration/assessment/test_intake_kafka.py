"""Department intake over Kafka: good messages are recorded; a source without the right to publish, a bad
credit code or figures for an unregistered enterprise go to the dead-letter topic with their reason."""
from __future__ import annotations

from shared.contracts.assessment import EnterpriseReported, IndicatorsReported
from tests.support.services import ADMIN, wait_for

from .conftest import TopicTail, publish

INDUSTRY, TAX, NOBODY = "/departments/industry", "/departments/tax", "/departments/nobody"


def reported(county, n: int, credit_code: str | None = None) -> EnterpriseReported:
    return EnterpriseReported(credit_code=credit_code or county.code(n), name=f"企业{n}", township_code=county.township,
                              industry_code="C3311", flags=["high_tech"])


def figures(county, n: int, department: str, **fields) -> IndicatorsReported:
    return IndicatorsReported(credit_code=county.code(n), year=2023, department=department, fields=fields)


def test_intake_records_good_messages_and_dead_letters_the_rest(county, consuming_service, kafka_bootstrap):
    _, c, topic = consuming_service
    dlq = TopicTail(kafka_bootstrap, f"{topic}.dlq")
    publish(kafka_bootstrap, topic, [
        (reported(county, 1), INDUSTRY),
        (figures(county, 1, "tax", tax="1830000.00", land="12.5"), TAX),  # the tax bureau, its own part
        (figures(county, 1, "industry", revenue="50000000"), INDUSTRY),  # the industry bureau may send any part
        (figures(county, 1, "industry", employees="10"), TAX),  # the tax bureau posing as industry
        (reported(county, 2), TAX),  # the tax bureau may not register enterprises
        (reported(county, 3, county.bad_code(3)), INDUSTRY),
        (figures(county, 4, "tax", tax="1.00"), TAX),  # not in the register
        (figures(county, 1, "ecology", **{"emissions.cod": "1.2"}), INDUSTRY),  # COD in other letters: never weighted
        (reported(county, 5), NOBODY),
    ])
    got = wait_for(lambda: (r := c.get(f"/v1/enterprises/{county.code(1)}/indicators/2023", headers=ADMIN)).status_code == 200
                   and len(r.json()["parts"]) == 2 and r.json(), what="figures recorded")
    assert got["figures"] == {"land": "12.5000", "revenue": "50000000.00", "tax": "1830000.00"}
    assert {p["department"]: p["received_via"] for p in got["parts"]} == {"industry": "kafka", "tax": "kafka"}
    assert c.get(f"/v1/enterprises/{county.code(1)}", headers=ADMIN).json()["flags"] == ["high_tech"]

    records = dlq.until(lambda recs: len(recs) >= 6)
    dlq.close()
    reasons = sorted(dict(r.headers)["dlq-reason"].decode() for r in records)
    assert reasons == ["enterprise_not_registered", "invalid_credit_code", "pollutant_name_case", "source_not_allowed",
                       "source_not_allowed", "unknown_source"]
    assert c.get(f"/v1/enterprises/{county.code(2)}", headers=ADMIN).status_code == 404
    assert "employees" not in got["figures"]

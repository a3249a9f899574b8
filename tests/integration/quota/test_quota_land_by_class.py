"""Land goes only to applicants whose class may have it: ProjectEvaluated.land_quota_allowed (assessment's treatment
table: no new construction land for C, no industrial land for D) makes a land line 409 land_not_allowed_for_class,
while the project's other lines, and land for other classes, are served. On SQLite and PostgreSQL, and over Kafka."""
from __future__ import annotations

import pytest

from services.quota.application import assessment_facts, requests
from services.quota.domain.problems import QuotaDomainError
from services.quota.storage import request_store
from shared.contracts.assessment import ProjectEvaluated
from tests.integration.quota.harness import credit_code, new_county
from tests.integration.quota.test_quota_application import Pool, db  # noqa: F401 - the fixture
from tests.support.services import ADMIN


def _evaluate(pool: Pool, project_id: str, project_class: str | None, land_quota_allowed: bool | None) -> None:
    extra = {} if land_quota_allowed is None else {"land_quota_allowed": land_quota_allowed}
    pool.run(lambda tx: assessment_facts.project_evaluated(tx, ProjectEvaluated(
        project_id=project_id, applicant_credit_code=credit_code(pool.county, 9999), county_code=pool.county,
        park_id="park-1", admitted=True, land="10.0000", investment_per_mu="3000000.00", tax_per_mu="150000.00",
        industry_code="C39", project_class=project_class, policy_hash="h", **extra)))


def _request(pool: Pool, request_id: str, project_id: str, *assets: str):
    return pool.run(lambda tx: requests.open_quota_request(tx, {
        "request_id": request_id, "project_id": project_id, "county_code": pool.county,
        "lines": [{"asset": a, "amount": "1"} for a in assets]}, "test"))


def test_a_land_line_of_a_class_without_land_is_refused_and_other_lines_are_not(db):  # noqa: F811
    pool = Pool(db)
    _evaluate(pool, "P-D", "D", False)
    with pytest.raises(QuotaDomainError) as refused:
        _request(pool, "R-D-1", "P-D", "COD", "LAND")
    assert [(p.reason, p.field) for p in refused.value.problems] == [("land_not_allowed_for_class", "lines[1].asset")]
    assert pool.run(lambda tx: request_store.request_row(tx.session, "R-D-1")) is None  # nothing stored
    req, created = _request(pool, "R-D-2", "P-D", "COD", "ENERGY")
    assert created and [line.asset for line in req.lines] == ["COD", "ENERGY"]


@pytest.mark.parametrize("project_class, allowed", [("A", True), (None, True), ("C", None)])
def test_land_is_taken_where_the_class_may_have_it_or_the_event_predates_the_field(db, project_class, allowed):  # noqa: F811
    """None: a ProjectEvaluated written before the field existed (read as allowed, as it was)."""
    pool = Pool(db)
    _evaluate(pool, "P1", project_class, allowed)
    req, created = _request(pool, "R1", "P1", "LAND")
    assert created and req.lines[0].asset == "LAND"


def test_a_later_evaluation_that_withholds_land_refuses_new_land_lines(db):  # noqa: F811
    """Latest evaluation wins for new requests: the applicant's class fell to D."""
    pool = Pool(db)
    _evaluate(pool, "P1", "B", True)
    assert _request(pool, "R1", "P1", "LAND")[1]
    _evaluate(pool, "P1", "D", False)
    with pytest.raises(QuotaDomainError) as refused:
        _request(pool, "R2", "P1", "LAND")
    assert refused.value.reasons == ("land_not_allowed_for_class",)


def test_over_kafka_and_http_the_refusal_is_a_409_naming_the_line(plat):
    county = new_county()
    plat.policy(county)
    plat.admit(county, f"PRJ-{county}-D", project_class="D", land_quota_allowed=False)
    plat.admit(county, f"PRJ-{county}-A", project_class="A")
    plat.wait_project(f"PRJ-{county}-D")
    plat.wait_project(f"PRJ-{county}-A")
    r = plat.request(county, f"REQ-{county}-D", f"PRJ-{county}-D", LAND="2")
    assert r.status_code == 409, r.text
    assert r.json()["reason"] == "land_not_allowed_for_class", r.text
    assert plat.quota.get(f"/v1/requests/REQ-{county}-D", headers=ADMIN).status_code == 404
    ok = plat.request(county, f"REQ-{county}-A", f"PRJ-{county}-A", LAND="2")
    assert ok.status_code == 201, ok.text

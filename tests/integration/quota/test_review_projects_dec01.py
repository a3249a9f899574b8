"""Review (dec01) of how quota takes projects and approvals: ProjectEvaluated facts as the assessment service
really sends them, re-evaluations, and the approvals that confirm a reservation.

The use cases are called directly on SQLite and PostgreSQL with the ``Pool`` helper of test_quota_application.py
(ledger answers given by hand); one test goes end to end over Kafka with the ``plat`` fixture."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.quota.application import assessment_facts, requests
from services.quota.domain.policy import PriorityPolicy
from services.quota.domain.problems import QuotaDomainError
from shared.contracts.assessment import ProjectEvaluated
from tests.integration.quota.harness import credit_code, new_county
from tests.integration.quota.test_quota_application import Pool, db  # noqa: F401 - the fixture
from tests.support.services import wait_for

# The assessment service lets a county name its classes with labels of up to 20 characters
# (services/assessment/policies.py CLASS_LABEL_MAX; its enterprise_results.class_label is String(20)),
# and a project's ProjectEvaluated.project_class is its applicant's class label in the latest evaluation.
LONG_CLASS = "A类(优先发展)-重点扶持企业"  # 15 characters
assert 10 < len(LONG_CLASS) <= 20


def _evaluate(pool: Pool, project_id: str, *, admitted: bool, project_class: str | None) -> None:
    pool.run(lambda tx: assessment_facts.project_evaluated(tx, ProjectEvaluated(
        project_id=project_id, applicant_credit_code=credit_code(pool.county, 9999), county_code=pool.county,
        park_id="park-1", admitted=admitted, land="10.0000", investment_per_mu="3000000.00",
        tax_per_mu="150000.00", industry_code="C39", project_class=project_class, policy_hash="h")))


# -- a class label the assessment service allows -----------------------------------------------------------------

def test_a_refusal_naming_a_long_class_label_closes_the_projects_requests(db):  # noqa: F811
    """Admitted (class "A"), a request waits; the county then relabels its classes and the project is evaluated
    again, refused: the refusal must be taken and the waiting request closed, whatever the class label is."""
    pool = Pool(db)
    _evaluate(pool, "P1", admitted=True, project_class="A")
    pool.release("10")
    pool.request("R1", "P1", "6")

    _evaluate(pool, "P1", admitted=False, project_class=LONG_CLASS)
    assert pool.state("R1") == ("rejected", "project_not_admitted")
    assert pool.round().result.decisions == ()  # nothing granted to a refused project
    assert pool.reserved() == 0


def test_a_project_admitted_with_a_long_class_label_may_request_and_is_ordered_by_it(db):  # noqa: F811
    pool = Pool(db, priority=PriorityPolicy(("project_class", "arrival"), (LONG_CLASS, "B")))
    _evaluate(pool, "P1", admitted=True, project_class=LONG_CLASS)
    _evaluate(pool, "P2", admitted=True, project_class="B")
    pool.release("10")
    pool.request("R2", "P2", "6")  # arrives first, class B
    pool.request("R1", "P1", "6")  # the better class

    run = pool.round()
    assert [(d.request_id, d.reason) for d in run.result.decisions] == [
        ("R1", "granted"), ("R2", "insufficient_quota")]


def test_over_kafka_a_refusal_with_a_long_class_label_is_not_lost(plat):
    """End to end: the refusal must reach the pool (not be dead-lettered), so the round grants nothing to the
    project. On PostgreSQL it is dead-lettered (handler_db_error) and the request is granted."""
    county = new_county()
    pid = f"PRJ-{county}-long"
    plat.policy(county)
    assert plat.release(county, f"REL-{county}-1", "COD", "10", reason="upgrade_savings").status_code == 201
    plat.wait_booked(county, "COD", "8.0000")  # 20 % retired
    plat.admit(county, pid, project_class="A")
    plat.wait_project(pid)
    rid = f"REQ-{county}-1"
    r = plat.request(county, rid, pid, COD="1")
    assert r.status_code == 201, r.text

    dead_before = plat.quota_rt.consumer.stats.dead_lettered
    plat.admit(county, pid, admitted=False, project_class=LONG_CLASS)
    wait_for(lambda: plat.get_request(rid)["state"] != "requested"
             or plat.quota_rt.consumer.stats.dead_lettered > dead_before, timeout=20, what="the refusal handled")
    granted = [d["request_id"] for d in plat.round(county)["decisions"] if d["outcome"] == "granted"]
    assert (plat.get_request(rid)["state"], plat.get_request(rid)["reason"], granted) == (
        "rejected", "project_not_admitted", []), f"consumer {plat.quota_rt.consumer.stats}"


# -- approvals ---------------------------------------------------------------------------------------------------

def _reserved(pool: Pool) -> None:
    _evaluate(pool, "P1", admitted=True, project_class="A")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.pending("R1", "P1", "6")
    assert pool.state("R1") == ("reserved", None)


@pytest.mark.parametrize("granted_on", [
    pytest.param(lambda today: today + timedelta(days=365), id="next-year"),
    pytest.param(lambda today: date(today.year - 2000, today.month, 1), id="year-typo-0024"),
])
def test_an_approval_dated_when_it_cannot_have_been_granted_confirms_nothing(db, granted_on):  # noqa: F811
    """An 环评 dated next year has not been granted; one dated in year 24 is a typo. Neither may turn a reservation
    into an allocation (a release dated so is refused date_implausible; an approval is taken as it comes)."""
    pool = Pool(db)
    _reserved(pool)
    day = granted_on(pool.now.date())
    try:
        pool.run(lambda tx: requests.approval_granted(tx, "P1", "environmental_impact", "环审〔2024〕1号", day))
    except QuotaDomainError:
        pass  # refused as implausible: what a release gets
    assert pool.state("R1") == ("reserved", None)
    assert not pool.named("QuotaAllocated")


# -- guards: what held up ----------------------------------------------------------------------------------------

def test_refused_then_admitted_again_a_new_request_is_served_and_the_old_one_stays_closed(db):  # noqa: F811
    pool = Pool(db)
    _evaluate(pool, "P1", admitted=True, project_class="A")
    pool.release("10")
    pool.request("R1", "P1", "6")
    _evaluate(pool, "P1", admitted=False, project_class="A")
    _evaluate(pool, "P1", admitted=True, project_class="A")
    assert pool.state("R1") == ("rejected", "project_not_admitted")
    pool.request("R2", "P1", "6")
    run = pool.round()
    assert [(d.request_id, d.reason) for d in run.result.decisions] == [("R2", "granted")]
    pool.pending("R2", "P1", "6")
    pool.approve("P1")
    assert pool.state("R2") == ("allocated", None) and pool.state("R1")[0] == "rejected"
    assert pool.named("QuotaAllocated") == [("QuotaAllocated", "R2")]


def test_the_same_approval_twice_allocates_once_and_a_second_kind_is_not_needed(db):  # noqa: F811
    pool = Pool(db)
    _reserved(pool)
    pool.approve("P1")
    pool.approve("P1")
    pool.run(lambda tx: requests.approval_granted(tx, "P1", "land_use", "doc", pool.now.date()))
    assert pool.state("R1") == ("allocated", None)
    assert pool.named("QuotaAllocated") == [("QuotaAllocated", "R1")]
    assert [ids for ids, _ in pool.commands()].count(["quota/post/R1/COD"]) == 1

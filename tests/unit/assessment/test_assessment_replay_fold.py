"""The assessment replay fold over envelopes built from the real contracts, no database: what each event does
to the read models, in the order the outbox holds them."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from services.assessment.replay import MODELS, AssessmentProjection, utc_iso
from shared.contracts.assessment import (
    AdmissionFailure,
    AssessmentPolicyChanged,
    DispositionDecided,
    EnterpriseAssessed,
    EnterpriseExited,
    EnterpriseRegistered,
    EnterpriseRelocated,
    EvaluationRunMadeCurrent,
    IndicatorsRecorded,
    ProjectEvaluated,
)
from shared.envelope import new_envelope
from shared.replay import compare, fold

from .factories import COUNTY, TOWNSHIP, code

A, B = code(1), code(2)
AT = datetime(2024, 3, 12, 9, 30, 0, 250000, tzinfo=timezone.utc)


def envelope(ev, subject: str, event_id: str | None = None) -> tuple[str, bytes]:
    env = new_envelope(ev, subject=subject, source="/countypool/assessment", event_id=event_id)
    return env.type, env.to_json()


def registered(c: str, **kw) -> EnterpriseRegistered:
    args = dict(credit_code=c, name="企业", county_code=COUNTY, township_code=TOWNSHIP, in_park=False,
                industry_code="C3311", flags=[])
    return EnterpriseRegistered(**(args | kw))


def assessed(run: str, c: str, score: str | None, cls: str, version: int, year: int = 2023) -> EnterpriseAssessed:
    return EnterpriseAssessed(run_id=run, county_code=COUNTY, year=year, credit_code=c, group="规上", score=score,
                              class_label=cls, rank=None if score is None else 1, policy_version=version,
                              policy_hash=f"h{version}", breakdown_ref=f"/v1/evaluations/{run}/enterprises/{c}",
                              recommendation="close" if cls == "D" else "none")


def decided(c: str, decided_: str, recommended: str, at: datetime, run: str | None = "run-2", reason: str = ""):
    return DispositionDecided(credit_code=c, county_code=COUNTY, year=2023, recommended=recommended, decided=decided_,
                              overridden=decided_ != recommended, decided_by="县政府常务会议", decided_at=at,
                              reason=reason, run_id=run)


def history() -> list[tuple[str, bytes]]:
    evs = [
        envelope(registered(A, scale="规上", flags=["safety_hazard"]), A),
        envelope(registered(B), B),
        envelope(registered(A, name="企业甲", scale="规上", flags=["safety_hazard"]), A),  # an update
        envelope(IndicatorsRecorded(credit_code=A, year=2023, department="tax",
                                    fields={"land": "50.0000", "tax": "6000000.00"}), A),
        # the same land figure from another department: its part holds it, the merged field stays the tax bureau's
        envelope(IndicatorsRecorded(credit_code=A, year=2023, department="land",
                                    fields={"land": "50.0000", "energy": "2000.000"}), A),
        envelope(IndicatorsRecorded(credit_code=A, year=2023, department="tax", fields={"tax": "6100000.00"}), A),
        envelope(AssessmentPolicyChanged(county_code=COUNTY, year=2023, policy_version=1, policy_hash="h1",
                                         changed_by="system:default"), f"{COUNTY}/2023"),
        envelope(assessed("run-1", A, "77.0000", "A", 1), A),
        envelope(assessed("run-1", B, "40.5000", "D", 1), B),
        envelope(AssessmentPolicyChanged(county_code=COUNTY, year=2023, policy_version=2, policy_hash="h2",
                                         changed_by="admin"), f"{COUNTY}/2023"),
        envelope(assessed("run-2", A, None, "T", 2), A),  # B is not in the second run
        envelope(decided(B, "close", "close", AT), B),
        envelope(decided(B, "relocate", "close", AT + timedelta(days=1), reason="园区有承接能力"), B),
        envelope(decided(A, "close", "none", AT, reason="安全隐患"), A),
        envelope(EnterpriseRelocated(credit_code=B, county_code=COUNTY, from_township_code=TOWNSHIP, to_park_id="P-GREEN",
                                     effective_on=date(2024, 5, 1), year=2023), B, f"relocated/{B}/2023"),
        # written before the optional year existed: the year is the close decision's
        envelope(EnterpriseExited(credit_code=A, county_code=COUNTY, township_code=TOWNSHIP, effective_on=date(2024, 3, 1),
                                  reason="安全隐患"), A, f"exited/{A}"),
        envelope(ProjectEvaluated(project_id="PRJ-1", applicant_credit_code=A, county_code=COUNTY, park_id=None,
                                  admitted=False, failures=[AdmissionFailure(code="not_in_park_or_cluster", message="m")],
                                  land="10.0000", investment_per_mu="2500000.00", tax_per_mu="150000.00",
                                  industry_code="C3311", project_class="T", policy_hash="h2", year=2023,
                                  policy_version=2), "PRJ-1"),
    ]
    return evs


def rebuilt(events) -> tuple[dict, tuple[int, int]]:
    p = AssessmentProjection()
    counts = fold(p, iter(events))
    return p.rebuilt(), counts


def test_every_event_lands_in_its_read_model():
    m, (read, applied) = rebuilt(history())
    assert (read, applied) == (17, 17)
    assert set(m) == set(MODELS)
    assert m["enterprises"][A] == ("企业甲", COUNTY, TOWNSHIP, False, None, "C3311", ("safety_hazard",), "规上", "exited", 3)
    assert m["enterprises"][B] == ("企业", COUNTY, TOWNSHIP, True, "P-GREEN", "C3311", (), None, "active", 2)
    assert m["indicator_parts"] == {(A, 2023, "tax"): (("land", "50.0000"), ("tax", "6100000.00")),
                                    (A, 2023, "land"): (("energy", "2000.000"), ("land", "50.0000"))}
    assert m["indicators"] == {(A, 2023): (("energy", "2000.000", "land"), ("land", "50.0000", "tax"),
                                           ("tax", "6100000.00", "tax"))}
    assert m["policies"] == {(COUNTY, 2023, 1): ("h1", "system:default"), (COUNTY, 2023, 2): ("h2", "admin")}
    assert m["evaluation_runs"] == {"run-1": (COUNTY, 2023, 1, "h1", 2, (("规上", "A", 1), ("规上", "D", 1))),
                                    "run-2": (COUNTY, 2023, 2, "h2", 1, (("规上", "T", 1),))}
    assert m["assessment_results"][("run-1", B)] == ("规上", "D", "40.5000", 1, "close")
    assert m["assessment_results"][("run-2", A)] == ("规上", "T", None, None, "none")
    # the latest run that assessed each enterprise: A's is run 2, B (not in run 2) keeps run 1
    assert m["latest_assessments"] == {(A, 2023): ("run-2", 2, "T", None), (B, 2023): ("run-1", 1, "D", "40.5000")}
    at = "2024-03-12T09:30:00.250000+00:00"
    assert m["decisions"] == {
        (B, 2023, 1): (COUNTY, "run-2", "close", "close", False, "县政府常务会议", at, "", True),
        (B, 2023, 2): (COUNTY, "run-2", "close", "relocate", True, "县政府常务会议", "2024-03-13T09:30:00.250000+00:00",
                       "园区有承接能力", False),
        (A, 2023, 1): (COUNTY, "run-2", "none", "close", True, "县政府常务会议", at, "安全隐患", False)}
    assert m["executions"] == {(B, 2023): ("relocate", "2024-05-01", "P-GREEN", None),
                               (A, 2023): ("close", "2024-03-01", None, "安全隐患")}
    assert m["projects"] == {"PRJ-1": (COUNTY, 2023, A, None, False, (("not_in_park_or_cluster", "m", None, None, None),),
                                       "10.0000", "2500000.00", "150000.00", "C3311", "T", True, 2, "h2")}


def test_a_later_registration_of_an_exited_enterprise_keeps_it_exited():
    evs = history()
    m, _ = rebuilt([*evs, envelope(registered(A, name="企业甲乙", scale="规上", flags=["safety_hazard"]), A)])
    assert m["enterprises"][A][0] == "企业甲乙" and m["enterprises"][A][8:] == ("exited", 4)


def test_events_of_other_services_and_unhandled_types_are_read_not_applied():
    from shared.contracts.assessment import EnterpriseReported

    intake = EnterpriseReported(credit_code=A, name="x", township_code=TOWNSHIP, industry_code="C3311")
    m, (read, applied) = rebuilt([envelope(intake, A), *history()])
    assert (read, applied) == (18, 17)
    assert m == rebuilt(history())[0]


def made_current(run: str, version: int, previous: str | None, why: str, year: int = 2023):
    return envelope(EvaluationRunMadeCurrent(
        run_id=run, county_code=COUNTY, year=year, content_hash=f"c-{run}", policy_version=version,
        policy_hash=f"h{version}", enterprise_count=1, class_counts={"规上": {"A": 1}}, previous_run_id=previous,
        why=why), f"{COUNTY}/{year}")


def test_the_current_run_is_the_one_the_last_event_made_current():
    """run-1 created, run-2 created, run-1 made current again (no EnterpriseAssessed: its results are run-1's
    earlier ones). Each enterprise's latest assessment stays the most recently created run's."""
    evs = history()
    run1_done, run2_done = 9, 11  # after run-1's two results, after run-2's one
    with_events = [*evs[:run1_done], made_current("run-1", 1, None, "created"), *evs[run1_done:run2_done],
                   made_current("run-2", 2, "run-1", "created"), *evs[run2_done:],
                   made_current("run-1", 1, "run-2", "reinstated")]
    m, (read, applied) = rebuilt(with_events)
    assert (read, applied) == (20, 20)
    assert m["current_runs"] == {(COUNTY, 2023): ("run-1",)}
    assert m["latest_assessments"][(A, 2023)][0] == "run-2"
    assert {k: v for k, v in m.items() if k != "current_runs"} == {
        k: v for k, v in rebuilt(evs)[0].items() if k != "current_runs"}, "the event changes no other read model"


def test_without_those_events_the_current_run_is_the_last_created():
    """A history written before EvaluationRunMadeCurrent existed: per county-year, its most recently created run."""
    m, _ = rebuilt([*history(), envelope(assessed("run-0", A, "50.0000", "C", 1, year=2022), A)])
    assert m["current_runs"] == {(COUNTY, 2023): ("run-2",), (COUNTY, 2022): ("run-0",)}
    # an event later in the history decides for its county-year from then on
    m, _ = rebuilt([*history(), made_current("run-1", 1, "run-2", "reinstated")])
    assert m["current_runs"] == {(COUNTY, 2023): ("run-1",)}


def test_compare_names_the_model_and_key_of_a_differing_row():
    m, _ = rebuilt(history())
    live = {name: dict(rows) for name, rows in m.items()}
    assert compare(live, m) == []
    live["indicators"][(A, 2023)] = (("energy", "2000.000", "land"), ("land", "51.0000", "tax"), ("tax", "6100000.00", "tax"))
    del live["projects"]["PRJ-1"]
    diffs = compare(live, m)
    assert [(d.model, d.key) for d in diffs] == [("indicators", (A, 2023)), ("projects", "PRJ-1")]
    assert diffs[1].live is None and diffs[1].rebuilt == m["projects"]["PRJ-1"]


def test_an_instant_has_one_spelling_whatever_its_zone():
    east8 = timezone(timedelta(hours=8))
    assert utc_iso("2024-03-12T09:30:00.250000Z") == utc_iso(AT.astimezone(east8)) == "2024-03-12T09:30:00.250000+00:00"
    assert utc_iso(datetime(2024, 3, 12, 9, 30, 0, 250000)) == utc_iso(AT), "SQLite's naive datetimes are UTC"

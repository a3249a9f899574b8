"""events.emit_plain's envelopes are the bytes events.emit (pydantic, new_envelope) writes for the same event,
id and time; a payload that no longer matches its contract takes the pydantic path."""
import json
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from services.assessment.events import Actor, emit_plain
from services.assessment.events import plain_rows as plain_tuples
from services.assessment.storage.tables import metadata, messaging
from shared.contracts.assessment import EnterpriseAssessed, EnterpriseRegistered, IndicatorsRecorded
from shared.envelope import decode, new_envelope
from shared.logs import correlation_id
from shared.outbox import Outbox

from .factories import code

OUTBOX = Outbox(messaging["outbox"], "assessment")
AT = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
PAYLOADS = [
    (EnterpriseRegistered, {"credit_code": code(1), "name": "企业\"一\"\n", "county_code": "320623",
                            "township_code": "320623101", "in_park": True, "park_id": "P-1", "industry_code": "C3311",
                            "flags": ["safety_hazard"], "scale": None}),
    (IndicatorsRecorded, {"credit_code": code(1), "year": 2023, "department": "工信局",
                          "fields": {"emissions.COD": "1.2000", "land": "12.5000", "tax": "183.00"}}),
    (EnterpriseAssessed, {"run_id": "320623-2023-abc", "county_code": "320623", "year": 2023, "credit_code": code(1),
                          "group": "规上", "score": None, "class_label": "T", "rank": None, "policy_version": 1,
                          "policy_hash": "f" * 64, "breakdown_ref": "/v1/evaluations/x/enterprises/y",
                          "recommendation": "none", "reasons": ["not_evaluated"]}),
]



def plain_rows(*args):
    """The rows as dicts of Outbox.ROW_COLUMNS (they are tuples in that order)."""
    return [dict(zip(OUTBOX.ROW_COLUMNS, row)) for row in plain_tuples(*args)]

@pytest.mark.parametrize("cls, payload", PAYLOADS)
@pytest.mark.parametrize("causation, correlation", [(None, None), ("cause-1", "req-7")])
def test_plain_envelopes_are_the_pydantic_ones(cls, payload, causation, correlation):
    token = correlation_id.set(correlation)
    try:
        [row] = plain_rows(OUTBOX, Actor("p", causation=causation), cls, [(payload, code(1), "event-1")], AT)
    finally:
        correlation_id.reset(token)
    env = new_envelope(cls.model_validate(payload), subject=code(1), source=OUTBOX.source, producer=OUTBOX.service,
                       correlation_id=correlation, causation_id=causation, event_id="event-1", time=AT)
    # new_envelope stamps recordedat with its own clock; everything else, byte for byte
    recorded = json.loads(env.to_json())["recordedat"]
    assert row["envelope"] == env.to_json().decode().replace(recorded, "2024-03-01T08:30:15.123456Z")
    assert (row["event_id"], row["event_type"], row["topic"], row["key"], row["created_at"]) == (
        "event-1", cls.type_name(), cls.topic, code(1), AT)
    assert decode(row["envelope"])[1] == cls.model_validate(payload)


def test_each_event_without_an_id_gets_its_own_and_correlates_with_itself():
    rows = list(plain_rows(OUTBOX, Actor("p"), EnterpriseRegistered, [(PAYLOADS[0][1], code(1), None)] * 3, AT))
    assert len({r["event_id"] for r in rows}) == 3 and all(json.loads(r["envelope"])["correlationid"] == r["event_id"] for r in rows)


@pytest.fixture
def session(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        yield s
    engine.dispose()


def test_a_payload_that_left_its_contract_goes_through_pydantic(session, caplog):
    short = {k: v for k, v in PAYLOADS[2][1].items() if k != "reasons"}  # a field the contract defaults
    emit_plain(session, OUTBOX, Actor("p"), EnterpriseAssessed, [(short, code(1), "e-1")], AT)
    [envelope] = session.execute(select(OUTBOX.table.c.envelope)).scalars()
    assert json.loads(envelope)["data"]["reasons"] == [] and "differs from the contract" in caplog.text
    with pytest.raises(ValidationError):  # and one the contract refuses is refused, as emit would
        emit_plain(session, OUTBOX, Actor("p"), EnterpriseAssessed, [({**short, "score": "1e5"}, code(1), "e-2")], AT)


def test_times_carry_a_timezone():
    with pytest.raises(ValueError, match="timezone"):
        list(plain_rows(OUTBOX, Actor("p"), EnterpriseRegistered, [(PAYLOADS[0][1], code(1), None)], datetime(2024, 1, 1)))


def test_a_figure_beyond_the_contracts_digits_is_refused_as_before(session):
    from services.assessment.domain.enterprise import YearlyIndicators
    from services.assessment.register import record_parts, register_enterprises

    from .factories import enterprise

    register_enterprises(session, OUTBOX, [enterprise(1)], Actor("p"), AT)
    with pytest.raises(ValidationError):
        record_parts(session, OUTBOX, [YearlyIndicators.part(code(1), 2023, "tax", tax=10**40)], Actor("p"), AT)


@pytest.mark.parametrize("causation", [None, "cause-1"])
def test_the_sqlite_bulk_rows_are_what_add_rows_stores(tmp_path, causation):
    """Events go to SQLite as tuples (Outbox.add_tuples: shared.bulk.insert_tuples, the raw sqlite3 executemany),
    not through SQLAlchemy's executemany of dicts: the stored rows are the same."""
    from shared.bulk import bulk_insert

    engine = create_engine(f"sqlite:///{tmp_path / 'y.sqlite3'}")
    metadata.create_all(engine)
    cls, payload = PAYLOADS[0]
    items = [({**payload, "name": f"企业 \"{i}\"\n", "credit_code": code(i)}, code(i), f"e-{i}" if i % 2 else None)
             for i in range(1, OUTBOX.SMALL + 40)]
    cols = [c for c in OUTBOX.table.c if c.name != "position"]
    with Session(engine) as s, s.begin():
        emit_plain(s, OUTBOX, Actor("p", causation=causation), cls, items, AT)
        bulk = s.execute(select(*cols).order_by(OUTBOX.table.c.position)).all()
    ids = iter([r.event_id for r in bulk])
    with Session(engine) as s, s.begin():
        s.execute(OUTBOX.table.delete())
        rows = list(plain_rows(OUTBOX, Actor("p", causation=causation), cls, items, AT))
        for row, event_id in zip(rows, ids):  # the generated ids of the first write, so the rows compare
            envelope = json.loads(row["envelope"])
            if envelope["id"] != event_id:
                row["envelope"] = row["envelope"].replace(envelope["id"], event_id)
                row["event_id"] = event_id
        bulk_insert(s, OUTBOX.table, rows)  # SQLAlchemy's own insert of the same rows
        reference = s.execute(select(*cols).order_by(OUTBOX.table.c.position)).all()
    engine.dispose()
    assert bulk == reference and len(bulk) == len(items)
    assert [json.loads(r.envelope)["data"]["name"] for r in bulk] == [d["name"] for d, _, _ in items]

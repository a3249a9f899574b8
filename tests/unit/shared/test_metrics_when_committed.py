"""shared.metrics.when_committed: a metric counts work once its transaction commits, never work rolled back (quota's
request transitions and ledger refusals were counted as they happened: a batch retried counted them twice)."""
from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared.metrics import when_committed


def _session(tmp_path) -> Session:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
    return Session(engine)


def test_counts_what_commits_and_nothing_rolled_back(tmp_path):
    counted: list[str] = []
    s = _session(tmp_path)
    with s.begin():
        when_committed(s, lambda: counted.append("kept"))
        sp = s.begin_nested()
        when_committed(s, lambda: counted.append("savepoint refused"))
        sp.rollback()
        with s.begin_nested():  # released: still waits for the outer commit
            when_committed(s, lambda: counted.append("savepoint released"))
        assert counted == []
    assert counted == ["kept", "savepoint released"]

    s.begin()
    when_committed(s, lambda: counted.append("retried batch"))
    s.rollback()  # the consumer applies the batch again: counted once, by the attempt that commits
    with s.begin():
        when_committed(s, lambda: counted.append("retried batch"))
    assert counted == ["kept", "savepoint released", "retried batch"]
    s.close()

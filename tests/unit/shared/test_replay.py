"""The replay framework on the test machinery's widgets: a projection rebuilt from the outbox equals the live
table, a tampered live row is named, events of types the projection does not handle are not read."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.replay import Projection, compare, replay
from tests.support.machinery import WidgetAdded, make_db, widgets


class WidgetCounts(Projection):
    name = "widgets"

    def __init__(self):
        self.counts: dict[str, int] = {}

    def handlers(self):
        return {"TestWidgetAdded": self._added}

    def _added(self, data: dict, envelope: dict) -> None:
        self.counts[data["widget_id"]] = self.counts.get(data["widget_id"], 0) + 1

    def rebuilt(self):
        return {"widget_counts": {k: (v,) for k, v in self.counts.items()}}

    def live(self, session):
        return {"widget_counts": {r.id: (r.count,) for r in session.execute(sa.select(widgets))}}

    def repair(self, session, differences, rebuilt):
        for d in differences:
            session.execute(widgets.update().where(widgets.c.id == d.key).values(count=d.rebuilt[0]))
        return len(differences)


def _fill(db, outbox, n: int) -> None:
    with db.sessions() as s, s.begin():
        for i in range(n):
            wid = f"w{i % 7}"
            outbox.add(s, WidgetAdded(widget_id=wid, seq=i), subject=wid)
            cur = s.execute(sa.select(widgets.c.count).where(widgets.c.id == wid)).scalar()
            if cur is None:
                s.execute(widgets.insert().values(id=wid, count=1))
            else:
                s.execute(widgets.update().where(widgets.c.id == wid).values(count=cur + 1))


def test_rebuilt_equals_live_then_a_tampered_row_is_named_and_repaired(tmp_path):
    db, outbox = make_db(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        _fill(db, outbox, 50)
        seen = []
        report = replay(db, WidgetCounts(), progress=seen.append, total=seen.append, batch=8)
        assert report.equal and report.events_read == 50 and report.rows == {"widget_counts": 7}
        assert seen[0] == 50 and sum(seen[1:]) == 50  # total first, then progress adding up to it

        with db.sessions() as s, s.begin():
            s.execute(widgets.update().where(widgets.c.id == "w3").values(count=99))
        report = replay(db, WidgetCounts())
        assert [(d.model, d.key, d.live, d.rebuilt) for d in report.differences] == [("widget_counts", "w3", (99,), (7,))]

        report = replay(db, WidgetCounts(), repair=True)
        assert report.repaired == 1 and report.remaining == []
        assert replay(db, WidgetCounts()).equal
    finally:
        db.dispose()


def test_types_the_projection_does_not_handle_are_not_read(tmp_path):
    class OtherWidgets(WidgetCounts):
        def handlers(self):
            return {"TestWidgetAdded": self._added}

    db, outbox = make_db(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        _fill(db, outbox, 5)
        with db.sessions() as s, s.begin():  # a row of another type in the same store
            s.execute(sa.text("UPDATE outbox SET event_type = 'countypool.TestOther.v1' WHERE position = 1"))
        report = replay(db, OtherWidgets(), compare_live=False)
        assert (report.events_read, report.events_applied) == (4, 4)
    finally:
        db.dispose()


def test_a_handler_for_an_unregistered_type_is_refused(tmp_path):
    class Stale(WidgetCounts):
        def handlers(self):
            return {"NoSuchEvent": self._added}

    db, _ = make_db(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        with pytest.raises(LookupError, match="NoSuchEvent"):
            replay(db, Stale())
    finally:
        db.dispose()


def test_compare_names_rows_missing_on_either_side():
    diffs = compare({"m": {"a": (1,), "b": (2,)}}, {"m": {"b": (2,), "c": (3,)}})
    assert [(d.key, d.live, d.rebuilt) for d in diffs] == [("a", (1,), None), ("c", None, (3,))]


def test_a_replay_on_sqlite_does_not_block_the_service_writing(tmp_path):
    """The replay reads in a WAL snapshot: a writer commits meanwhile, and the replay still sees the state of
    its own start (events and rows of the same instant)."""
    db, outbox = make_db(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        _fill(db, outbox, 10)

        class WriteMidway(WidgetCounts):
            def rebuilt(self):
                other, other_outbox = make_db(db.url)
                try:
                    _fill(other, other_outbox, 3)  # would wait for the lock (and time out) under BEGIN IMMEDIATE
                finally:
                    other.dispose()
                return super().rebuilt()

        report = replay(db, WriteMidway())
        assert report.equal and report.events_read == 10
        assert replay(db, WidgetCounts()).events_read == 13
    finally:
        db.dispose()

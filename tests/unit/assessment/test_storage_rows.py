"""storage.rows reads register and indicator rows back without checking them again (checked_enterprise,
checked_indicators): what it builds is what the checked constructors build from the same rows, attribute for
attribute; and code_in finds the same rows as an IN list on SQLite."""
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from services.assessment.domain.enterprise import FLAG_NAMES, Enterprise, YearlyIndicators
from services.assessment.fields import indicators_from
from services.assessment.storage.rows import (
    code_in,
    dumps,
    enterprise_from_row,
    enterprise_values,
    indicators_from_row,
    loads,
    registered_codes,
)
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import metadata

from .factories import TOWNSHIP, code

flags = st.frozensets(st.sampled_from([*FLAG_NAMES, "high_tech", "specialized_sme"]), max_size=4)
amount = st.one_of(st.none(), st.integers(0, 10**20))


@settings(max_examples=300)
@given(st.integers(1, 10**6), flags, st.booleans(), st.sampled_from([None, "P-1"]), st.sampled_from([None, "规上", "规下"]))
def test_register_rows_read_back_as_the_checked_enterprise(n, flag_set, in_park, park, scale):
    e = Enterprise(credit_code=code(n), name=f"企业{n}", township_code=TOWNSHIP, in_park=in_park, industry_code="C3311",
                   park_id=park, scale=scale, extra_flags=flag_set - set(FLAG_NAMES),
                   **{f: f in flag_set for f in FLAG_NAMES})
    back = enterprise_from_row(SimpleNamespace(**enterprise_values(e)))
    assert back == e and vars(back) == vars(e) and back.flags() == e.flags()


@settings(max_examples=300)
@given(st.integers(1, 10**6), st.fixed_dictionaries({}, optional={
    "land": st.integers(0, 10**9), "tax": st.integers(0, 10**12), "value_added": st.integers(-10**12, 10**12),
    "employees": st.integers(0, 10**5), "rnd": st.integers(0, 10**25)}),
    st.dictionaries(st.sampled_from(["COD", "NH3-N", "SO2", "NOx"]), st.integers(0, 10**8), max_size=3),
    st.sampled_from(["industry", "tax", "统计局"]))
def test_indicator_rows_read_back_as_the_checked_figures(n, scalars, emissions, department):
    ind = YearlyIndicators.part(code(n), 2023, department, **scalars, emissions=emissions or None)
    row = SimpleNamespace(credit_code=ind.credit_code, year=ind.year, figures=dumps(ind.set_fields()),
                          sources=dumps(dict(ind.sources)))
    back = indicators_from_row(row)
    reference = indicators_from(row.credit_code, row.year, loads(row.figures), loads(row.sources))
    assert back == reference == ind and vars(back) == vars(reference)
    assert list(back.sources) == list(reference.sources) and list(back.emissions or ()) == list(reference.emissions or ())
    assert back.to_plain() == reference.to_plain()


def test_code_in_finds_what_an_in_list_finds(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    metadata.create_all(engine)
    from datetime import datetime, timezone

    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with Session(engine) as s, s.begin():
        s.execute(E.insert(), [dict(credit_code=code(i), name=f"e{i}", county_code="320623", township_code=TOWNSHIP,
                                    in_park=False, industry_code="C3311", flags="[]", status="active", revision=1,
                                    registered_at=now, updated_at=now, updated_by="t") for i in range(1, 50)])
        wanted = [code(i) for i in range(30, 80)] + ['x"\\', "'", ""]
        assert set(s.execute(select(E.c.credit_code).where(code_in(E.c.credit_code, wanted, s))).scalars()) == \
            set(s.execute(select(E.c.credit_code).where(E.c.credit_code.in_(wanted))).scalars())
        assert registered_codes(s, wanted) == {code(i) for i in range(30, 50)}
        assert list(s.execute(select(E.c.credit_code).where(code_in(E.c.credit_code, [], s)))) == []
    engine.dispose()

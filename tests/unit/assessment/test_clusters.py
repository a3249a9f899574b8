from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.clusters import member_sums, rank_clusters
from services.assessment.domain.policy import default_policy
from services.assessment.domain.scoring import aggregate_inputs, enterprise_inputs

from .factories import COUNTY, MU, WAN, YEAR, big_figures, enterprise, figures

POLICY = default_policy(COUNTY, YEAR)


def test_cluster_ranking_sums_numerators_and_denominators():
    enterprises = [
        enterprise(1, park_id="P1", in_park=True),
        enterprise(2, park_id="P1", in_park=True),
        enterprise(3, park_id="P1", in_park=True, utility=True),  # T: left out of the aggregate
        enterprise(4, park_id="P2", in_park=True),
        enterprise(5, park_id="P2", in_park=True),
        enterprise(6),  # in no cluster
    ]
    indicators = [
        big_figures(1),
        big_figures(2, tax=300 * WAN),
        big_figures(3, tax=10**6 * WAN),
        big_figures(4, land=25 * MU),
        figures(5, tax=10**5 * WAN),  # no land: must not inflate P2's tax per 亩
        big_figures(6, tax=10**6 * WAN),
    ]
    r = rank_clusters(COUNTY, YEAR, enterprises, indicators, POLICY)
    p2, p1 = r.results
    # P1 = e1 + e2: tax (600 + 300) / land 100 亩 = 9 -> 40 x 9 / 30 = 12; revenue 60000/100 = 600 -> 25;
    # VA 12000 / 4000 tce = 3 -> 15; VA 12000 / 40 t = 300 -> 15, cap 12; 12000 / 500 persons = 24 -> 4;
    # R&D 1800 / 60000 = 3 % -> 5. Total 73.
    assert (p1.cluster_id, p1.members, p1.score.total) == ("P1", (enterprises[0].credit_code, enterprises[1].credit_code), Decimal(73))
    # P2 = e4 (e5 has tax only): tax 600 / 25 = 24 -> 32; revenue 30000 / 25 = 1200 -> 50, cap 30; 15; 12; 4; 5
    # total 98
    assert (p2.cluster_id, p2.score.total) == ("P2", Decimal(98))
    # n=2: A to ceil(0.4)=1, B to ceil(1.2)=2
    assert [(x.cluster_id, x.class_label, x.rank) for x in r.results] == [("P2", "A", 1), ("P1", "B", 2)]
    assert r.group == "规上"
    again = rank_clusters(COUNTY, YEAR, list(reversed(enterprises)), list(reversed(indicators)), POLICY)
    assert again.content_hash == r.content_hash


_FIELD = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12))


@st.composite
def member(draw, n: int):
    emissions = draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["COD", "NH3-N", "SO2", "NOx"]),
                                                          st.integers(min_value=0, max_value=10**9), max_size=3)))
    return figures(n, land=draw(_FIELD), tax=draw(_FIELD), revenue=draw(_FIELD),
                   value_added=draw(st.one_of(st.none(), st.integers(min_value=-10**12, max_value=10**12))),
                   energy=draw(_FIELD), electricity=draw(_FIELD), rnd=draw(_FIELD), employees=draw(_FIELD),
                   emissions=emissions or None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(min_value=1, max_value=10**6)), min_size=1, max_size=8).flatmap(
    lambda ns: st.tuples(*[st.none() if n is None else member(n) for n in ns])))
def test_member_sums_are_the_aggregate_of_each_members_inputs(members):
    """The integer sums a cluster is scored on are exactly the sums of the Fractions each member would be scored on
    (only members whose own figure of an indicator is measured counting for it)."""
    expected = aggregate_inputs((enterprise_inputs(m, POLICY) for m in members), POLICY)
    assert member_sums(list(members), POLICY) == expected

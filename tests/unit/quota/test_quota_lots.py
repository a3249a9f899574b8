from datetime import date

import pytest

from services.quota.domain.lots import SourceKind, accept_release, retired_part
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.pool_view import pool_figures
from services.quota.domain.problems import QuotaDomainError
from services.quota.domain.reclamation import ReclamationState, accept_reclamation, register_reclamation
from services.quota.domain.releases import parse_release


def test_release_becomes_a_lot_with_the_retired_share_rounded_up(release_payload, policy):
    # 12.3457 t COD = 123457 units; 20 % = 24691.4 -> ceil -> 24692 retired, 98765 reusable.
    lot, retired = accept_release(parse_release(release_payload(), policy), policy)
    assert (lot.amount, lot.retired, lot.remaining, retired) == (123457, 24692, 98765, 24692)
    assert lot.lot_id == "release:REL-1"
    assert lot.source_kind is SourceKind.ENTERPRISE and lot.township_code == "320612100"
    assert lot.dated == date(2024, 2, 15) and lot.allocated == 0


@pytest.mark.parametrize(
    "amount, bp, retired",
    [(100000, 2000, 20000), (123457, 2000, 24692), (1, 2000, 1), (10001, 3333, 3334), (99, 0, 0), (7, 10000, 7)],
)
def test_retired_part_is_the_exact_ceiling(amount, bp, retired):
    assert retired_part(amount, bp) == retired


def test_energy_is_not_retired_by_default(release_payload, policy):
    lot, retired = accept_release(
        parse_release(release_payload(department="development_reform", asset="ENERGY", amount="3.001"), policy),
        policy,
    )
    assert (lot.amount, retired, lot.remaining) == (3001, 0, 3001)


def test_pool_figures_after_intake(release_payload, policy):
    lot1, _ = accept_release(parse_release(release_payload(), policy), policy)
    lot2, _ = accept_release(parse_release(release_payload(release_id="REL-2", amount="1"), policy), policy)
    cod = pool_figures([lot1, lot2], [])["COD"]
    assert (cod.released, cod.retired, cod.allocated, cod.reserved, cod.available) == (133457, 26692, 0, 0, 106765)
    assert pool_figures([], [])["LAND"].available == 0


def test_reclamation_land_enters_the_pool_only_when_accepted_and_only_once(county):
    policy = PoolPolicy(county_code=county, retire_share_bp={"LAND": 500})
    project = register_reclamation("GX-7", county, "320612105", "15.5", date(2023, 6, 1))
    assert project.area == 155000 and project.state is ReclamationState.REGISTERED
    # registered land is not in the pool: no lot exists yet
    first = accept_reclamation(project, date(2024, 1, 20), policy, accepted_area=150000)
    assert first.changed and first.lot is not None
    assert first.project.state is ReclamationState.ACCEPTED and first.project.accepted_area == 150000
    assert (first.lot.lot_id, first.lot.asset, first.lot.amount, first.lot.retired) == ("reclamation:GX-7", "LAND",
                                                                                        150000, 7500)
    assert first.lot.source_kind is SourceKind.RECLAMATION and first.lot.source_ref == "GX-7"

    again = accept_reclamation(first.project, date(2024, 2, 1), policy)
    assert (again.changed, again.lot, again.reason) == (False, None, "already_accepted")


def test_reclamation_validation(county, policy):
    with pytest.raises(QuotaDomainError) as e:
        register_reclamation("", county, "320699105", "0", date(2023, 6, 1))
    assert set(e.value.reasons) == {"project_id_missing", "township_not_in_county", "amount_must_not_be_zero"}
    project = register_reclamation("GX-8", county, "320612105", "1", date(2023, 6, 1))
    with pytest.raises(QuotaDomainError) as e:
        accept_reclamation(project, date(2024, 1, 1), policy, accepted_area=10001)
    assert e.value.reasons == ("accepted_area_out_of_range",)


def test_a_lot_dated_after_the_countys_today_is_refused(county, policy, release_payload):
    """A lot's date orders it (FIFO) and must be one that has been: 2042 typed for 2024 pooled quota not freed yet."""
    today = date(2024, 3, 1)
    assert parse_release(release_payload(released_on="2024-03-01"), policy, today).released_on == today
    with pytest.raises(QuotaDomainError) as e:
        parse_release(release_payload(released_on="2024-03-02"), policy, today)
    assert e.value.reasons == ("date_implausible",)
    project = register_reclamation("GX-9", county, "320612105", "1", date(2023, 6, 1))
    assert accept_reclamation(project, today, policy, today=today).changed
    with pytest.raises(QuotaDomainError) as e:
        accept_reclamation(project, date(2042, 1, 1), policy, today=today)
    assert e.value.reasons == ("date_implausible",)

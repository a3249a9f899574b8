from datetime import date

from services.quota.domain.ledger_moves import TransferCode, intake_moves, reserve_moves, void_moves
from services.quota.domain.lots import accept_release
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.reclamation import accept_reclamation, register_reclamation
from services.quota.domain.releases import parse_release


def test_release_intake_moves_and_retire_are_one_linked_chain(release_payload, policy):
    lot, _ = accept_release(parse_release(release_payload(), policy), policy)
    intake, retire = intake_moves(lot)
    assert (intake.transfer_id, intake.debit_account, intake.credit_account, intake.amount, intake.code,
            intake.linked) == ("quota/intake/release:REL-1", "external:rights-register/COD", "county:320612/pool/COD",
                               123457, TransferCode.RELEASE_INTAKE, True)
    assert (retire.transfer_id, retire.debit_account, retire.credit_account, retire.amount, retire.linked) == (
        "quota/retire/release:REL-1", "county:320612/pool/COD", "county:320612/retired/COD", 24692, False)


def test_redelivery_yields_the_same_transfer_ids(release_payload, policy):
    once = intake_moves(accept_release(parse_release(release_payload(), policy), policy)[0])
    twice = intake_moves(accept_release(parse_release(release_payload(), policy), policy)[0])
    assert once == twice
    assert reserve_moves("R1", "P", "320612", [("COD", 5)], 60) == reserve_moves("R1", "P", "320612", [("COD", 5)], 60)


def test_reclamation_intake_without_retire_share(county):
    policy = PoolPolicy(county_code=county)
    project = register_reclamation("GX-1", county, "320612105", "2", date(2024, 1, 1))
    lot = accept_reclamation(project, date(2024, 5, 1), policy).lot
    (intake,) = intake_moves(lot)
    assert (intake.debit_account, intake.credit_account, intake.amount, intake.code, intake.linked) == (
        "external:land-reclamation/LAND", "county:320612/pool/LAND", 20000, TransferCode.RECLAMATION_INTAKE, False)


def test_voids_are_independent_and_name_their_pending_transfer():
    voids = void_moves("R1", "P", "320612", [("COD", 5), ("SO2", 7)])
    assert [(v.transfer_id, v.void_pending_id, v.linked) for v in voids] == [
        ("quota/void/R1/COD", "quota/reserve/R1/COD", False), ("quota/void/R1/SO2", "quota/reserve/R1/SO2", False)]

"""Ids the quota service builds ledger transfer ids from are short enough for the ledger: a release or
reclamation id the ledger could not take is refused at intake, not dead-lettered by the ledger later."""
from datetime import date

import pytest
from pydantic import ValidationError

from services.quota.api.schemas import ReclamationIn
from services.quota.domain.ledger_moves import intake_moves
from services.quota.domain.lots import accept_release
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.reclamation import accept_reclamation, register_reclamation
from services.quota.domain.releases import parse_release
from shared.contracts.ledger import TransferSpec
from shared.contracts.quota import QuotaReleaseSubmitted, ReclamationAccepted

LONGEST = "R" * 150


def _ledger_takes(transfer_id: str) -> None:
    TransferSpec(transfer_id=transfer_id, debit_account="a", credit_account="b", asset="COD", amount="1")


def test_the_longest_release_id_gives_ledger_ids_the_ledger_takes(release_payload, policy):
    QuotaReleaseSubmitted.model_validate(release_payload(release_id=LONGEST, department=None))
    lot, _ = accept_release(parse_release(release_payload(release_id=LONGEST), policy), policy)
    moves = intake_moves(lot)
    assert len(moves) == 2
    for m in moves:
        _ledger_takes(m.transfer_id)


def test_the_longest_reclamation_id_gives_ledger_ids_the_ledger_takes(county):
    project = register_reclamation(LONGEST, county, "320612105", "2", date(2024, 1, 1))
    (intake,) = intake_moves(accept_reclamation(project, date(2024, 5, 1), PoolPolicy(county_code=county)).lot)
    _ledger_takes(intake.transfer_id)


def test_a_longer_source_id_is_refused_where_it_enters(release_payload, county):
    with pytest.raises(ValidationError, match="release_id"):
        QuotaReleaseSubmitted.model_validate(release_payload(release_id=LONGEST + "R", department=None))
    with pytest.raises(ValidationError, match="project_id"):
        ReclamationAccepted.model_validate({"project_id": LONGEST + "R", "accepted_on": "2024-05-01"})
    with pytest.raises(ValidationError, match="project_id"):
        ReclamationIn.model_validate({"project_id": LONGEST + "R", "county_code": county, "township_code": "320612105",
                                      "area": "2"})

"""What the ledger's two entrances (HTTP and Kafka commands) refuse before the engine runs."""
from __future__ import annotations

import pytest

from services.ledger.domain import DEFAULT_ASSETS
from services.ledger.handlers import BadTransfer, to_request
from shared.contracts.ledger import TransferSpec


@pytest.mark.parametrize("field", ["debit_account", "credit_account", "code", "post_pending_id", "void_pending_id"])
def test_a_nul_is_refused_with_its_reason_and_index(field):
    """PostgreSQL text cannot hold one: over Kafka the command is dead-lettered with this reason, over HTTP a 422
    names the transfer, on SQLite as on PostgreSQL."""
    fields = {"debit_account": "a", "credit_account": "b", field: "x\x00y"}
    spec = TransferSpec(transfer_id="t", asset="COD", amount="1", **fields)
    with pytest.raises(BadTransfer) as err:
        to_request(spec, DEFAULT_ASSETS, 7)
    assert (err.value.reason, err.value.index) == ("invalid_value", 7)

"""The clock's turn in the saga: a request past its deadline expires (and what it held is voided), so no
request waits forever and none holds quota it did not get."""
from __future__ import annotations

from services.quota.application.saga import carry_out
from services.quota.application.tx import Tx
from services.quota.domain.requests import expire_if_due
from services.quota.storage import request_store
from services.quota.storage.counties import lock_county


def expire_request(tx: Tx, request_id: str, county_code: str) -> bool:
    cp = lock_county(tx.session, county_code, tx.now)
    req = request_store.load_request(tx.session, request_id)  # read again under the county's lock
    if req is None:
        return False
    return carry_out(tx, cp.policy, expire_if_due(req, tx.now)).changed

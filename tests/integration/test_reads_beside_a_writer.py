"""On SQLite (the default deployment) the read routes of the ledger, the assessment and the settlement service do not
wait for a writer: sessions take the write lock at their start (BEGIN IMMEDIATE), so a read waited for a
100,000-enterprise evaluation, a ledger batch or a statement draft, and failed after the 30 s busy timeout; they
read a snapshot now."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from tests.support.services import ADMIN, running_service

READS = {
    "ledger": ["/v1/transfers/t-1", "/v1/accounts/county:320612/pool/COD/entries",
               "/v1/accounts/county:320612/pool/COD/pending"],
    "assessment": ["/v1/enterprises/91320612MA1W2B3C4D", "/v1/evaluations?county_code=320612&year=2024",
                   "/v1/policies/320612/2024", "/v1/projects/p-1", "/v1/tasks?county_code=320612"],
    "settlement": ["/v1/agreements?county=320612", "/v1/agreements/a-1", "/v1/tax-receipts", "/v1/tax-receipts/r-1",
                   "/v1/counties/320612/settlement-policy", "/v1/counties/320612/settlement-policy/versions"],
}


@pytest.mark.parametrize("service", sorted(READS))
def test_reads_go_on_while_a_writer_holds_the_database(service, tmp_path, kafka_bootstrap):
    path = tmp_path / f"{service}.sqlite3"
    with running_service(service, f"sqlite:///{path}", kafka_bootstrap, background=False) as (_, client):
        writer = sqlite3.connect(path, timeout=1)
        writer.execute("BEGIN IMMEDIATE")  # a batch or an evaluation in progress
        answers: dict = {}

        def read():
            for p in READS[service]:
                answers[p] = client.get(p, headers=ADMIN).status_code

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(10)
        writer.rollback()
        writer.close()
        assert not t.is_alive(), f"reads waited for the writer: {answers}"
        assert set(answers.values()) <= {200, 404, 422}, answers

"""On SQLite (the default deployment) a read of the settlement API does not wait for a writer: every session took
the write lock at its start (BEGIN IMMEDIATE), so agreements, policies and receipts were not readable while a
statement was being drafted, and failed after the 30 s busy timeout."""
from __future__ import annotations

import sqlite3
import threading

from tests.support.services import running_service

FINANCE = {"Authorization": "Bearer dev-finance-token"}


def test_reads_go_on_while_a_writer_holds_the_database(tmp_path, kafka_bootstrap):
    url = f"sqlite:///{tmp_path / 'settlement.sqlite3'}"
    with running_service("settlement", url, kafka_bootstrap, background=False) as (_, client):
        writer = sqlite3.connect(tmp_path / "settlement.sqlite3", timeout=1)
        writer.execute("BEGIN IMMEDIATE")  # a draft or an intake in progress
        answers: dict = {}

        def read():
            for path in ("/v1/agreements?county=320612", "/v1/tax-receipts", "/v1/tax-receipts/r-1",
                         "/v1/counties/320612/settlement-policy", "/v1/counties/320612/settlement-policy/versions",
                         "/v1/agreements/a-1"):
                answers[path] = client.get(path, headers=FINANCE).status_code

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(10)
        writer.rollback()
        writer.close()
        assert not t.is_alive(), f"reads waited for the writer: {answers}"
        assert set(answers.values()) <= {200, 404}, answers

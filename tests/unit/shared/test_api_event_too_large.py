"""An HTTP request whose event would be too big for Kafka is the caller's problem: 413 with a reason, not a 500."""
from fastapi.testclient import TestClient

from shared.api import create_app
from shared.auth import Authenticator
from shared.outbox import MAX_EVENT_BYTES, EventTooLarge


def test_event_too_large_is_413_with_reason():
    app = create_app("test", authenticator=Authenticator({}), ready_checks={}, title="t")

    @app.post("/big")
    def big():
        raise EventTooLarge("StatementDrafted", "county:320612", MAX_EVENT_BYTES + 1, MAX_EVENT_BYTES, "e-1")

    r = TestClient(app).post("/big")
    assert r.status_code == 413
    body = r.json()
    assert body["reason"] == "event_too_large"
    assert body["details"] == {"event_type": "StatementDrafted", "bytes": MAX_EVENT_BYTES + 1, "limit": MAX_EVENT_BYTES}

"""Start a real service in-process for an integration test: its own database, real Kafka, background relay
and consumer running, an HTTP client with tokens from deploy/dev-tokens.json."""
from __future__ import annotations

import importlib
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from fastapi.testclient import TestClient

from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
TOKENS = ROOT / "deploy" / "dev-tokens.json"
ADMIN = {"Authorization": "Bearer dev-admin-token"}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def running_service(name: str, db_url: str, bootstrap: str, *, background: bool = True, **settings) -> Iterator[tuple]:
    """Yields (runtime, client). ``background=False`` leaves relay and consumer stopped (drive them by hand)."""
    module = importlib.import_module(f"services.{name}.main")
    cls = getattr(module, f"{name.capitalize()}Settings", None)
    kwargs = dict(database_url=db_url, kafka_bootstrap_servers=bootstrap, auth_tokens_file=TOKENS, **settings)
    st = load_settings(name, cls, **kwargs) if cls else load_settings(name, **kwargs)
    runtime, app = module.build(st)
    runtime.migrate()
    if background:
        runtime.start_background()
    try:
        with TestClient(app) as client:
            yield runtime, client
    finally:
        runtime.stop_background()
        runtime.db.dispose()


@contextmanager
def replicas_of(name: str, db_url: str, bootstrap: str) -> Iterator[tuple[tuple, tuple]]:
    """Two services of one kind on one database, as deploy/k8s runs them, each (runtime, client); relay and consumer
    stopped (HTTP only). For races between replicas: calls split between the two."""
    with running_service(name, db_url, bootstrap, background=False) as a, \
            running_service(name, db_url, bootstrap, background=False) as b:
        yield a, b


def wait_for(condition: Callable[[], object], timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

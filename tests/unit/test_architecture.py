"""The architecture the folders show, held by reading every module's imports (no import is run):

- a service never imports another service: they meet through Kafka events (contracts in shared/) and HTTP;
- shared/ never imports a service;
- a service's domain/ is pure: no database, web, Kafka or HTTP library, none of its own service's outer layers,
  and of shared/ only the modules without I/O.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ledger", "quota", "settlement", "assessment")
IO_LIBRARIES = {"sqlalchemy", "alembic", "fastapi", "starlette", "kafka", "httpx", "psycopg", "requests", "uvicorn",
                "prometheus_client", "openpyxl", "socket", "subprocess"}
PURE_SHARED = {"shared.amounts", "shared.china_time", "shared.text_files", "shared.contracts"}


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved against its package)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package[:-1]
    else:
        package = package[:-1] if package[-1] == "__init__" else package
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                out.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.append(node.module)
    return out


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service):
    others = [s for s in SERVICES if s != service]
    found = [(str(p.relative_to(ROOT)), name) for p in _modules(ROOT / "services" / service) for name in _imports(p)
             if any(_under(name, f"services.{o}") for o in others)]
    assert found == []


def test_shared_imports_no_service():
    found = [(str(p.relative_to(ROOT)), name) for p in _modules(ROOT / "shared") for name in _imports(p)
             if _under(name, "services")]
    assert found == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_domain_does_no_io_and_depends_on_nothing_outside_it(service):
    domain = ROOT / "services" / service / "domain"
    assert domain.is_dir()
    found = []
    for p in _modules(domain):
        for name in _imports(p):
            top = name.split(".")[0]
            outer = _under(name, f"services.{service}") and not _under(name, f"services.{service}.domain")
            impure_shared = top == "shared" and not any(_under(name, s) for s in PURE_SHARED)
            if top in IO_LIBRARIES or outer or impure_shared:
                found.append((str(p.relative_to(ROOT)), name))
    assert found == []


def test_the_check_sees_relative_and_absolute_imports(tmp_path):
    """The reader itself: a relative import two levels up and an absolute one are both named."""
    module = ROOT / "services" / "quota" / "domain" / "requests.py"
    names = _imports(module)
    assert "services.quota.domain.assets" in names
    init = ROOT / "services" / "ledger" / "domain" / "__init__.py"
    assert "services.ledger.domain.journal" in _imports(init)

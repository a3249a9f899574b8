"""Review of the documentation an engineer new to the project reads (README.md, services/quota/README.md,
services/settlement/README.md, bench/README.md), held mechanically to the code. The READMEs are parsed, so a later
edit of either side is held too:

- every HTTP endpoint they name (method + path) is in that service's OpenAPI (docs/openapi/<service>.json, kept
  current by tests/test_catalogue.py), every /v1 route of a service's OpenAPI is named in its README section, and
  the curl examples and the open operations paths (/docs, /metrics, ...) answer on the live apps' routes;
- every reason code they quote after a 4xx status or as a dead-letter / refusal reason is raised by the code of
  the service the text is about (or shared/): a string constant, an enum member or an f-string that builds it;
  every other snake_case name in backticks exists in the code at all;
- every variable of quota's own settings list is a field of its settings, every other variable named is read;
- every metric of the README's metrics table is defined with the type and the labels the table gives;
- every `make` target they tell a reader to run is a Makefile target, every command-line flag of the CLI, the demo
  and the benchmarks exists in its script, every file path they name exists.

Needs no Kafka and no database (the apps are built as ops.catalogue builds them: SQLite in memory, no consumer,
no relay). tests/test_review_operations.py already holds the top README's settings table to the settings, and
tests/integration/test_review_observability.py the metric names to a running platform; the checks here that look
alike are the static halves (labels, types; quota's own settings list), which those do not do.
"""
from __future__ import annotations

import ast
import functools
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ledger", "quota", "settlement", "assessment")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
OPS_PATHS = ("/docs", "/openapi.json", "/metrics", "/healthz", "/readyz")
README_FILES = ("README.md", "services/quota/README.md", "services/settlement/README.md", "bench/README.md")
PORTS = {"8001": "ledger", "8002": "quota", "8003": "settlement", "8004": "assessment"}


# ------------------------------------------------------------------------------------------------- reading
def _read(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


@functools.cache
def doc_parts() -> list[tuple[str, str | None, str, int]]:
    """(file, service or None, text, first line) of each part of the READMEs: the service READMEs whole, the top
    README cut at its `## ` headings (a heading naming `services/<name>` is that service's section)."""
    parts = []
    for rel in README_FILES:
        text = _read(rel)
        if rel.startswith("services/"):
            parts.append((rel, rel.split("/")[1], text, 1))
            continue
        starts = [0] + [m.start() + 1 for m in re.finditer(r"\n## ", text)]
        for a, b in zip(starts, starts[1:] + [len(text)]):
            chunk = text[a:b]
            head = chunk.split("\n", 1)[0]
            m = re.search(r"`services/(\w+)`", head)
            parts.append((rel, m.group(1) if m and rel == "README.md" else None, chunk, _line(text, a)))
    return parts


def spans(text: str):
    """(content with whitespace collapsed, offset) of every `code span` (one may run over a line break)."""
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        yield " ".join(m.group(1).split()), m.start()


# ------------------------------------------------------------------------------------------------ endpoints
@functools.cache
def openapi_routes(service: str) -> frozenset[tuple[str, str]]:
    doc = json.loads(_read(f"docs/openapi/{service}.json"))
    return frozenset((m.upper(), _template(p)) for p, ops in doc["paths"].items() for m in ops if m.upper() in METHODS)


def _template(path: str) -> str:
    """A path with its parameters unnamed: /v1/accounts/{account_id} and /v1/accounts/<id> are one route."""
    path = re.sub(r"\[[^\]]*\]", "", path).split("?")[0].rstrip(".,;")
    return re.sub(r"\{[^}]*\}|<[^>]*>", "{}", path)


_QUERY: dict[tuple, tuple[str, ...]] = {}  # query parameters each named endpoint shows
_ENDPOINT = re.compile(rf"^((?:{'|'.join(METHODS)})(?:[/|](?:{'|'.join(METHODS)}))*) (\S+)$")


def named_endpoints() -> list[tuple[str, int, str | None, tuple[str, ...], str]]:
    """(file, line, service, methods, /v1 path template) of every `METHOD /path` span; a service README's paths are
    under /v1; `…/x` and `.../x` continue the endpoint named before them, at the longest prefix that makes a route."""
    out = []
    for rel, service, text, first in doc_parts():
        previous = None
        for span, pos in spans(text):
            m = _ENDPOINT.match(span)
            if not m:
                continue
            methods = tuple(re.split(r"[/|]", m.group(1)))
            path = m.group(2)
            line = first + _line(text, pos) - 1
            if path.startswith(("…/", ".../")) and previous:
                rest = path.split("/", 1)[1]
                parts = previous.split("/")
                candidates = ["/".join(parts[:i]) + "/" + rest for i in range(len(parts), 0, -1)]
                known = [c for c in candidates if service and all((mm, _template(c)) in openapi_routes(service)
                                                                   for mm in methods)]
                path = known[0] if known else candidates[0]
            elif rel.startswith("services/") and not path.startswith("/v1"):
                path = "/v1" + path
            out.append((rel, line, service, methods, _template(path)))
            previous = _template(path)
            _QUERY[(rel, line, methods, _template(path))] = tuple(re.findall(r"[?&\[](\w+)=", m.group(2)))
    return out


def test_readme_parsing_finds_the_endpoint_tables():
    """Guards the parser: the ledger's table, quota's and settlement's lists are read (not silently nothing)."""
    by_service: dict[str | None, int] = {}
    for _rel, _line_no, service, _m, _p in named_endpoints():
        by_service[service] = by_service.get(service, 0) + 1
    assert by_service.get("ledger", 0) >= 10 and by_service.get("quota", 0) >= 15
    assert by_service.get("settlement", 0) >= 15 and by_service.get("assessment", 0) >= 3


def test_every_endpoint_the_readmes_name_is_in_that_services_openapi():
    missing = []
    for rel, line, service, methods, path in named_endpoints():
        where = [service] if service else list(SERVICES)
        for method in methods:
            if not any((method, path) in openapi_routes(s) for s in where):
                missing.append(f"{rel}:{line}: {method} {path} (not in {'/'.join(where)}'s OpenAPI)")
    assert not missing, "the READMEs name endpoints no service has:\n" + "\n".join(missing)


# A service section that deliberately lists only some of its routes and points to the OpenAPI document instead.
DELEGATES_TO_OPENAPI = {
    "assessment": "docs/openapi/assessment.json",  # README "The assessment service" ends "API: `docs/openapi/...`"
}


@pytest.mark.parametrize("service", SERVICES)
def test_every_v1_route_is_named_in_its_services_readme_section(service):
    named = {(m, p) for _r, _l, s, methods, p in named_endpoints() if s == service for m in methods}
    unnamed = sorted(f"{m} {p}" for m, p in openapi_routes(service) if p.startswith("/v1") and (m, p) not in named)
    if service in DELEGATES_TO_OPENAPI:
        section = "".join(t for _r, s, t, _f in doc_parts() if s == service)
        assert DELEGATES_TO_OPENAPI[service] in section, f"{service}'s section no longer points to its OpenAPI"
        return
    assert not unnamed, f"{service}'s OpenAPI has /v1 routes its README section never names: {unnamed}"


def test_the_query_parameters_the_readmes_show_are_the_endpoints_own():
    """`GET /counties/{c}/lots?asset=&with_remaining=` and the like: each parameter is one the operation takes."""
    ops = {}
    for service in SERVICES:
        doc = json.loads(_read(f"docs/openapi/{service}.json"))
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                ops[(service, method.upper(), _template(path))] = {x["name"] for x in op.get("parameters", [])
                                                                    if x["in"] == "query"}
    wrong, seen = [], 0
    for rel, line, service, methods, path in named_endpoints():
        for name in _QUERY.get((rel, line, methods, path), ()):
            seen += 1
            for method in methods:
                takes = set().union(*(ops.get((s, method, path), set()) for s in ([service] if service else SERVICES)))
                if name not in takes:
                    wrong.append(f"{rel}:{line}: {method} {path}?{name}=")
    assert seen >= 20
    assert not wrong, f"query parameters the READMEs show that the endpoints do not take: {wrong}"


@pytest.fixture(scope="module")
def live_apps():
    """Each service's app as `services/<name>/main.py` builds it (what ops.catalogue documents)."""
    from shared.settings import load_settings

    apps = {}
    for service in SERVICES:
        module = importlib.import_module(f"services.{service}.main")
        cls = getattr(module, f"{service.capitalize()}Settings", None)
        kw = dict(database_url="sqlite://", consumer_enabled=False, relay_enabled=False)
        settings = load_settings(service, cls, **kw) if cls else load_settings(service, **kw)
        apps[service] = module.build(settings)[1]
    return apps


def _answers(app, method: str, path: str) -> bool:
    from starlette.routing import Match

    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def test_the_open_operations_paths_are_served_by_every_service(live_apps):
    """README "What make run shows": every service serves /docs, /openapi.json, /metrics, /healthz, /readyz."""
    text = _read("README.md")
    named = [p for p in OPS_PATHS if f"`{p}`" in text]
    assert named == list(OPS_PATHS), "the README's list of open paths changed: update OPS_PATHS"
    missing = [f"{s}: GET {p}" for s in SERVICES for p in named if not _answers(live_apps[s], "GET", p)]
    assert not missing, f"open paths the README promises that a service does not serve: {missing}"


def test_the_curl_examples_call_routes_that_exist(live_apps):
    """The README's `curl` lines, by port (8001 ledger, ...), with -d a POST."""
    missing, seen = [], 0
    for rel in README_FILES:
        text = _read(rel)
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for cmd in re.split(r"\n(?=curl )", block.replace("\\\n", " ")):
                if not cmd.startswith("curl "):
                    continue
                for host_port, path in re.findall(r"https?://([\w.]+:\d+)(/\S*)", cmd):
                    service = PORTS[host_port.rsplit(":", 1)[1]]
                    method = "POST" if re.search(r"\s-d\s|--data", cmd) else "GET"
                    seen += 1
                    if not _answers(live_apps[service], method, path.split("?")[0]):
                        missing.append(f"{rel}: {method} {path} on {service}")
    assert seen >= 3, "the README's curl examples were not found"
    assert not missing, f"curl examples calling routes that do not exist: {missing}"


# ------------------------------------------------------------------------------------------------ reason codes
class _CodeNames:
    """What the code of some directories can say: string constants (not docstrings), enum members, the regexes of
    f-strings with a literal part of their own, and every identifier."""

    def __init__(self, dirs: tuple[str, ...]):
        self.strings: set[str] = set()
        self.enum_members: set[str] = set()
        self.patterns: set[str] = set()
        self.identifiers: set[str] = set()
        for d in dirs:
            for path in sorted((ROOT / d).rglob("*.py")):
                strings, members, patterns, identifiers = _file_names(path)
                self.strings |= strings
                self.enum_members |= members
                self.patterns |= patterns
                self.identifiers |= identifiers
        self._rx = re.compile("|".join(f"(?:{p})" for p in sorted(self.patterns)) or "(?!)")

    def raises(self, code: str) -> bool:
        return code in self.strings or code in self.enum_members or bool(self._rx.fullmatch(code))

    def names(self, word: str) -> bool:
        return self.raises(word) or word in self.identifiers


@functools.cache
def _file_names(path: Path) -> tuple[frozenset, frozenset, frozenset, frozenset]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    strings, members, patterns, identifiers = set(), set(), set(), set()
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            docstrings.add(id(body[0].value))
        if isinstance(node, ast.ClassDef) and any("Enum" in ast.unparse(b) for b in node.bases):
            members.update(t.id for st in node.body if isinstance(st, ast.Assign)
                           for t in st.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            strings.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            literal = [v.value for v in node.values if isinstance(v, ast.Constant)]
            if any(re.search(r"[a-z]{2}", part) and "_" in part and " " not in part for part in literal):
                patterns.add("".join(re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z][a-z0-9_]*"
                                     for v in node.values))
        elif isinstance(node, ast.Name):
            identifiers.add(node.id)
        elif isinstance(node, ast.Attribute):
            identifiers.add(node.attr)
        elif isinstance(node, ast.arg):
            identifiers.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            identifiers.add(node.name)
    return frozenset(strings), frozenset(members), frozenset(patterns), frozenset(identifiers)


@functools.cache
def code_of(service: str | None) -> _CodeNames:
    return _CodeNames(("shared", f"services/{service}") if service else ("shared", "services", "ops"))


_SNAKE = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
# What puts a reason code right after it in the READMEs: an HTTP 4xx, a dead letter, a refusal, the word reason.
_TRIGGER = re.compile(r"(?:\b[45]\d\d\b|\breason\b|\bdead[- ]letter(?:ed)?(?: so| whole)?|\brefused(?: whole)?"
                      r"|\brefuses(?: its row| it)?|\bresult|\belse|\b[45]\d\d\b[^`.]{0,30}e\.g\.)\s*(?:\(\s*)?$")
# A block (paragraph, list item, table row) about dead letters: every code it quotes in a parenthesis is a reason.
_DEAD_LETTER_BLOCK = re.compile(r"dead[- ]lettered|dead[- ]letter\b(?!s)|dlq-reason|dlq list")


def _blocks(text: str):
    """(offset, text) of each paragraph, list item or table row."""
    pos = 0
    for piece in re.split(r"(\n\s*\n|\n(?=\s*(?:- |\| |\d+\. )))", text):
        yield pos, piece
        pos += len(piece)


def quoted_reasons() -> list[tuple[str, int, str | None, str]]:
    """(file, line, service, code) of each snake_case code in backticks that follows a 4xx status, a dead letter,
    a refusal or the word reason, of the codes listed after it (`a`, `b` or `c`; `a` / `b`), and of the codes in
    parentheses in a block about dead letters."""
    out = []
    for rel, service, text, first in doc_parts():
        for offset, block in _blocks(text):
            dead_letters = bool(_DEAD_LETTER_BLOCK.search(block))
            chain_end, chain_depth = -1, None
            for m in re.finditer(rf"`({_SNAKE})`", block):
                depth = block.count("(", 0, m.start()) - block.count(")", 0, m.start())
                opened = re.match(r"\s*\(", block[chain_end:]) if chain_depth is not None else None
                if opened and depth > chain_depth and block.count("(", chain_end, m.start()) > block.count(
                        ")", chain_end, m.start()):
                    continue  # inside a parenthesis right after a listed code: the list goes on after it
                before = " ".join(block[max(0, m.start() - 40):m.start()].split())
                gap = block[chain_end:m.start()]
                while re.search(r"\([^()]*\)", gap):
                    gap = re.sub(r"\([^()]*\)", "", gap)
                chained = chain_depth is not None and re.fullmatch(r"\s*(?:,|/|or|and|, or)\s*", gap)
                in_parens = dead_letters and depth > 0
                if _TRIGGER.search(before) or chained or in_parens:
                    chain_end, chain_depth = m.end(), depth
                    out.append((rel, first + _line(text, offset + m.start()) - 1, service, m.group(1)))
                else:
                    chain_end, chain_depth = -1, None
    return out


def test_reason_parsing_finds_the_quoted_codes():
    codes = {c for *_x, c in quoted_reasons()}
    assert {"amount_implausible", "date_implausible", "release_id_reused", "source_not_allowed", "malformed_json",
            "insufficient_scope", "policy_missing", "account_spec_invalid", "handler_db_error", "county_code_malformed",
            "insufficient_quota", "agreement_exists", "ledger_unavailable"} <= codes


def test_every_reason_code_the_readmes_quote_is_raised_by_that_service():
    """A reason quoted in a service's README (or its section of the top README) is raised by that service or by
    shared/; one quoted elsewhere by any service (or the operator CLI)."""
    missing = [f"{rel}:{line}: `{code}` ({service or 'any service'})" for rel, line, service, code in quoted_reasons()
               if not code_of(service).raises(code)]
    assert not missing, "reason codes the READMEs quote that the code never gives:\n" + "\n".join(missing)


# Names in backticks that are not the code's: PostgreSQL's tools, settings and views, Prometheus' own metric.
NOT_THE_CODES = {
    "countypool_ledger", "countypool_quota", "countypool_settlement", "countypool_assessment",  # database names
    # shared/settings.py builds as f"{url.database or 'countypool'}_{self.service}" (README, Backups)
    "max_prepared_statements",  # PgBouncer's setting (README, PgBouncer note)
    "pg_basebackup", "pg_dump", "pg_restore",  # PostgreSQL's backup tools (README, Backups and recovery)
    "pg_stat_activity",  # PostgreSQL's view (bench/README.md, e2e_load)
    "process_cpu_seconds_total",  # prometheus_client's own process metric (README, metrics table)
}


def test_every_snake_case_name_in_backticks_exists_in_the_code():
    """The weaker net under the reason codes: a field, a reason, a database name the READMEs quote is somewhere in
    services/, shared/ or ops/ (a metric of the table is checked below with its type)."""
    metrics = set(documented_metrics())
    missing = []
    for rel, _service, text, first in doc_parts():
        for m in re.finditer(rf"`({_SNAKE})`", text):
            word = m.group(1)
            if word in NOT_THE_CODES or word in metrics or code_of(None).names(word):
                continue
            missing.append(f"{rel}:{first + _line(text, m.start()) - 1}: `{word}`")
    assert not missing, "names the READMEs quote that no code has:\n" + "\n".join(sorted(set(missing)))


# ------------------------------------------------------------------------------------------------ settings
def _settings_fields(service: str) -> set[str]:
    from shared.settings import ServiceSettings

    module = importlib.import_module(f"services.{service}.main")
    return set(getattr(module, f"{service.capitalize()}Settings", ServiceSettings).model_fields)


def test_quotas_own_settings_list_names_fields_of_its_settings():
    """services/quota/README.md "Settings (`COUNTYPOOL_QUOTA_*`)" lists names without the prefix; each is a field
    of QuotaSettings (tests/test_review_operations.py holds only the top README's table to the settings)."""
    text = _read("services/quota/README.md")
    section = text[text.index("## Settings"):]
    section = section[:section.index("\n## ")]
    names = re.findall(r"`([A-Z][A-Z0-9_]+)`", section)
    assert len(names) >= 5
    fields = _settings_fields("quota")
    unknown = [f"COUNTYPOOL_QUOTA_{n}" for n in names if n.lower() not in fields]
    assert not unknown, f"services/quota/README.md names settings QuotaSettings has not: {unknown}"


@functools.cache
def _read_anywhere() -> str:
    """Every text that can read an environment variable: the Python of the project, its Makefile and scripts."""
    texts = [p.read_text(encoding="utf-8") for d in ("shared", "services", "ops", "tests", "bench")
             for p in (ROOT / d).rglob("*.py")]
    texts += [_read("Makefile"), _read(".ci/run")]
    texts += [p.read_text(encoding="utf-8") for p in (ROOT / "deploy").rglob("*.sh")]
    return "\n".join(texts)


def _is_read(name: str) -> bool:
    if "<SERVICE>" in name:
        return all(_is_read(name.replace("<SERVICE>", s.upper())) for s in SERVICES)
    for service in SERVICES:
        prefix = f"COUNTYPOOL_{service.upper()}_"
        if name.startswith(prefix) and name[len(prefix):].lower() in _settings_fields(service):
            return True
    text = _read_anywhere()
    return bool(re.search(rf"""["']{name}["']|\$\{{?{name}\b|\b{name}\s*\??[:?]?=""", text)) or \
        (name.startswith("COUNTYPOOL_") and name.endswith("_URL") and 'f"COUNTYPOOL_{service.upper()}_URL"' in text)


def test_every_environment_variable_the_readmes_name_is_read():
    """Beyond the settings table (tested elsewhere): `TEST_DATABASE_URL`, `COUNTYPOOL_EXTERNAL_KAFKA=1`,
    `TEST_WORKERS=N`, `COUNTYPOOL_TOKEN`, ... anywhere in the READMEs."""
    names = set()
    for rel in README_FILES:
        for span, _pos in spans(_read(rel)):
            names.update(re.findall(r"\b((?:COUNTYPOOL|KAFKA|TEST|PG|PYTEST|DEMO)_[A-Z0-9_<>]*[A-Z0-9>])\b", span))
    names = {n for n in names if not n.endswith("_") and "<FIELD" not in n}  # <FIELD>: the README's pattern
    assert {"TEST_DATABASE_URL", "COUNTYPOOL_EXTERNAL_KAFKA", "TEST_WORKERS", "PYTEST_ARGS"} <= names
    unread = sorted(n for n in names if not _is_read(n))
    assert not unread, f"variables the READMEs name that nothing reads: {unread}"


# ------------------------------------------------------------------------------------------------ metrics
def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) of the README's metrics table."""
    text = _read("README.md")
    start = text.index("| metric | type | labels | what |")
    rows = text[start:text.index("\n\n", start)].splitlines()[2:]
    out = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        names = re.findall(r"`([a-z_]+)`", cells[0])
        kinds = [k.strip() for k in cells[1].split(",")]
        labels = {w.strip() for w in re.sub(r"\([^()]*\)", "", cells[2]).split(",") if w.strip()}
        for i, name in enumerate(names):
            out[name] = (kinds[min(i, len(kinds) - 1)], labels)
    return out


_METRIC_CLASSES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary",
                   "CounterMetricFamily": "counter", "GaugeMetricFamily": "gauge",
                   "HistogramMetricFamily": "histogram", "SummaryMetricFamily": "summary"}


@functools.cache
def defined_metrics() -> dict[str, tuple[str, set[str]]]:
    """exported name -> (type, labels) of every metric constructed in services/ and shared/ (a counter `x` or
    `x_total` is exported as `x_total`)."""
    out = {}
    for d in ("shared", "services"):
        for path in (ROOT / d).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if fn not in _METRIC_CLASSES or not node.args or not isinstance(node.args[0], ast.Constant):
                    continue
                name, kind = node.args[0].value, _METRIC_CLASSES[fn]
                labels_node = node.args[2] if len(node.args) > 2 else next(
                    (k.value for k in node.keywords if k.arg in ("labelnames", "labels")), None)
                labels = set(ast.literal_eval(labels_node)) if labels_node is not None else set()
                if kind == "counter" and not name.endswith("_total"):
                    name += "_total"
                out[name] = (kind, labels)
    return out


def test_every_metric_of_the_readme_table_is_defined_with_its_type_and_labels():
    documented, defined = documented_metrics(), defined_metrics()
    assert len(documented) >= 30
    wrong = []
    for name, (kind, labels) in documented.items():
        if name not in defined:
            wrong.append(f"{name}: not defined in services/ or shared/")
        elif defined[name] != (kind, labels):
            wrong.append(f"{name}: README {kind} {sorted(labels)}, code {defined[name][0]} {sorted(defined[name][1])}")
    assert not wrong, "the README's metrics table against the code:\n" + "\n".join(wrong)


# ------------------------------------------------------------------------------------------------ make targets
def test_every_make_target_the_readmes_name_exists():
    targets = set()
    for line in _read("Makefile").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-][A-Za-z0-9_. -]*?)\s*:(?!=)", line)
        if m and not line.startswith((".PHONY", "\t")):
            targets.update(m.group(1).split())
    named = []
    for rel in README_FILES:
        text = _read(rel)
        for span, pos in spans(text):
            for m in re.finditer(r"\bmake((?: [a-z][\w-]*)+)", span):
                named += [(rel, _line(text, pos), t) for t in m.group(1).split()]
    assert len(named) >= 10
    missing = [f"{rel}:{line}: make {t}" for rel, line, t in named if t not in targets]
    assert not missing, f"make targets the READMEs name that the Makefile has not: {missing}"


# ------------------------------------------------------------------------------------------------ command flags
def _flags_of(path: Path) -> set[str]:
    calls = re.findall(r"add_argument\(([^)]*)\)", path.read_text(encoding="utf-8"))
    return {f for c in calls for f in re.findall(r"""["'](--?[\w-]+)["']""", c.split("=")[0])}


def test_the_cli_and_demo_flags_the_readme_shows_exist():
    text = _read("README.md")
    cli = text[text.index("## The operator CLI"):]
    cli = cli[:cli.index("\n## ")]
    cli_flags = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-o)\b", cli))
    demo_flags = set(re.findall(r"(--[a-z][\w-]*)", re.search(r"DEMO_ARGS=\"[^\"]*\"", text).group(0)))
    demo_flags |= set(re.findall(r"(--[a-z][\w-]*)", re.search(r"## demo:.*\n##.*\n", _read("Makefile")).group(0)))
    missing = sorted({f"countypool {f}" for f in cli_flags - _flags_of(ROOT / "ops" / "cli.py")}
                     | {f"ops.demo {f}" for f in demo_flags - _flags_of(ROOT / "ops" / "demo.py")})
    assert not missing, f"flags the README shows that the commands do not take: {missing}"


def test_the_benchmark_options_bench_readme_lists_exist():
    """bench/README.md: each `## <script>.py` section's --options (and those of its command lines) are the
    script's own."""
    text = _read("bench/README.md")
    missing = []
    for m in re.finditer(r"^## (\w+\.py)\n(.*?)(?=^## |\Z)", text, re.S | re.M):
        script = ROOT / "bench" / m.group(1)
        own = _flags_of(script)
        if script.name == "replay.py":
            own |= {"--help"}
        for flag in sorted(set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", m.group(2)))):
            if flag not in own:
                missing.append(f"bench/{m.group(1)}: {flag}")
    assert not missing, f"options bench/README.md lists that the scripts do not take: {missing}"


# ------------------------------------------------------------------------------------------------ file paths
_EXT = (".py", ".json", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".ini", ".cfg")


def _path_candidates(rel: str):
    text = _read(rel)
    base = (ROOT / rel).parent
    found = [(s, p) for s, p in spans(text)]
    found += [(m.group(1), m.start(1)) for m in re.finditer(r"\]\(([^)#\s]+)\)", text)]  # markdown links
    for block in re.finditer(r"```\n(.*?)```", text, re.S):  # a tree of the folder: `name/   what it holds`
        for line in re.finditer(r"^(\S+(?:/|\.py))\s{2,}", block.group(1), re.M):
            found.append((line.group(1), block.start(1) + line.start(1)))
    for block in re.finditer(r"```(?:sh)?\n(.*?)```", text, re.S):  # scripts the command lines run
        for m in re.finditer(r"(?:^|\s)((?:bench|ops|tests)/[\w/]+\.py)\b", block.group(1)):
            found.append((m.group(1), block.start(1) + m.start(1)))
    for m in re.finditer(r"(?<![\w/.`<-])((?:[\w-]+/)+[\w<>-]+\.(?:py|json|md|yaml|yml|sh))\b", text):
        found.append((m.group(1), m.start(1)))  # named in prose, e.g. (application/allocations.py)
    for block in re.finditer(r"```\n(.*?)```", text, re.S):  # the files of a folder tree: `storage/  tables.py`
        found += [(m.group(1), block.start(1) + m.start(1)) for m in re.finditer(r"\b(\w+\.py)\b", block.group(1))]
    for s, pos in found:
        s = re.sub(r"(\.py):\w+$", r"\1", s)  # bench/replay_<service>.py:write_events
        s = s.split()[0] if s.split() and "/" in s.split()[0] or s.endswith(_EXT) else s
        s = s.rstrip(".,;:)")
        if not re.fullmatch(r"[\w.<>*-]+(?:/[\w.<>*-]*)*", s) or s.startswith(("/", "~")) or ":" in s:
            continue
        head = s.split("/")[0]
        if "/" in s and not ((ROOT / head).exists() or (base / head).exists()) and not s.endswith(_EXT):
            continue  # an account address, a transfer id, a topic: not a path
        if "/" not in s and not s.endswith(_EXT):
            continue
        if s.startswith((".data", ".venv")) or s.endswith(".dlq"):
            continue  # made at run time
        yield s, _line(text, pos), base


def _exists(path: str, base: Path) -> bool:
    names = {path}
    for placeholder in ("<service>", "<name>"):
        if placeholder in path:
            names = {n.replace(placeholder, s) for n in names for s in SERVICES}
    def one(p: str) -> bool:
        if any(ch in p for ch in "*<>"):
            pat = re.sub(r"<[^>]*>", "*", p)
            return any(base.glob(pat)) or any(ROOT.glob(pat))
        if "/" not in p.rstrip("/"):  # a bare file name: anywhere under the README's folder
            return any(x for x in base.rglob(p) if ".venv" not in x.parts)
        return (base / p).exists() or (ROOT / p).exists()
    return all(one(n) for n in names)


def test_every_file_path_the_readmes_name_exists():
    missing, seen = [], 0
    for rel in README_FILES:
        for path, line, base in _path_candidates(rel):
            seen += 1
            if not _exists(path, base):
                missing.append(f"{rel}:{line}: {path}")
    assert seen >= 40, seen
    assert not missing, "paths the READMEs name that do not exist:\n" + "\n".join(sorted(set(missing)))

"""Review of the commands a county engineer copies from the documentation (README.md, services/*/README.md,
bench/README.md, deploy/k8s/README.md), held to the code that runs them. The documents are parsed, so a later edit
of either side is held too.

tests/test_review_docs_dec01.py already holds the endpoints, reason codes, metrics, make targets, file paths and
that each flag *exists somewhere* in a script; tests/test_review_operations.py the settings table both ways. What
is added here:

- every `countypool ...` line and every `bench/*.py ...` line is parsed by the real argparse parser of that
  command (subcommand, positional choices, the flag under *that* subcommand, its value), run as the engineer runs
  it (`.venv/bin/python bench/x.py ...`, `python -m ops.demo ...`), stopped right after parsing;
- the benchmarks the README's performance table sends the reader to bench/README.md for have a section there, and
  every `replay_<service>.py` runs alone as bench/README.md says;
- the defaults the settings table gives are the settings' defaults;
- the deploy scripts handle every subcommand the docs, the Makefile and .ci/run call, and the variables their
  headers document; deploy/k8s/README.md's paths, kustomize directories, Secrets, variables and figures;
- live: the README's "Try it" curl lines against a ledger started as `python -m services.ledger.main`, then
  `countypool verify` against it; `countypool dlq list` and `countypool lag` against a running service that
  dead-lettered a department's bad message, with the exit status and output the README describes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = ROOT / ".venv" / "bin" / "python"
COUNTYPOOL = ROOT / ".venv" / "bin" / "countypool"
SERVICES = ("ledger", "quota", "settlement", "assessment")
DOCS = ("README.md", "services/quota/README.md", "services/settlement/README.md", "bench/README.md",
        "deploy/k8s/README.md")


def _read(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _code_blocks(text: str):
    """(offset, body) of each fenced block."""
    for m in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S):
        yield m.start(1), m.group(1)


def _spans(text: str):
    for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", text):
        yield m.start(1), m.group(1).strip()


# ------------------------------------------------------------------------------ argparse, stopped after parsing
class _Parsed(Exception):
    def __init__(self, parser, namespace):
        super().__init__("parsed")
        self.parser, self.namespace = parser, namespace


@pytest.fixture
def parse_only(monkeypatch):
    """In-process: ``ArgumentParser.parse_args`` parses, then stops the program with the result."""
    original = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise _Parsed(self, original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)


def _cli_parse(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """(namespace, '') or (None, argparse's complaint) of `countypool argv` (parse_only in force)."""
    import contextlib
    import io

    from ops.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(argv)
    except _Parsed as p:
        return p.namespace, ""
    except SystemExit as e:
        return None, f"exit {e.code}: {err.getvalue().strip().splitlines()[-1:] or ''}"
    return None, "ran without parsing"


_PROBE = '''
import argparse, json, os, sys
_original = argparse.ArgumentParser.parse_args
def _stop(self, args=None, namespace=None):
    ns = _original(self, args, namespace)
    sys.stdout.write("PARSED " + json.dumps({k: str(v) for k, v in vars(ns).items()}) + "\\n")
    sys.stdout.flush()
    os._exit(0)
argparse.ArgumentParser.parse_args = _stop
'''


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    """A sitecustomize that stops any Python program right after its arguments are parsed (printing them)."""
    d = tmp_path_factory.mktemp("argv-probe")
    (d / "sitecustomize.py").write_text(_PROBE)
    return d


def _run_parsed(probe: Path, argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(probe))
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------ countypool invocations
PLACEHOLDERS = {"FILE": "indicators.csv", "SERVICE": "quota", "TOPIC": "countypool.intake.quota", "N": "1",
                "T": "some-token", "COUNTY": "320612", "PERIOD": "2026-03", "R": "source_not_allowed",
                "D": "tax", "Y": "2025"}


def _expand(words: list[str], fill: bool = True) -> list[list[str]]:
    """`[--from-seq N]` with and without, `run|finalize` each, placeholders filled."""
    out: list[list[str]] = [[]]
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("["):
            j = i
            while not words[j].endswith("]"):
                j += 1
            opt = " ".join(words[i:j + 1])[1:-1].split()
            out = [o + x for o in out for x in [[]] + _expand(opt, fill=False)]
            i = j + 1
            continue
        alts = w.split("|") if "|" in w and not w.startswith("-") else [w]
        out = [o + [a] for o in out for a in alts]
        i += 1
    return [[PLACEHOLDERS.get(w, w) for w in o] for o in out] if fill else out


# what a mention of a subcommand (and its action) leaves out, for the parser
REST_OF = {"dlq": ["{}", "t"], "settlement": ["{}", "320612", "2026-03"], "replay": ["{}"],
           "import": ["{}", "f.csv", "--kind", "indicators"]}
FIRST_ACTION = {"dlq": "list", "settlement": "run", "replay": "quota", "import": "assessment"}


def countypool_invocations() -> list[tuple[str, int, list[str], bool]]:
    """(file, line, argv after `countypool`, full) of each invocation: a command-block line is a full command
    line; an inline `countypool x ...` span is one when it has more than the subcommand (else only the
    subcommand is held)."""
    found = []
    for rel in DOCS:
        text = _read(rel)
        for off, block in _code_blocks(text):
            for m in re.finditer(r"^countypool (.*)$", block, re.M):
                cmd = m.group(1).split("#")[0].split()
                found.append((rel, _line(text, off + m.start()), cmd, True))
        for pos, span in _spans(text):
            if span.startswith("countypool "):
                words = span.split()[1:]
                full = any(w.startswith("-") or w in PLACEHOLDERS for w in words) or words in (["lag"], ["verify"])
                found.append((rel, _line(text, pos), words, full))
    # `countypool --help` prints ops/cli.py's docstring: its usage lines are documentation too
    import ops.cli

    for i, ln in enumerate((ops.cli.__doc__ or "").splitlines()):
        m = re.match(r"^  countypool (.*?)(?:\s{2,}.*)?$", ln)
        if m:
            found.append(("ops/cli.py docstring", i + 1, m.group(1).split(), True))
    return found


def test_parsing_finds_the_documented_cli_invocations():
    """Guards the parser: the README's CLI block (8 lines) and its inline mentions are read."""
    inv = countypool_invocations()
    assert sum(1 for *_x, full in inv if full) >= 10
    assert {w[0] for _r, _l, w, _f in inv if not w[0].startswith("-")} >= {
        "import", "verify", "replay", "lag", "dlq", "settlement"}


def test_every_countypool_line_of_the_docs_parses_with_the_real_cli(parse_only):
    """An engineer copies `countypool settlement export 320612 2026-03 --format xlsx --headers zh` or
    `countypool --token T verify`: each line (every alternative, with and without its optional flags) must be
    accepted by ops.cli's parser and land on the subcommand it names, or the engineer meets a usage error at the
    moment they need the tool (after a restore, at month end)."""
    wrong = []
    for rel, line, words, full in countypool_invocations():
        for argv in _expand(words) if full else [words]:
            if full:
                ns, why = _cli_parse(argv)
                if ns is None:
                    wrong.append(f"{rel}:{line}: countypool {' '.join(argv)} -> {why}")
                    continue
                named = next(w for w in argv if not w.startswith("-") and w != PLACEHOLDERS["T"])
                if ns.command != named:
                    wrong.append(f"{rel}:{line}: countypool {' '.join(argv)} ran {ns.command}, not {named}")
            else:  # a mention (`countypool dlq list`, `countypool import`): the rest filled in as the CLI needs it
                sub, action = argv[0], (argv[1:] or [None])[0]
                filled = [sub] + [a.format(action or FIRST_ACTION.get(sub, "")) for a in REST_OF[sub]] \
                    if sub in REST_OF else argv
                ns, why = _cli_parse(filled)
                if ns is None:
                    wrong.append(f"{rel}:{line}: `countypool {' '.join(argv)}` -> {why}")
    assert not wrong, "documented countypool invocations the CLI refuses:\n" + "\n".join(wrong)


def test_the_cli_sections_subcommand_actions_are_the_parsers_choices(parse_only):
    """The README's CLI prose names `dlq redrive`, `dlq list`, `settlement run`: each pair is a subcommand and an
    action its parser offers."""
    text = _read("README.md")
    section = text[text.index("## The operator CLI"):]
    section = section[:section.index("\n## ")]
    pairs = {tuple(s.split()) for _p, s in _spans(section)
             if re.fullmatch(r"(dlq|settlement|replay|import) [a-z]+", s)}
    assert len(pairs) >= 3, pairs
    argv_for = REST_OF
    wrong = []
    for sub, action in sorted(pairs):
        ns, why = _cli_parse([sub] + [a.format(action) for a in argv_for[sub]])
        if ns is None:
            wrong.append(f"`{sub} {action}`: {why}")
    assert not wrong, f"actions the README's CLI section names that the parser refuses: {wrong}"


def test_the_installed_countypool_entry_point_is_the_documented_cli(probe_dir):
    """README: `pip install -e .` puts `countypool` in `.venv/bin`. The documented line must parse there too."""
    assert COUNTYPOOL.exists(), "no .venv/bin/countypool"
    r = _run_parsed(probe_dir, [str(COUNTYPOOL), "--token", "t", "verify", "--from-seq", "5"])
    assert r.stdout.startswith("PARSED "), r.stderr
    parsed = json.loads(r.stdout[len("PARSED "):])
    assert parsed["command"] == "verify" and parsed["from_seq"] == "5" and parsed["token"] == "t"


# ------------------------------------------------------------------------------ demo, bench
def test_the_demo_arguments_the_readme_and_makefile_give_parse(probe_dir):
    """`make demo DEMO_ARGS="--size tiny --stop"` and the Makefile's `(--seed N, --keep-data, --county-code C)`,
    run as the Makefile runs them ($(PY) -m ops.demo $(DEMO_ARGS)), stopped after parsing."""
    demo_args = re.search(r'DEMO_ARGS="([^"]*)"', _read("README.md")).group(1).split()
    extra = re.search(r"\((--seed N, --keep-data, --county-code C)\)", _read("Makefile"))
    assert extra, "the Makefile's demo comment changed"
    argv = demo_args + ["--seed", "7", "--keep-data", "--county-code", "320612"]
    r = _run_parsed(probe_dir, [str(PY), "-m", "ops.demo", *argv])
    assert r.stdout.startswith("PARSED "), r.stderr[-500:]
    parsed = json.loads(r.stdout[len("PARSED "):])
    assert parsed["size"] == "tiny" and parsed["stop"] == "True" and parsed["keep_data"] == "True"


def bench_command_lines() -> list[tuple[int, list[str]]]:
    """(line, argv) of each command line of bench/README.md's blocks and spans that runs a bench script."""
    text = _read("bench/README.md")
    out = []
    for off, block in _code_blocks(text):
        for m in re.finditer(r"^(?:\.venv/bin/)?python (bench/\w+\.py.*)$", block, re.M):
            out.append((_line(text, off + m.start()), m.group(1).split("#")[0].split()))
    for pos, span in _spans(text):
        m = re.fullmatch(r"python (bench/\w+\.py.*)", span)
        if m:
            out.append((_line(text, pos), m.group(1).split()))
    # a section's `--option value` spans: options of that section's script with a value it accepts
    for m in re.finditer(r"^## (\w+\.py)\n(.*?)(?=^## |\Z)", text, re.S | re.M):
        for pos, span in _spans(m.group(2)):
            if re.fullmatch(r"--[a-z][\w-]* \S+(?: --[a-z][\w-]* \S+)*", span):
                argv = [PLACEHOLDERS.get(w, w) for w in span.split()]
                out.append((_line(text, m.start(2) + pos), [f"bench/{m.group(1)}", *argv]))
    return out


def test_every_bench_command_line_parses_with_its_scripts_parser(probe_dir):
    """`.venv/bin/python bench/replay.py --events 200000 --services quota`, `--kafka-topics shared`, ...: run as
    written from the repository root, each is accepted by the script's own parser (a wrong choice or a flag of
    another script costs a benchmark run that stops at once, or, for `--help`, prints nothing)."""
    lines = bench_command_lines()
    assert len(lines) >= 10, lines

    def one(item):
        line, argv = item
        r = _run_parsed(probe_dir, [str(PY), *argv])
        ok = r.stdout.startswith("PARSED ") or ("--help" in argv and r.returncode == 0 and "usage:" in r.stdout)
        return None if ok else f"bench/README.md:{line}: {' '.join(argv)} -> exit {r.returncode}, " \
                               f"stdout {r.stdout[:80]!r}, stderr {r.stderr.strip()[-200:]!r}"

    with ThreadPoolExecutor(4) as pool:
        wrong = [w for w in pool.map(one, lines) if w]
    assert not wrong, "bench/README.md command lines their scripts do not take:\n" + "\n".join(wrong)


def test_each_replay_script_runs_alone_as_bench_readme_says(probe_dir):
    """bench/README.md, replay.py: "Each `replay_<service>.py` also runs alone (`python bench/replay_quota.py
    --help`)". An engineer replaying one service's 1M events runs that script: one that has no entry point does
    nothing at all and exits 0, so the benchmark looks like it ran."""
    text = _read("bench/README.md")
    assert "Each\n`replay_<service>.py` also runs alone" in text or "Each `replay_<service>.py` also runs alone" in \
        " ".join(text.split())
    silent = []
    for service in SERVICES:
        r = _run_parsed(probe_dir, [str(PY), f"bench/replay_{service}.py", "--help"])
        if "usage:" not in r.stdout:
            silent.append(f"bench/replay_{service}.py --help: exit {r.returncode}, printed {r.stdout[:60]!r}")
    assert not silent, "replay scripts that do not run alone:\n" + "\n".join(silent)


def test_every_benchmark_of_the_readme_table_has_its_how_to_run_in_bench_readme():
    """README "Performance": "Benchmarks live in `bench/` ... (how to run each: `bench/README.md`)". Each script of
    the performance table then needs its section in bench/README.md (`## <script>.py`: command lines, options, what
    it prints); without it, the figures the README quotes (the assessment goal, the settlement year, the soak) cannot
    be reproduced by the county's engineer."""
    text = _read("README.md")
    perf = text[text.index("## Performance"):]
    assert "how to run each: `bench/README.md`" in perf
    table = perf[perf.index("| benchmark |"):]
    table = table[:table.index("\n\n")]
    scripts = sorted(set(re.findall(r"`(\w+\.py)`", table)))
    assert len(scripts) >= 6, scripts
    sections = set(re.findall(r"^## (\w+\.py)$", _read("bench/README.md"), re.M))
    missing = [s for s in scripts if s not in sections and (ROOT / "bench" / s).exists()]
    assert not missing, f"benchmarks of the README's table with no how-to-run section in bench/README.md: {missing}"


# ------------------------------------------------------------------------------ settings defaults
def _settings(service: str):
    import importlib

    from shared.settings import load_settings

    module = importlib.import_module(f"services.{service}.main")
    cls = getattr(module, f"{service.capitalize()}Settings", None)
    return load_settings(service, cls) if cls else load_settings(service)


_LITERAL = r"`?(?:-?\d[\d_]*(?:\.\d+)?|true|false|[A-Z]+)`?"


def test_the_defaults_of_the_settings_table_are_the_settings_defaults(monkeypatch):
    """The README's `| variable | meaning (default) |` rows give defaults in parentheses, one per variable of the
    row ("(2000); ... (0.05); ... (`true`)", "(3, 1)"). A county that leaves a variable unset gets the code's value:
    it must be the one it read."""
    for name in list(os.environ):
        if name.startswith("COUNTYPOOL_") or name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
            monkeypatch.delenv(name, raising=False)
    text = _read("README.md")
    table = text[text.index("| variable | meaning (default) |"):]
    table = table[:table.index("\n\n")]
    checked, wrong = 0, []
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z_<>]+)`", cells[0])
        if not names or not names[0].startswith("COUNTYPOOL_"):
            continue
        prefix = names[0][:names[0].index("_", len("COUNTYPOOL_")) + 1] if "<" not in names[0] else \
            "COUNTYPOOL_<SERVICE>_"
        full = [prefix + n[1:] if n.startswith("_") else n for n in names]
        groups = re.findall(rf"\(({_LITERAL}(?:, {_LITERAL})*)\)", cells[1])
        values = [v.strip().strip("`") for g in groups for v in g.split(",")]
        if len(values) != len(full):
            continue
        for var, value in zip(full, values):
            for service in SERVICES:
                if not (var.startswith(f"COUNTYPOOL_{service.upper()}_") or "<SERVICE>" in var):
                    continue
                field = var.split("_", 2)[2].lower()
                st = _settings(service)
                if field not in type(st).model_fields:
                    continue
                actual = getattr(st, field)
                checked += 1
                expect = {"true": True, "false": False}.get(value, value)
                if isinstance(actual, bool) or isinstance(expect, bool):
                    same = actual == expect
                elif isinstance(actual, (int, float)):
                    same = float(actual) == float(value.replace("_", ""))
                else:
                    same = str(actual) == value
                if not same:
                    wrong.append(f"{var.replace('<SERVICE>', service.upper())}: README {value}, code {actual!r}")
    assert checked >= 20, checked
    assert not wrong, "defaults the README's settings table gives that the settings do not have:\n" + "\n".join(wrong)


# ------------------------------------------------------------------------------ deploy scripts
def _script_cases(script: str) -> set[str]:
    text = _read(script)
    body = text[text.rindex('case "${1:-}" in'):]
    return {alt for m in re.finditer(r"^\s+([\w|-]+)\)", body, re.M) for alt in m.group(1).split("|")}


def test_every_deploy_script_subcommand_called_is_handled():
    """README, Makefile and .ci/run call `deploy/kafka/kafka.sh start|stop|install`, `deploy/postgres/postgres.sh
    start|stop|install`; each script's usage line lists its subcommands. Each must be a branch of its `case` (an
    unknown one prints the usage and exits 2: `make test` would stop before any test ran)."""
    called: list[tuple[str, str, str]] = []
    sources = {rel: _read(rel) for rel in (*DOCS, "Makefile", ".ci/run")}
    for rel, text in sources.items():
        for m in re.finditer(r"(deploy/(?:kafka/kafka|postgres/postgres)\.sh) ([a-z]+)", text):
            called.append((rel, m.group(1), m.group(2)))
    assert {(s, c) for _r, s, c in called} >= {("deploy/kafka/kafka.sh", "start"),
                                                ("deploy/postgres/postgres.sh", "start")}
    wrong = [f"{rel}: {script} {cmd}" for rel, script, cmd in called if cmd not in _script_cases(script)]
    for script in ("deploy/kafka/kafka.sh", "deploy/postgres/postgres.sh"):
        usage = re.search(r"^# Usage: \S+ \{([^}]*)\}", _read(script), re.M).group(1).split("|")
        wrong += [f"{script} usage: {u}" for u in usage if u not in _script_cases(script)]
    assert not wrong, f"deploy script subcommands called or documented but not handled: {wrong}"


@pytest.mark.parametrize("script", ["deploy/kafka/kafka.sh", "deploy/postgres/postgres.sh"])
def test_the_variables_a_deploy_script_documents_are_the_ones_it_reads(script):
    """Each script's header lists its environment (`KAFKA_PORT=9092 ...`, `PG_PORT=55432 ...`) and the Makefile
    exports KAFKA_PORT / PG_PORT to them: each documented variable must be read with that default."""
    text = _read(script)
    header = text[text.index("# Environment"):text.index("set -euo pipefail")]
    documented: dict[str, str] = {}
    for name, value in re.findall(r"\b([A-Z][A-Z0-9_]+)=(\"[^\"]*\"|\S*)", header):
        if value or name not in documented and re.search(rf"{name}=\"", header):
            documented.setdefault(name, value)  # the first mention gives the default; `X=` at a line's end is prose
    assert len(documented) >= 5
    wrong = []
    for name, default in documented.items():
        if not re.search(rf"\$\{{{name}:-", text):
            wrong.append(f"{name}: documented, never read as ${{{name}:-...}}")
            continue
        m = re.search(rf'^\s*\w+="\$\{{{name}:-(.*)\}}"\s*(?:#.*)?$', text, re.M)
        default = default.strip('"')
        if m and default and "<" not in default and "$" not in default and m.group(1) != default:
            wrong.append(f"{name}: header {default!r}, script {m.group(1)!r}")
    makefile = _read("Makefile")
    for name in re.findall(r"^export ([A-Z_]+) \?=", makefile, re.M):
        if name.startswith(("KAFKA_PORT", "PG_PORT")) and name.split("_")[0].lower() in script and \
                name not in documented:
            wrong.append(f"Makefile exports {name}, {script} does not document it")
    assert not wrong, f"{script}: {wrong}"


def test_postgres_sh_url_is_the_readmes_default_test_database_url():
    """README: `TEST_DATABASE_URL` defaults to `postgresql+psycopg://countypool:countypool@127.0.0.1:55432/
    countypool_test`, the server `deploy/postgres/postgres.sh start` makes; `postgres.sh url DB` prints that
    server's URL. Both must agree, or `make test` on a fresh machine looks for a database nobody created."""
    readme = " ".join(_read("README.md").split())
    default = re.search(r"default `(postgresql\+psycopg://[^`]+/countypool_test)`", readme).group(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG_")}
    r = subprocess.run(["deploy/postgres/postgres.sh", "url", "countypool_test"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == default
    assert "countypool_test" in re.search(r'PG_DATABASES="\$\{PG_DATABASES:-([^}]*)\}"',
                                          _read("deploy/postgres/postgres.sh")).group(1)


# ------------------------------------------------------------------------------ deploy/k8s/README.md
K8S = ROOT / "deploy" / "k8s"


def _k8s_docs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((str(path.relative_to(K8S)), doc))
    return out


def test_k8s_readme_paths_and_kustomize_directories_exist():
    """deploy/k8s/README.md's install steps: every file it names exists (beside it or from the repository root), and
    every `kubectl apply -k DIR` names a directory with a kustomization.yaml, `kubectl apply -f FILE` a file."""
    text = _read("deploy/k8s/README.md")
    missing, seen = [], 0
    for pos, span in _spans(text):
        for m in re.finditer(r"kubectl apply -([kf]) (\S+)", span):
            seen += 1
            target = m.group(2)
            base = next((b for b in (K8S / target, ROOT / target) if b.exists()), None)
            if base is None or (m.group(1) == "k" and not (base / "kustomization.yaml").exists()):
                missing.append(f"line {_line(text, pos)}: kubectl apply -{m.group(1)} {target}")
        for m in re.finditer(r"^((?:\./)?[\w.-]+/[\w./-]*|[\w.-]+\.ya?ml)$", span):
            p = m.group(1)
            head = p.lstrip("./").split("/")[0]
            if not ((K8S / head).exists() or (ROOT / head).exists()):
                continue  # a label (app.kubernetes.io/name), not a path
            seen += 1
            if (K8S / p).exists() or (ROOT / p).exists():
                continue
            fn = re.fullmatch(r"(.+)\.(\w+)", p)  # shared/kafka_admin.ensure_topics: a module's function
            if fn and (ROOT / f"{fn.group(1)}.py").exists() and \
                    re.search(rf"^def {fn.group(2)}\b", (ROOT / f"{fn.group(1)}.py").read_text(), re.M):
                continue
            missing.append(f"line {_line(text, pos)}: {p}")
    assert seen >= 10, seen
    assert not missing, "deploy/k8s/README.md names what does not exist:\n" + "\n".join(missing)


def test_k8s_readme_secrets_variables_and_figures_match_the_manifests():
    """What deploy/k8s/README.md tells the operator to create and to expect is what the manifests use: the Secrets
    and their keys, the COUNTYPOOL_* variables (settings that exist), enableServiceLinks off in every Deployment,
    the image, 3 Kafka nodes with RF 3 and min ISR 2, 12 partitions on intake and event topics read by the services and
    6 on the ledger's commands, and each pod's 20 connections (pool 10 + overflow 10, shared/db.py)."""
    import inspect

    from shared.db import make_engine

    text = " ".join(_read("deploy/k8s/README.md").split())
    docs = _k8s_docs()
    wrong = []
    secrets = {d["metadata"]["name"]: set((d.get("stringData") or d.get("data") or {}))
               for _f, d in docs if d["kind"] == "Secret"}
    named = re.search(r"\*\*Secrets\*\* `countypool-databases` \(`([^`]+)`\) and `countypool-auth` \(([^)]*)\)", text)
    assert named, "the README's Secrets step changed"
    for s in SERVICES:
        if named.group(1).replace("<NAME>", s.upper()) not in secrets.get("countypool-databases", set()):
            wrong.append(f"countypool-databases lacks {named.group(1).replace('<NAME>', s.upper())}")
    for key in re.findall(r"`([^`]+)`", named.group(2)):
        if key not in secrets.get("countypool-auth", set()):
            wrong.append(f"countypool-auth lacks {key}")
    if "countypool-kafka" not in secrets:
        wrong.append("no Secret countypool-kafka")
    # every variable it names is a setting (or a variable the Kafka clients read)
    from tests.test_review_operations import is_known_variable

    for var in sorted(set(re.findall(r"`((?:COUNTYPOOL|KAFKA)_[A-Z0-9_<>]+)`", text))):
        forms = [var.replace("<NAME>", s.upper()).replace("<SERVICE>", s.upper()) for s in SERVICES] \
            if "<" in var else [var]
        if not all(is_known_variable(f) for f in forms):
            wrong.append(f"`{var}` is no setting")
    deployments = [d for _f, d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 4
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        if spec.get("enableServiceLinks") is not False:
            wrong.append(f"{d['metadata']['name']}: enableServiceLinks not false")
        image = re.search(r"image `([^`]+)`", text).group(1)
        if spec["containers"][0]["image"] != image:
            wrong.append(f"{d['metadata']['name']}: image {spec['containers'][0]['image']}, README {image}")
    pool = next(d for _f, d in docs if d["kind"] == "KafkaNodePool")
    kafka = next(d for _f, d in docs if d["kind"] == "Kafka")
    if pool["spec"]["replicas"] != 3 or kafka["spec"]["kafka"]["config"]["default.replication.factor"] != 3 \
            or kafka["spec"]["kafka"]["config"]["min.insync.replicas"] != 2:
        wrong.append("Kafka is not 3 nodes, RF 3, min ISR 2")
    topics = {d["spec"].get("topicName", d["metadata"]["name"]): d["spec"]["partitions"]
              for _f, d in docs if d["kind"] == "KafkaTopic"}
    m = re.search(r"\((\d+) for intake and event topics, (\d+) for `countypool.ledger.commands`\)", text)
    from shared.contracts import topics as contract_topics

    consumed = {t for name in dir(contract_topics) if name.isupper()
                for t in [getattr(contract_topics, name)] if isinstance(t, str) and t.startswith("countypool.")}
    read_by_services = {t for t in consumed if not t.endswith(".dlq") and t != "countypool.settlement.events"}
    for t in sorted(read_by_services):
        want = int(m.group(2)) if t == "countypool.ledger.commands" else int(m.group(1))
        if topics.get(t) != want:
            wrong.append(f"{t}: {topics.get(t)} partitions, README {want}")
    pm = re.search(r"each pod opens up to (\d+) \(pool (\d+) \+ overflow (\d+)\)", text)
    size = inspect.signature(make_engine).parameters["pool_size"].default
    src = inspect.getsource(make_engine)
    if not (int(pm.group(2)) == size and "max_overflow=pool_size" in src and int(pm.group(1)) == 2 * size):
        wrong.append(f"connections: README {pm.group(0)}, shared/db.py pool_size {size}")
    assert not wrong, "deploy/k8s/README.md against the manifests and code:\n" + "\n".join(wrong)


# ------------------------------------------------------------------------------ live: curl, verify
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ledger_process(tmp_path, kafka_bootstrap):
    """The ledger as `make run` starts it (python -m services.ledger.main), on its own port and SQLite file;
    consumer and relay off (nothing of it reaches the shared topics)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTYPOOL_") and k != "DATABASE_URL"}
    env.update(COUNTYPOOL_LEDGER_PORT=str(port), COUNTYPOOL_LEDGER_DATABASE_URL=f"sqlite:///{tmp_path}/ledger.sqlite3",
               COUNTYPOOL_LEDGER_CONSUMER_ENABLED="false", COUNTYPOOL_LEDGER_RELAY_ENABLED="false",
               COUNTYPOOL_AUTH_TOKENS_FILE=str(ROOT / "deploy" / "dev-tokens.json"),
               KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    log = open(tmp_path / "ledger.log", "wb")
    proc = subprocess.Popen([str(PY), "-m", "services.ledger.main"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "ledger.log").read_text()[-2000:])
            time.sleep(0.2)
        yield port, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _readme_curls() -> list[str]:
    text = _read("README.md")
    block = text[text.index("Try it:"):]
    block = block[block.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [c.strip() for c in re.split(r"\n(?=curl )", block) if c.startswith("curl ")]


def test_the_readmes_try_it_lines_and_countypool_verify_work_against_a_running_ledger(ledger_process, tmp_path):
    """README "Try it" (open two accounts, move 12.5 COD, read the pool's balance), run as written but for the port,
    then "After a restore, check: `countypool verify` (the ledger's hash chain)" against the same ledger through
    COUNTYPOOL_LEDGER_URL: exit 0 and one line saying how many entries verify; `--token T` before the command is
    the token used (a wrong one: exit 2 and the service's reason, not a traceback)."""
    port, url = ledger_process
    curls = _readme_curls()
    assert len(curls) == 3
    answers = []
    for cmd in curls:
        cmd = cmd.replace("127.0.0.1:8001", f"127.0.0.1:{port}")
        r = subprocess.run(["bash", "-c", cmd + " -w '\\n%{http_code}'"], capture_output=True, text=True, timeout=30)
        body, _, status = r.stdout.rpartition("\n")
        assert r.returncode == 0 and status == "200", (cmd, r.stdout, r.stderr)
        answers.append(json.loads(body))
    assert answers[0]["ok"] is True and len(answers[0]["results"]) == 2, answers[0]
    assert answers[1]["ok"] is True and [r["id"] for r in answers[1]["results"]] == ["rel-1"], answers[1]
    balance = answers[2]
    assert balance["account_id"] == "county:320612/pool/COD" and "12.5" in {str(v).rstrip("0") for v in
                                                                           balance.values()}, balance

    env = {k: v for k, v in os.environ.items() if k not in ("COUNTYPOOL_TOKEN",)}
    env["COUNTYPOOL_LEDGER_URL"] = url
    r = subprocess.run([str(COUNTYPOOL), "verify"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"journal verifies: (\d+) entries from seq 1 \(head (\d+)\)", r.stdout.strip())
    assert m and int(m.group(1)) == int(m.group(2)) >= 1, r.stdout
    r = subprocess.run([str(COUNTYPOOL), "verify", "--from-seq", m.group(2)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.fullmatch(rf"journal verifies: 1 entries from seq {m.group(2)} \(head \d+\)",
                                              r.stdout.strip()), (r.stdout, r.stderr)
    r = subprocess.run([str(COUNTYPOOL), "--token", "not-a-token", "verify"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid_token" in r.stderr and "Traceback" not in r.stderr, (r.stdout, r.stderr)


# ------------------------------------------------------------------------------ live: dlq list, lag
def test_dlq_list_and_lag_against_a_running_service_say_what_the_readme_says(tmp_path, kafka_bootstrap, unique_topic):
    """README: a message that cannot be decoded goes to `<topic>.dlq` (`malformed_json`); "`countypool dlq list`
    shows them" with their reasons, exit 0; `countypool lag` shows consumer lag per group and topic, and after the
    service took everything its group is "back to 0". Run as an operator runs them (.venv/bin/countypool, Kafka at
    KAFKA_BOOTSTRAP_SERVERS, the service's group and intake topic from its settings' variables) against assessment
    consuming a department's topic."""
    from kafka import KafkaProducer

    from tests.support.services import running_service, wait_for

    group = f"test-readme-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTYPOOL_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, COUNTYPOOL_ASSESSMENT_GROUP_ID=group,
               COUNTYPOOL_ASSESSMENT_INTAKE_TOPIC=unique_topic)

    def cli(*argv):
        return subprocess.run([str(COUNTYPOOL), *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    with running_service("assessment", f"sqlite:///{tmp_path}/a.sqlite3", kafka_bootstrap, intake_topic=unique_topic,
                         group_id=group, relay_enabled=False) as (runtime, _client):
        wait_for(lambda: runtime.consumer._consumer is not None and runtime.consumer._consumer.assignment(),
                 timeout=30, what="the intake consumer's partitions")
        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        for i in range(3):
            p.send(unique_topic, key=f"k{i}".encode(), value=b"{not json", partition=i).get(timeout=30)
        p.close()

        def listed():
            r = cli("dlq", "list", unique_topic)
            m = re.search(r"^(\d+) dead letters", r.stdout, re.M)
            return (r, int(m.group(1))) if r.returncode == 0 and m and int(m.group(1)) == 3 else None

        r, _n = wait_for(listed, timeout=60, interval=1, what="three dead letters listed")
        rows = [ln for ln in r.stdout.splitlines() if "reason=" in ln]
        assert len(rows) == 3 and all("reason=malformed_json" in ln for ln in rows), r.stdout
        r = cli("dlq", "list", unique_topic, "--reason", "malformed_json")
        assert r.returncode == 0 and re.search(r"^3 dead letters with reason malformed_json", r.stdout, re.M), r.stdout

        def back_to_zero():
            r = cli("lag")
            if r.returncode != 0:
                return None
            header = r.stdout.splitlines()[0].split()
            for ln in r.stdout.splitlines()[1:]:
                cells = ln.split()
                if cells[:2] == [group, unique_topic] and cells[-1] == "0":
                    return header, cells
            return None

        header, cells = wait_for(back_to_zero, timeout=60, interval=1, what=f"{group} back to 0 in countypool lag")
        assert header == ["group", "topic", "committed", "end", "lag"]
        assert cells[2] == cells[3] == "3", cells

"""The input stream of a fault run: generated county events (ops.generator) plus direct ledger commands,
each input with the effect it must have once everything has settled.

Kinds of input (all through Kafka, as departments and services send them):

- ``release``   QuotaReleaseSubmitted on countypool.intake.quota (ecology / development-reform /
                natural-resources): quota -> lot -> TransfersRequested -> ledger -> TransferPosted -> quota
                (lot booked) and LotCreated / BuybackOwed -> settlement. The generated releases are reused
                under new ids (``-F<k>``) when the run wants more than the generator made.
- ``ledger``    TransfersRequested on countypool.ledger.commands: a linked chain external -> A -> B (both
                must post) or, one command in ten, a transfer out of an account that was never funded (must
                be refused ``exceeds_credits`` and stay refused).
- ``receipt``   TaxReceiptReported on countypool.intake.settlement (tax bureau), corrections included.
- ``register`` / ``indicators``  EnterpriseReported / IndicatorsReported on countypool.intake.assessment.
- ``approval``  ApprovalGranted (环评 / 能评 / 用地) on countypool.intake.quota, for the projects whose quota
                requests were posted in the setup: in the second half of the stream, between allocation rounds
                (quota reserves a granted request as pending ledger transfers, the approvals post them).

The setup (before any fault) also admits the generated projects (assessment POST /v1/projects ->
ProjectEvaluated -> quota) and posts their quota requests (quota POST /v1/requests).

Within one kind the generated order is kept (a correction after its receipt, indicators after their
enterprise); kinds are interleaved by a seeded shuffle. Some inputs are sent twice on purpose (same id and
body), later in the stream: their effect must still be single.
"""
from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ops.generator import CountyGenerator, write_dataset
from shared.amounts import format_amount, parse_amount
from shared.contracts import topics
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from shared.envelope import new_envelope

NS = uuid.UUID("6f1c2a52-4b8e-4d39-9a0e-3c2f5b7d8e11")
COUNTY = "320612"
QUOTA_SCALE = {"LAND": 4, "ENERGY": 3, "COD": 4, "NH3N": 4, "SO2": 4, "NOX": 4, "VOCS": 4}
LEDGER_SCALE = {"CNY": 2, "COD": 4}
FT_ACCOUNTS = 6  # park:FT<run>-<k>


@dataclass
class Input:
    kind: str
    topic: str
    key: str
    value: bytes
    event_id: str
    ident: str  # the id whose effect is checked (release id, command id, receipt id, credit code, ...)
    data: dict


@dataclass
class Stream:
    run: str
    inputs: list[Input]
    setup: list[Input]  # sent and settled before any fault (enterprises the receipts need)
    duplicates: list[int]  # indices into inputs, sent a second time later in the stream
    agreements: list[dict]
    projects: list[dict] = field(default_factory=list)  # assessment POST /v1/projects bodies
    requests: list[dict] = field(default_factory=list)  # quota POST /v1/requests bodies
    accepted_requests: list[str] = field(default_factory=list)  # request ids quota took (filled by the run)
    ledger_expect_posted: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # id -> (debit, credit, asset, units)
    ledger_expect_failed: dict[str, str] = field(default_factory=dict)  # id -> reason
    ft_accounts: list[str] = field(default_factory=list)

    def count(self) -> dict[str, int]:
        c: dict[str, int] = defaultdict(int)
        for i in self.inputs:
            c[i.kind] += 1
        return dict(c)


def generate(out: Path, size: str = "small", seed: int = 42) -> Path:
    if not (out / "events" / f"{topics.INTAKE_QUOTA}.jsonl").exists():
        write_dataset(CountyGenerator(size, seed=seed, year=2025), out)
    return out


def _lines(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _input(kind: str, topic: str, env: dict, ident: str) -> Input:
    return Input(kind, topic, env["subject"], json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode(),
                 env["id"], ident, env["data"])


def _releases(events: list[dict], n: int, run: str) -> list[Input]:
    base = [e for e in events if e["type"] == "countypool.QuotaReleaseSubmitted.v1"]
    out: list[Input] = []
    k = 0
    while len(out) < n:
        for e in base:
            if len(out) >= n:
                break
            env = json.loads(json.dumps(e))
            rid = env["data"]["release_id"] + (f"-F{k}" if k else "") + f"-{run}"
            env["data"]["release_id"] = rid
            env["subject"] = rid
            env["id"] = env["correlationid"] = str(uuid.uuid5(NS, f"{run}/release/{rid}"))
            out.append(_input("release", topics.INTAKE_QUOTA, env, rid))
        k += 1
    return out


def _ledger_commands(n: int, run: str, rng: random.Random, stream: Stream) -> list[Input]:
    accts = {a: [f"park:FT{run}-{k}/{a}" for k in range(FT_ACCOUNTS)] for a in LEDGER_SCALE}
    empty = {a: f"park:FT{run}-EMPTY/{a}" for a in LEDGER_SCALE}
    stream.ft_accounts = sorted([x for v in accts.values() for x in v] + list(empty.values()))
    out = []
    for i in range(n):
        asset = "CNY" if i % 2 == 0 else "COD"
        scale = LEDGER_SCALE[asset]
        ext = f"external:faults-{run}/{asset}"
        cmd_id = f"ft-{run}-{i}"
        if i % 10 == 9:
            src, dst = empty[asset], accts[asset][rng.randrange(FT_ACCOUNTS)]
            units = rng.randint(1, 10**6)
            specs = [TransferSpec(transfer_id=f"{cmd_id}/0", debit_account=src, credit_account=dst, asset=asset,
                                  amount=format_amount(units, scale), code="faults.unfunded")]
            stream.ledger_expect_failed[f"{cmd_id}/0"] = "exceeds_credits"
            opened = [src, dst]
        else:
            a, b = rng.sample(accts[asset], 2)
            units, part = rng.randint(100, 10**7), None
            part = rng.randint(1, units)
            specs = [
                TransferSpec(transfer_id=f"{cmd_id}/0", debit_account=ext, credit_account=a, asset=asset,
                             amount=format_amount(units, scale), code="faults.fund", linked=True),
                TransferSpec(transfer_id=f"{cmd_id}/1", debit_account=a, credit_account=b, asset=asset,
                             amount=format_amount(part, scale), code="faults.move"),
            ]
            stream.ledger_expect_posted[f"{cmd_id}/0"] = (ext, a, asset, units)
            stream.ledger_expect_posted[f"{cmd_id}/1"] = (a, b, asset, part)
            opened = [ext, a, b]
        cmd = TransfersRequested(transfers=specs, open_accounts=[
            AccountSpec(account_id=x, asset=asset, address=x.rsplit("/", 1)[0]) for x in opened])
        # the ledger takes commands only from quota and settlement (COUNTYPOOL_LEDGER_COMMAND_SOURCES)
        env = new_envelope(cmd, subject=cmd_id, source="/countypool/quota", producer="tests.faults",
                           event_id=str(uuid.uuid5(NS, f"{run}/ledger/{cmd_id}")))
        out.append(Input("ledger", topics.LEDGER_COMMANDS, cmd_id, env.to_json(), env.id, cmd_id,
                         json.loads(env.to_json())["data"]))
    return out


def build(gen_dir: Path, *, run: str, releases: int, ledger: int, receipts: int, assessment: int,
          approvals: bool = True, duplicate_share: float = 0.02, seed: int = 7) -> Stream:
    rng = random.Random(seed)
    ev = gen_dir / "events"
    stream = Stream(run=run, inputs=[], setup=[], duplicates=[],
                    agreements=json.loads((gen_dir / "http" / "agreements.json").read_text()))
    rel = _releases(_lines(ev / f"{topics.INTAKE_QUOTA}.jsonl"), releases, run)
    led = _ledger_commands(ledger, run, rng, stream)

    rec_events = _lines(ev / f"{topics.INTAKE_SETTLEMENT}.jsonl")[:receipts]
    rec = [_input("receipt", topics.INTAKE_SETTLEMENT, e, e["data"]["receipt_id"]) for e in rec_events]
    receipt_codes = {e["data"]["enterprise_credit_code"] for e in rec_events}
    agreement_codes = {a["enterprise_credit_code"] for a in stream.agreements}

    asm_events = _lines(ev / f"{topics.INTAKE_ASSESSMENT}.jsonl")
    setup_codes = receipt_codes | agreement_codes
    for e in asm_events:
        if e["type"] == "countypool.EnterpriseReported.v1" and e["data"]["credit_code"] in setup_codes:
            stream.setup.append(_input("register", topics.INTAKE_ASSESSMENT, e, e["data"]["credit_code"]))
    asm: list[Input] = []
    for e in asm_events:
        if len(asm) >= assessment:
            break
        d = e["data"]
        if e["type"] == "countypool.EnterpriseReported.v1":
            if d["credit_code"] in setup_codes:
                continue
            asm.append(_input("register", topics.INTAKE_ASSESSMENT, e, d["credit_code"]))
        else:
            asm.append(_input("indicators", topics.INTAKE_ASSESSMENT, e, f"{d['credit_code']}/{d['year']}/{d['department']}"))
    # a trailing enterprise without its indicators is fine; indicators without their register event are not
    # possible (they follow it in the file)

    # interleave, keeping each kind's own order; the releases in the first 60 % of the stream, so that the
    # pool holds something when the rounds run
    lists = [led, rec, asm]
    order = [k for k, lst in enumerate(lists) for _ in lst]
    rng.shuffle(order)
    pos = [0] * len(lists)
    for k in order:
        stream.inputs.append(lists[k][pos[k]])
        pos[k] += 1
    total = len(stream.inputs) + len(rel)
    at = sorted(rng.randint(0, max(0, int(0.6 * total) - len(rel))) for _ in rel)
    for shift, (k, r) in enumerate(zip(at, rel)):
        stream.inputs.insert(k + shift, r)
    if approvals:
        stream.projects = json.loads((gen_dir / "http" / "projects.json").read_text())
        stream.requests = json.loads((gen_dir / "http" / "quota_requests.json").read_text())
        wanted = {r["project_id"] for r in stream.requests}
        apps = [_input("approval", topics.INTAKE_QUOTA, e, f"{e['data']['project_id']}/{e['data']['kind']}")
                for e in _lines(ev / f"{topics.INTAKE_QUOTA}.jsonl")
                if e["type"] == "countypool.ApprovalGranted.v1" and e["data"]["project_id"] in wanted]
        n = len(stream.inputs)
        at = sorted(rng.randint(int(0.45 * n), int(0.95 * n)) for _ in apps)
        for shift, (k, a) in enumerate(zip(at, apps)):
            stream.inputs.insert(k + shift, a)
    n_dup = int(len(stream.inputs) * duplicate_share)
    stream.duplicates = sorted(rng.sample(range(len(stream.inputs)), n_dup)) if n_dup else []
    return stream


def quota_units(asset: str, amount: str) -> int:
    return parse_amount(amount, QUOTA_SCALE[asset], allow_zero=True)

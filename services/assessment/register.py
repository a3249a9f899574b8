"""The enterprise register and the yearly figures departments send: one code path for the API, the intake
topic and bulk imports, each taking a batch (of one, or of thousands) in the caller's transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Collection

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.assessment.domain.enterprise import (
    FLAG_NAMES, PARK_ID, Enterprise, IndicatorConflict, NotGiven, YearlyIndicators, merge_indicators, withdraw_figures,
)
from services.assessment.domain.enterprise import checked_enterprise
from services.assessment.events import Actor, emit_plain
from services.assessment.fields import format_figures
from services.assessment.storage.bulk_rows import insert_dicts
from services.assessment.storage.rows import (
    chunks,
    code_in,
    dumps,
    enterprise_values,
    enterprises_by_code,
    loads,
    merged_indicators,
    registered_codes,
)
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import indicator_parts as P
from services.assessment.storage.tables import indicators as I
from shared.contracts.assessment import EnterpriseRegistered, IndicatorsRecorded, IndicatorsWithdrawn
from shared.outbox import Outbox

CREATED, UPDATED, UNCHANGED, RECORDED = "created", "updated", "unchanged", "recorded"


def make_enterprise(credit_code: str, name: str, township_code: str, in_park: bool, park_id: str | None,
                    industry_code: str, flags: list[str], scale: str | None) -> Enterprise:
    """From the API or intake shape (a list of flag names) to the domain value; ValueError if invalid."""
    bad = [f for f in flags if not _is_flag_name(f)]
    if bad:
        raise ValueError(f"flags are names such as safety_hazard, not {bad[0]!r}")
    named = {n: n in flags for n in FLAG_NAMES}
    e = Enterprise(credit_code=credit_code, name=name.strip(), township_code=township_code, in_park=in_park,
                   industry_code=industry_code.upper(), park_id=park_id, scale=scale,
                   extra_flags=frozenset(flags) - set(FLAG_NAMES), **named)
    check_register_limits(e)
    return e


def _is_flag_name(flag: str) -> bool:
    return bool(flag) and len(flag) <= 60 and flag.replace("_", "").isalnum()


MAX_FLAGS = 50  # EnterpriseRegistered.flags (and the HTTP body's) holds at most 50


def check_register_limits(e: Enterprise) -> None:
    """The register's column widths: a longer value is refused here (422, DLQ, bad row), never left to
    fail in the database."""
    if len(e.name) > 200 or (e.park_id is not None and len(e.park_id) > 100) or len(e.industry_code) > 10:
        raise ValueError("name is at most 200 characters, park_id 100, industry_code 10")
    if e.park_id is not None and not PARK_ID.match(e.park_id):
        raise ValueError(f"park id {e.park_id!r} is not a park code (letters, digits, _ . -)")
    # a register file's 其他标记 took any name and any number of them: 'high-tech', which HTTP and the intake topic
    # refuse, and 55 flags, whose EnterpriseRegistered its own contract refuses (every consumer dead-lettered it)
    bad = sorted(f for f in e.extra_flags if not _is_flag_name(f))
    if bad:
        raise ValueError(f"flags are names such as safety_hazard (letters, digits, _; at most 60), not {bad[0]!r}")
    if len(e.flags()) > MAX_FLAGS:
        raise ValueError(f"an enterprise has at most {MAX_FLAGS} flags, not {len(e.flags())}")
    # PostgreSQL stores no NUL in text: the register's COPY failed as a whole (a 500 from POST /v1/enterprises; an
    # import stopped with its earlier chunks written) instead of this one entry being refused
    if "\x00" in e.name or (e.park_id is not None and "\x00" in e.park_id):
        raise ValueError("name and park_id must not contain a NUL character")


def registered_event(e: Enterprise) -> EnterpriseRegistered:
    return EnterpriseRegistered.model_validate(registered_payload(e))


def registered_payload(e: Enterprise) -> dict:
    """EnterpriseRegistered's JSON payload, in its field order (events.emit_plain)."""
    return {"credit_code": e.credit_code, "name": e.name, "county_code": e.county_code,
            "township_code": e.township_code, "in_park": e.in_park, "park_id": e.park_id,
            "industry_code": e.industry_code, "flags": sorted(e.flags()), "scale": e.scale}


def register_enterprises(s: Session, outbox: Outbox, items: list[Enterprise], actor: Actor, now: datetime, *,
                         keep: Collection[str] = ()) -> list[str]:
    """Create or update register entries; returns created/updated/unchanged per item. A code given twice
    in one batch takes its last state (the caller refuses duplicates it cares about). ``keep``: fields of
    KEEPABLE that the caller was not told (an import file without their columns); a registered enterprise
    keeps its values of them. The registered rows are locked first: two updates of one enterprise at once (a rename
    beside a hazard flag, each keeping what it did not say) each wrote the row as it was before the other, so one
    change was lost, and with it the revision count."""
    existing = enterprises_by_code(s, (e.credit_code for e in items), lock=True)
    outcomes: list[str] = []
    new_rows: dict[str, dict] = {}
    events = []
    for e in items:
        row = existing.get(e.credit_code)
        if keep and row is not None:
            e = _keeping(e, row, keep)
        values = enterprise_values(e)
        if row is None and e.credit_code not in new_rows:
            new_rows[e.credit_code] = dict(values, status="active", revision=1, registered_at=now, updated_at=now,
                                           updated_by=actor.principal)
            outcomes.append(CREATED)
        elif e.credit_code in new_rows:
            new_rows[e.credit_code].update(values)
            outcomes.append(UPDATED)
        elif all(getattr(row, k) == v for k, v in values.items()):
            outcomes.append(UNCHANGED)
            continue
        else:
            s.execute(update(E).where(E.c.credit_code == e.credit_code)
                      .values(**values, revision=row.revision + 1, updated_at=now, updated_by=actor.principal))
            outcomes.append(UPDATED)
        events.append((registered_payload(e), e.credit_code, None))
    if new_rows:
        insert_dicts(s, E, list(new_rows.values()))
    emit_plain(s, outbox, actor, EnterpriseRegistered, events, now)
    return outcomes


# What a register file may leave out: a file without the 安全隐患 column says nothing about hazards. Taking its
# absence as "no" cleared a hazard (or park, scale, county flag) another department had registered, silently,
# and with it the closure recommendation and the applicant's listing in project admission.
KEEPABLE = frozenset({"park_id", "scale", "extra_flags", *FLAG_NAMES, "in_park", "industry_code"})


def unsaid(fields_set: Collection[str]) -> frozenset[str]:
    """KEEPABLE fields an HTTP body or EnterpriseReported left out (pydantic's ``model_fields_set``): a message
    renaming an enterprise says nothing of its hazards, scale or park, and cleared them (and with a hazard the
    closure recommendation). A key sent, even as [] or null, says so."""
    out = {f for f in ("park_id", "scale", "in_park", "industry_code") if f not in fields_set}
    if "flags" not in fields_set:
        out.update(FLAG_NAMES, ("extra_flags",))
    return frozenset(out)


def _keeping(e: Enterprise, row, keep: Collection[str]) -> Enterprise:
    """``e`` with the registered row's values of the fields in ``keep`` (values checked when they were written)."""
    flags = _NO_FLAGS if row.flags == "[]" else frozenset(loads(row.flags))
    named = tuple((n in flags) if n in keep else getattr(e, n) for n in FLAG_NAMES)
    extra = (flags - _FLAG_SET) if "extra_flags" in keep else e.extra_flags
    in_park = row.in_park if "in_park" in keep else e.in_park
    return checked_enterprise(e.credit_code, e.name, e.township_code, in_park,
                              row.industry_code if "industry_code" in keep else e.industry_code,
                              # a file saying "not in a park" ends the park, whatever the register held
                              row.park_id if "park_id" in keep and in_park else e.park_id, named, frozenset(extra),
                              row.scale if "scale" in keep else e.scale)


_NO_FLAGS: frozenset[str] = frozenset()
_FLAG_SET = frozenset(FLAG_NAMES)


@dataclass(frozen=True)
class PartOutcome:
    result: str  # recorded | unchanged | refused (withdraw_part: withdrawn | refused)
    reason: str | None = None
    message: str | None = None
    merged: YearlyIndicators | None = None


def record_parts(s: Session, outbox: Outbox, parts: list[YearlyIndicators], actor: Actor, now: datetime) -> list[PartOutcome]:
    """Merge each department's part into what is known for the enterprise and year. Refused, with a
    reason, when the enterprise is not in the register or another department gave a different figure.
    The enterprises' register rows are locked first: two departments' parts of one enterprise arriving at once
    (HTTP requests served side by side, a Kafka poll beside an import) each merged into the record as it was
    before the other, and the last write dropped the other's figures from it."""
    registered = registered_codes(s, (p.credit_code for p in parts), lock=True)
    known = merged_indicators(s, ((p.credit_code, p.year) for p in parts if p.credit_code in registered))
    had_row = set(known)
    had_part = _existing_parts(s, parts)
    departments: dict[tuple[str, int], set[str]] = {}  # who gave a part for an enterprise and year
    for code, year, dept in had_part:
        departments.setdefault((code, year), set()).add(dept)
    outcomes: list[PartOutcome] = []
    part_rows: dict[tuple, dict] = {}
    touched: set[tuple[str, int]] = set()
    events = []
    merged_json: dict[tuple, str] = {}  # figures JSON of merged rows that are just their part (written once)
    for p in parts:
        department = next(iter(p.sources.values()))
        if p.credit_code not in registered:
            outcomes.append(PartOutcome("refused", "enterprise_not_registered",
                                        f"{p.credit_code} is not in the register; register it first"))
            continue
        key = (p.credit_code, p.year)
        base = known.get(key)
        try:
            others = None if base is None else {
                d: loads(part_rows[(*key, d)]["figures"] if (*key, d) in part_rows else had_part[(*key, d)])
                for d in departments.get(key, ()) if d != department}
            merged = merge_indicators(base, p, others)
        except IndicatorConflict as exc:
            outcomes.append(PartOutcome("refused", exc.reason, str(exc)))
            continue
        figures = p.set_fields()
        pkey = (p.credit_code, p.year, department)
        previous = part_rows[pkey]["figures"] if pkey in part_rows else had_part.get(pkey)
        if previous is None:  # the common case of an import: nothing known before
            before = None
            if not figures and merged == base:
                outcomes.append(PartOutcome(UNCHANGED, merged=merged))
                continue
            figures_json = dumps(figures)
        else:
            before = loads(previous)
            if merged == base and all(before.get(k) == v for k, v in figures.items()):
                outcomes.append(PartOutcome(UNCHANGED, merged=merged))
                continue
            # the stored part is everything this department said for the year, its corrections applied
            figures_json = dumps({**before, **figures})
        known[key] = merged
        touched.add(key)
        if merged is p and before is None:
            merged_json[key] = figures_json
        else:
            merged_json.pop(key, None)
        departments.setdefault(key, set()).add(department)
        part_rows[pkey] = {"credit_code": p.credit_code, "year": p.year, "department": department,
                           "figures": figures_json, "received_via": actor.via, "received_by": actor.principal,
                           "updated_at": now}
        outcomes.append(PartOutcome(RECORDED, merged=merged))
        fields = format_figures(figures)
        payload = {"credit_code": p.credit_code, "year": p.year, "department": department, "fields": fields}
        for v in fields.values():
            if len(v) > 30:
                IndicatorsRecorded.model_validate(payload)  # beyond DecimalStr's 30 digits: refused as the contract says
                break
        events.append((payload, p.credit_code, None))
    _save_parts(s, part_rows, had_part)
    _save_merged(s, {k: known[k] for k in touched}, had_row, now, merged_json)
    emit_plain(s, outbox, actor, IndicatorsRecorded, events, now)
    return outcomes


def withdraw_part(s: Session, outbox: Outbox, credit_code: str, year: int, department: str, names: list[str],
                  actor: Actor, now: datetime) -> PartOutcome:
    """A department takes back figures of its part (domain withdraw_figures): its part and the merged record are
    rewritten (each deleted once empty: the enterprise-year is then as if never reported) and IndicatorsWithdrawn
    says so. Refused, with a reason, for a figure its part does not hold or one only the county's figure settles."""
    registered_codes(s, [credit_code], lock=True)  # as record_parts: writers of the enterprise's figures take turns
    where = (P.c.credit_code == credit_code) & (P.c.year == year)
    parts = {r.department: loads(r.figures) for r in s.execute(select(P.c.department, P.c.figures).where(where))}
    merged = s.execute(select(I.c.figures, I.c.sources).where(I.c.credit_code == credit_code, I.c.year == year)).first()
    try:
        figures, sources, part = withdraw_figures(credit_code, year, loads(merged.figures) if merged else {},
                                                  loads(merged.sources) if merged else {}, parts, department, names)
    except NotGiven as exc:
        return PartOutcome("refused", exc.reason, str(exc))
    except IndicatorConflict as exc:
        return PartOutcome("refused", exc.reason, f"{exc.field}: {exc.kept_by} and {exc.offered_by} give different "
                                                  f"figures, which the county's settles: change it, do not withdraw it")
    mine = (P.c.department == department) & where
    if part:
        s.execute(update(P).where(mine).values(figures=dumps(part), received_via=actor.via,
                                               received_by=actor.principal, updated_at=now))
    else:
        s.execute(delete(P).where(mine))
    if figures:
        s.execute(update(I).where(I.c.credit_code == credit_code, I.c.year == year)
                  .values(figures=dumps(figures), sources=dumps(sources), updated_at=now))
    else:
        s.execute(delete(I).where(I.c.credit_code == credit_code, I.c.year == year))
    payload = {"credit_code": credit_code, "year": year, "department": department, "fields": sorted(set(names))}
    emit_plain(s, outbox, actor, IndicatorsWithdrawn, [(payload, credit_code, None)], now)
    return PartOutcome("withdrawn")


def _existing_parts(s: Session, parts: list[YearlyIndicators]) -> dict[tuple, str]:
    """(code, year, department) -> stored figures JSON, every department's for the enterprises and years of this
    batch (a correction is checked against the others')."""
    wanted = {(p.credit_code, p.year) for p in parts}
    out: dict[tuple, str] = {}
    for chunk in chunks(sorted({k[0] for k in wanted})):
        rows = s.execute(select(P.c.credit_code, P.c.year, P.c.department, P.c.figures)
                         .where(code_in(P.c.credit_code, chunk, s))).all()
        out.update(((r.credit_code, r.year, r.department), r.figures) for r in rows
                   if (r.credit_code, r.year) in wanted)
    return out





def _save_parts(s: Session, rows: dict[tuple, dict], existing: dict[tuple, str]) -> None:
    inserts = [r for k, r in rows.items() if k not in existing]
    if inserts:
        insert_dicts(s, P, inserts)
    for k, r in rows.items():
        if k in existing:
            s.execute(update(P).where(P.c.credit_code == k[0], P.c.year == k[1], P.c.department == k[2])
                      .values(figures=r["figures"], received_via=r["received_via"], received_by=r["received_by"],
                              updated_at=r["updated_at"]))


def _save_merged(s: Session, merged: dict[tuple[str, int], YearlyIndicators], existing: set, now: datetime,
                 figures_json: dict[tuple[str, int], str] | None = None) -> None:
    """``figures_json``: the stored figures of some of them, already written (dumps(ind.set_fields()))."""
    inserts = []
    known = figures_json or {}
    for (code, year), ind in merged.items():
        figures = known.get((code, year))
        values = {"figures": figures if figures is not None else dumps(ind.set_fields()),
                  "sources": dumps(dict(ind.sources)), "updated_at": now}
        if (code, year) in existing:
            s.execute(update(I).where(I.c.credit_code == code, I.c.year == year).values(**values))
        else:
            inserts.append(dict(values, credit_code=code, year=year))
    if inserts:
        insert_dicts(s, I, inserts)

"""Versioned assessment policies per county and year. Version 1 is the shipped default, stored the first
time anything uses it (so a run years later still names the exact text it was scored by); each change is
a new version and an AssessmentPolicyChanged event. Old versions stay readable."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.assessment.domain.enterprise import pollutant_spelling_problem
from services.assessment.domain.policy import AssessmentPolicy, default_policy
from services.assessment.events import Actor, emit
from services.assessment.fields import EMISSIONS, scale_of
from services.assessment.storage import locks
from services.assessment.storage.rows import dumps, loads, utc
from services.assessment.storage.tables import policies as T
from shared.contracts.assessment import AssessmentPolicyChanged
from shared.errors import Conflict, NotFound, Unprocessable
from shared.outbox import Outbox

DEFAULT_AUTHOR = "system:default"


@dataclass(frozen=True)
class StoredPolicy:
    policy: AssessmentPolicy
    policy_hash: str
    stored: bool  # False: the default, not yet used by anything
    created_by: str
    created_at: datetime | None
    note: str


def _from_row(r) -> StoredPolicy:
    return StoredPolicy(AssessmentPolicy.model_validate(loads(r.body)), r.policy_hash, True, r.created_by,
                        utc(r.created_at), r.note)


def _default(county: str, year: int) -> StoredPolicy:
    p = default_policy(county, year)
    return StoredPolicy(p, p.content_hash(), False, DEFAULT_AUTHOR, None, "shipped Jiangsu/Nantong-style defaults")


def default_for(county: str, year: int) -> StoredPolicy:
    return _default(county, year)


def current_policy(s: Session, county: str, year: int) -> StoredPolicy:
    r = s.execute(select(T).where(T.c.county_code == county, T.c.year == year)
                  .order_by(T.c.version.desc()).limit(1)).first()
    return _from_row(r) if r else _default(county, year)


def policy_version(s: Session, county: str, year: int, version: int) -> StoredPolicy:
    r = s.execute(select(T).where(T.c.county_code == county, T.c.year == year, T.c.version == version)).first()
    if r is not None:
        return _from_row(r)
    if version == 1 and _latest_version(s, county, year) == 0:
        return _default(county, year)
    raise NotFound("policy_version_not_found", f"no policy version {version} for {county}/{year}")


def list_versions(s: Session, county: str, year: int) -> list[StoredPolicy]:
    rows = s.execute(select(T).where(T.c.county_code == county, T.c.year == year).order_by(T.c.version)).all()
    return [_from_row(r) for r in rows] or [_default(county, year)]


def _latest_version(s: Session, county: str, year: int) -> int:
    return s.execute(select(func.coalesce(func.max(T.c.version), 0))
                     .where(T.c.county_code == county, T.c.year == year)).scalar_one()


def _store(s: Session, outbox: Outbox, p: StoredPolicy, actor: Actor, now: datetime) -> StoredPolicy:
    pol = p.policy
    s.execute(T.insert().values(county_code=pol.county, year=pol.year, version=pol.version, body=dumps(pol),
                                policy_hash=p.policy_hash, created_by=p.created_by, created_at=now, note=p.note))
    emit(s, outbox, actor, [(AssessmentPolicyChanged(county_code=pol.county, year=pol.year, policy_version=pol.version,
                                                     policy_hash=p.policy_hash, changed_by=p.created_by),
                             f"{pol.county}/{pol.year}", None)])
    return StoredPolicy(pol, p.policy_hash, True, p.created_by, now, p.note)


def ensure_policy(s: Session, outbox: Outbox, county: str, year: int, actor: Actor, now: datetime) -> StoredPolicy:
    """The current policy, storing the default as version 1 when it is used for the first time. That first use takes
    the county-year's policy lock and reads again: projects admitted at once in a fresh county-year each stored
    version 1, and all but one were refused with a unique violation (answered as a reused project id)."""
    current = current_policy(s, county, year)
    if current.stored:
        return current
    locks.hold(s, f"policy:{county}/{year}")
    current = current_policy(s, county, year)
    return current if current.stored else _store(s, outbox, current, actor, now)


def _check_pollutant_names(policy: AssessmentPolicy) -> None:
    """A weight for a known pollutant spelled otherwise ('nox') would weight nothing the departments send (their
    'emissions.NOx' is kept as spelled): refused like such a figure (fields.py), each name in the details; so is a
    name no figure can carry at all (pollutant_name_invalid).
    Stored versions are not checked again when read, so an old one stays readable."""
    problems = []
    for name in sorted(policy.emission_weights):
        if (spelling := pollutant_spelling_problem(name)) is not None:
            reason, canonical = spelling
            problems.append({"field": f"emission_weights.{name}", "reason": reason,
                             "message": f"the pollutant is spelled {canonical!r}; {name!r} would weight nothing"})
        elif scale_of(EMISSIONS + name) is None:
            # a name no figure can carry ('总磷', 'P 1'): HTTP and the intake topic take emissions.<pollutant> of ASCII
            # letters, digits and '-' (fields.py), so the weight was stored and weighted nothing, year after year
            problems.append({"field": f"emission_weights.{name}", "reason": "pollutant_name_invalid",
                             "message": f"no figure can carry a pollutant named {name!r}: a name is a letter, then up to "
                                        f"19 letters, digits or '-' (as emissions.<pollutant> takes it, e.g. 'TP')"})
    if problems:
        raise Unprocessable(problems[0]["reason"], "; ".join(f"{p['field']}: {p['message']}" for p in problems), problems)


# enterprise_results.class_label is String(20) and PostgreSQL text holds no NUL: a band or exclusion label the
# results cannot hold was stored, and every later evaluation of the county-year failed with a 500 on PostgreSQL
CLASS_LABEL_MAX = 20


def _check_class_labels(policy: AssessmentPolicy) -> None:
    problems = []
    for where, labels in (("class_rule.bands", [b.label for b in policy.class_rule.bands]),
                          ("exclusions", [e.label for e in policy.exclusions])):
        for i, label in enumerate(labels):
            if not label.strip() or len(label) > CLASS_LABEL_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in label):
                problems.append({"field": f"{where}.{i}.label", "reason": "class_label_invalid",
                                 "message": f"a class label is 1 to {CLASS_LABEL_MAX} characters without control "
                                            f"characters, not {label!r}"})
    if problems:
        raise Unprocessable("class_label_invalid", "; ".join(f"{p['field']}: {p['message']}" for p in problems), problems)


# A policy number is a weight, benchmark, factor, share, score or surcharge: at most 12 decimals, below 10^16. Any
# Decimal was taken: one beyond the decimal context's exponents ('1E+5000000') made the content hash raise
# decimal.Overflow (a 500), a huge one ('1E+999999') made every run compute with million-digit integers, and
# digits beyond 28 made the weights' Decimal sum round (a weight sum of 100.00..001 passed as 100)
NUMBER_MAX_DECIMALS = 12
NUMBER_MAX_ADJUSTED = 15


def _decimals(value, path: str):
    if isinstance(value, Decimal):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _decimals(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _decimals(v, f"{path}.{i}")


def _check_numbers(policy: AssessmentPolicy) -> None:
    problems = []
    for path, d in _decimals(policy.model_dump(mode="python"), ""):
        if d == 0:
            continue
        sign, digits, exponent = d.as_tuple()
        trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if d.adjusted() > NUMBER_MAX_ADJUSTED or exponent + trailing < -NUMBER_MAX_DECIMALS:
            problems.append({"field": path, "reason": "policy_number_out_of_range",
                             "message": f"at most {NUMBER_MAX_DECIMALS} decimals and below 10^{NUMBER_MAX_ADJUSTED + 1}"})
    if problems:
        raise Unprocessable("policy_number_out_of_range", "; ".join(f"{p['field']}: {p['message']}" for p in problems[:20]),
                            problems[:100])


def _ordered(policy: AssessmentPolicy, version: int) -> AssessmentPolicy:
    """The policy with the lists whose order means nothing sorted (indicators are looked up by code, groups by
    name, disposition classes and refused prefixes by membership): the same policy written in another order is
    the same content, not a new version (and not a new policy hash naming a new run of identical results)."""
    d = policy.disposition
    return policy.model_copy(update={
        "version": version,
        "indicators": tuple(sorted(policy.indicators, key=lambda i: i.code)),
        "groups": tuple(sorted(policy.groups, key=lambda g: g.name)),
        "disposition": d.model_copy(update={k: tuple(sorted(set(getattr(d, k)))) for k in (
            "close_with_hazard_classes", "relocate_classes", "upgrade_classes")}),
        "admission": policy.admission.model_copy(update={
            "refused_industry_prefixes": tuple(sorted(set(policy.admission.refused_industry_prefixes)))}),
    })


def put_policy(s: Session, outbox: Outbox, county: str, year: int, policy: AssessmentPolicy, actor: Actor,
               now: datetime, note: str = "") -> tuple[StoredPolicy, bool]:
    """Store ``policy`` as the next version. Its ``version`` must be the current one + 1 (so two editors
    cannot silently overwrite each other); the same content as the current version changes nothing."""
    if (policy.county, policy.year) != (county, year):
        raise Unprocessable("policy_path_mismatch", f"the body is for {policy.county}/{policy.year}, the path for {county}/{year}")
    _check_pollutant_names(policy)
    _check_class_labels(policy)
    _check_numbers(policy)
    current = ensure_policy(s, outbox, county, year, actor, now)
    same = policy.model_copy(update={"version": current.policy.version})
    if same.content_hash() == current.policy_hash or (
            _ordered(policy, 0).content_hash() == _ordered(current.policy, 0).content_hash()):
        return current, False
    expected = current.policy.version + 1
    if policy.version != expected:
        raise Conflict("policy_version_conflict",
                       f"the next version of {county}/{year} is {expected}, the body says {policy.version}",
                       {"current_version": current.policy.version})
    stored = StoredPolicy(policy, policy.content_hash(), True, actor.principal, now, note)
    return _store(s, outbox, stored, actor, now), True

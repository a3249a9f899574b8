"""Counties served and their policy; locking a county's row serializes every change of its pool."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.quota.application.policy_codec import policy_from_doc, policy_to_doc
from services.quota.domain.policy import PoolPolicy
from services.quota.storage.sql import dumps, insert_ignore, loads, utc
from services.quota.storage.tables import counties


@dataclass(frozen=True)
class CountyPolicy:
    policy: PoolPolicy
    version: int
    updated_at: datetime
    updated_by: str


def _row_policy(row) -> CountyPolicy:
    return CountyPolicy(policy_from_doc(row.county_code, loads(row.policy)), row.policy_version,
                        utc(row.updated_at), row.updated_by)


def lock_county(session: Session, county_code: str, now: datetime) -> CountyPolicy:
    """The county's policy, its row locked until the transaction ends (created with defaults if new)."""
    return _lock(session, county_code, now)[0]


def _lock(session: Session, county_code: str, now: datetime) -> tuple[CountyPolicy, bool]:
    locked = select(counties).where(counties.c.county_code == county_code).with_for_update()
    row = session.execute(locked).first()
    created = False
    if row is None:  # insert-or-ignore: two first users of a county may race to create it
        created = insert_ignore(session, counties, dict(
            county_code=county_code, policy=dumps(policy_to_doc(PoolPolicy(county_code))), policy_version=1,
            updated_at=now, updated_by="default"))
        row = session.execute(locked).one()
    return _row_policy(row), created


def lock_counties(session: Session, county_codes: set[str], now: datetime) -> tuple[dict[str, CountyPolicy], set[str]]:
    """``lock_county`` of each, in code order (the one order of every multi-county transaction); also which
    rows this call created, so a batch can drop those it ended up not using (see ``drop_unused``)."""
    policies: dict[str, CountyPolicy] = {}
    created: set[str] = set()
    for code in sorted(county_codes):
        policies[code], new = _lock(session, code, now)
        if new:
            created.add(code)
    return policies, created


def drop_unused(session: Session, county_codes: set[str]) -> None:
    """Remove rows ``lock_counties`` created for counties whose every message was refused: one message
    alone would have rolled its creation back with its refusal. Nobody else saw them (uncommitted, locked)."""
    if county_codes:
        session.execute(delete(counties).where(counties.c.county_code.in_(sorted(county_codes))))


def read_policy(session: Session, county_code: str) -> CountyPolicy:
    """Without a lock: the stored policy, or the defaults for a county not seen yet (version 0)."""
    row = session.execute(select(counties).where(counties.c.county_code == county_code)).first()
    if row is None:
        return CountyPolicy(PoolPolicy(county_code), 0, datetime.fromtimestamp(0).astimezone(), "default")
    return _row_policy(row)


def save_policy(session: Session, policy: PoolPolicy, by: str, now: datetime) -> CountyPolicy:
    current = lock_county(session, policy.county_code, now)
    version = current.version + 1
    session.execute(update(counties).where(counties.c.county_code == policy.county_code).values(
        policy=dumps(policy_to_doc(policy)), policy_version=version, updated_at=now, updated_by=by))
    return CountyPolicy(policy, version, now, by)


def county_known(session: Session, county_code: str) -> bool:
    """Whether the county has a row: a policy was set, or something of its pool happened."""
    return session.execute(select(counties.c.county_code).where(counties.c.county_code == county_code)).first() \
        is not None


def county_codes(session: Session) -> list[str]:
    return list(session.execute(select(counties.c.county_code).order_by(counties.c.county_code)).scalars())

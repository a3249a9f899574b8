"""Counties served and their policy; locking a county's row serializes every change of its pool."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
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
    locked = select(counties).where(counties.c.county_code == county_code).with_for_update()
    row = session.execute(locked).first()
    if row is None:  # insert-or-ignore: two first users of a county may race to create it
        insert_ignore(session, counties, dict(county_code=county_code, policy=dumps(policy_to_doc(PoolPolicy(county_code))),
                                              policy_version=1, updated_at=now, updated_by="default"))
        row = session.execute(locked).one()
    return _row_policy(row)


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


def county_codes(session: Session) -> list[str]:
    return list(session.execute(select(counties.c.county_code).order_by(counties.c.county_code)).scalars())

"""A county's PoolPolicy as a JSON document (stored in ``counties.policy``, shown and edited over HTTP).
Prices are kept in fen per display unit; the API speaks CNY decimal strings."""
from __future__ import annotations

from typing import Any

from services.quota.domain.policy import PoolPolicy, PriorityPolicy


def policy_to_doc(policy: PoolPolicy) -> dict[str, Any]:
    return {
        "retire_share_bp": dict(policy.retire_share_bp),
        "price_fen_per_unit": dict(policy.price_fen_per_unit),
        "reservation_timeout_seconds": policy.reservation_timeout_seconds,
        "request_wait_seconds": policy.request_wait_seconds,
        "consumption_order": policy.consumption_order.value,
        "township_order": list(policy.township_order),
        "verification": policy.verification.value,
        "department_assets": {str(d): sorted(a) for d, a in policy.department_assets.items()},
        "priority": {
            "keys": [k.value for k in policy.priority.keys],
            "class_order": list(policy.priority.class_order),
            "strategic_industries": sorted(policy.priority.strategic_industries),
        },
    }


def policy_from_doc(county_code: str, doc: dict[str, Any]) -> PoolPolicy:
    """Missing keys take the domain's defaults (the Nantong/Jiangsu ones)."""
    kw: dict[str, Any] = {k: doc[k] for k in (
        "retire_share_bp", "price_fen_per_unit", "reservation_timeout_seconds", "request_wait_seconds",
        "consumption_order", "township_order", "verification") if k in doc}
    if "department_assets" in doc:
        kw["department_assets"] = {d: frozenset(a) for d, a in doc["department_assets"].items()}
    if "priority" in doc:
        p = doc["priority"]
        defaults = PriorityPolicy()
        kw["priority"] = PriorityPolicy(
            keys=tuple(p.get("keys", defaults.keys)),
            class_order=tuple(p.get("class_order", defaults.class_order)),
            strategic_industries=frozenset(p.get("strategic_industries", ())),
        )
    return PoolPolicy(county_code=county_code, **kw)

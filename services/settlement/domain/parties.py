"""Parties: who pays and who is paid, as plain strings so they travel through JSON, SQL and Kafka unchanged.

Forms (``<code>`` is a region code, a park id or a credit code; no spaces, ``:`` or ``/``):

    township:<region code>        a township (乡镇/街道) — usually the origin an enterprise left
    park:<park id>                an industrial park/cluster (园区/集聚区) — usually the destination
    enterprise:<credit code>      an enterprise (统一社会信用代码)
    project:<project id>          a new project that pays for the quota it was allocated
    county:<county code>/fund     the county's pooling fund (县级统筹资金) — keeps its share of proceeds
    county:<county code>/treasury the county treasury (县财政)

Ledger accounts are derived from parties (``ledger_account``) so that both services name them the same way.
"""
from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache

from .errors import PartyError

Party = str

# at most 100 characters: a party's ledger account (<party>/CNY) must fit the ledger's ids; a longer park was
# recorded, and the first finalization of its period could never post (every later period waits on it)
_CODE = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}"
_CODE_RE = re.compile(rf"^{_CODE}$")


class PartyKind(str, Enum):
    TOWNSHIP = "township"
    PARK = "park"
    ENTERPRISE = "enterprise"
    PROJECT = "project"
    COUNTY_FUND = "county_fund"
    COUNTY_TREASURY = "county_treasury"


_COUNTY_SUFFIX = {"fund": PartyKind.COUNTY_FUND, "treasury": PartyKind.COUNTY_TREASURY}
_SIMPLE = {k.value: k for k in (PartyKind.TOWNSHIP, PartyKind.PARK, PartyKind.ENTERPRISE, PartyKind.PROJECT)}
_PARTY_RE = re.compile(rf"^(?:(township|park|enterprise|project):({_CODE})|county:({_CODE})/(fund|treasury))$")


def code_ok(code: object) -> bool:
    """Whether ``code`` is a valid code (``_code`` without building its refusal)."""
    return isinstance(code, str) and _CODE_RE.match(code) is not None


def _code(code: str, what: str) -> str:
    if not isinstance(code, str) or not _CODE_RE.match(code):
        raise PartyError("invalid_party_code", f"{what} {code!r} is not a valid code (letters, digits, _ . -)")
    return code


def township(region_code: str) -> Party:
    return f"township:{_code(region_code, 'region code')}"


def park(park_id: str) -> Party:
    return f"park:{_code(park_id, 'park id')}"


def enterprise(credit_code: str) -> Party:
    return f"enterprise:{_code(credit_code, 'credit code')}"


def project(project_id: str) -> Party:
    return f"project:{_code(project_id, 'project id')}"


def county_fund(county_code: str) -> Party:
    return f"county:{_code(county_code, 'county code')}/fund"


def county_treasury(county_code: str) -> Party:
    return f"county:{_code(county_code, 'county code')}/treasury"


def party_kind(party: Party) -> PartyKind:
    """The kind of a party id; an id of no known form is an error, never a guess."""
    kind = _kind(party) if isinstance(party, str) else None
    if kind is None:
        raise PartyError("invalid_party", f"{party!r} is not a party id (e.g. township:320623101, park:P1)")
    return kind


@lru_cache(maxsize=4096)  # townships and parks recur on every allocation of a county
def _kind(party: str) -> PartyKind | None:
    m = _PARTY_RE.match(party)
    if not m:
        return None
    return _SIMPLE[m.group(1)] if m.group(1) else _COUNTY_SUFFIX[m.group(4)]


def party_code(party: Party) -> str:
    """The code inside a party id (region code, park id, credit code, county code)."""
    party_kind(party)
    rest = party.split(":", 1)[1]
    return rest.split("/", 1)[0]


def require_party(party: Party, *kinds: PartyKind, role: str = "party") -> Party:
    """Check a party id, and if ``kinds`` are given, that it is one of them."""
    kind = party_kind(party)
    if kinds and kind not in kinds:
        allowed = ", ".join(k.value for k in kinds)
        raise PartyError("wrong_party_kind", f"{role} {party!r} is a {kind.value}; expected one of: {allowed}")
    return party


def ledger_account(party: Party, asset: str = "CNY") -> str:
    """The ledger account holding ``asset`` for ``party``: ``<party>/<asset>`` (e.g. ``park:P1/CNY``), the
    ledger's convention of sub-accounts as ``/`` segments under the party's address."""
    party_kind(party)
    return f"{party}/{asset}"

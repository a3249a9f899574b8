"""Lots: freed quota taken into the county pool, remembering where it came from.

Retired share, rounding written down once: ``retired = ceil(amount * bp / 10000)`` per intake, in the
asset's smallest unit. The policy names a share that *must* be retired, so we never retire less than it
says; rounding up costs reuse at most one smallest unit (0.0001 t, 0.001 tce, 0.0001 亩) per lot.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from services.quota.domain.policy import PoolPolicy
from services.quota.domain.releases import EXIT_REASONS, Basis, QuotaRelease


class SourceKind(StrEnum):
    ENTERPRISE = "enterprise"  # released by a department for an exiting/relocating/upgrading enterprise
    RECLAMATION = "reclamation"  # 增减挂钩 节余指标 from an accepted reclamation project


@dataclass(frozen=True)
class Lot:
    lot_id: str
    county_code: str
    asset: str
    amount: int  # taken into the pool, smallest units
    retired: int  # retired on intake, never reused
    remaining: int  # not yet allocated; reservations are held at pool level, not on lots
    source_kind: SourceKind
    source_ref: str  # enterprise credit code, or reclamation project id
    township_code: str  # the township the quota was freed in
    dated: date  # release date (or acceptance date): the FIFO order
    basis: Basis
    buyback_price_fen_per_unit: int | None
    origin_id: str  # the release id or reclamation project id the lot was made from
    # 腾退补偿 is for enterprises that exited or relocated: quota an enterprise saved by upgrading (it stays)
    # earns none, nor does reclaimed land (no enterprise). Settlement compensates by this flag, carried on
    # every allocation's lots; lots of events written before it existed earn compensation as they did then.
    earns_compensation: bool = True

    @property
    def allocated(self) -> int:
        return self.amount - self.retired - self.remaining


def retired_part(amount: int, retire_bp: int) -> int:
    """ceil(amount * bp / 10000), exact integers (see the module note)."""
    return -((-amount * retire_bp) // 10_000)


def lot_id_for_release(release_id: str) -> str:
    return f"release:{release_id}"


def lot_id_for_reclamation(project_id: str) -> str:
    return f"reclamation:{project_id}"


def new_lot(
    *,
    lot_id: str,
    county_code: str,
    asset: str,
    amount: int,
    source_kind: SourceKind,
    source_ref: str,
    township_code: str,
    dated: date,
    basis: Basis,
    buyback_price_fen_per_unit: int | None,
    origin_id: str,
    policy: PoolPolicy,
    earns_compensation: bool = True,
) -> Lot:
    if amount <= 0:
        raise ValueError("a lot holds a positive amount")
    retired = retired_part(amount, policy.retire_bp(asset))
    return Lot(
        lot_id=lot_id,
        county_code=county_code,
        asset=asset,
        amount=amount,
        retired=retired,
        remaining=amount - retired,
        source_kind=source_kind,
        source_ref=source_ref,
        township_code=township_code,
        dated=dated,
        basis=basis,
        buyback_price_fen_per_unit=buyback_price_fen_per_unit,
        origin_id=origin_id,
        earns_compensation=earns_compensation,
    )


def accept_release(release: QuotaRelease, policy: PoolPolicy) -> tuple[Lot, int]:
    """An accepted release becomes one lot; returns (lot, retired amount). The lot id derives from the
    release id, so taking the same release twice yields the same lot (the store keeps it once)."""
    if release.county_code != policy.county_code:
        raise ValueError("the release belongs to another county's pool")
    lot = new_lot(
        lot_id=lot_id_for_release(release.release_id),
        county_code=release.county_code,
        asset=release.asset,
        amount=release.amount,
        source_kind=SourceKind.ENTERPRISE,
        source_ref=release.enterprise_credit_code,
        township_code=release.township_code,
        dated=release.released_on,
        basis=release.basis,
        buyback_price_fen_per_unit=release.buyback_price_fen_per_unit,
        origin_id=release.release_id,
        policy=policy,
        earns_compensation=release.reason in EXIT_REASONS,
    )
    return lot, lot.retired


def take_from_lot(lot: Lot, amount: int) -> Lot:
    if not 0 < amount <= lot.remaining:
        raise ValueError(f"cannot take {amount} from lot {lot.lot_id} with {lot.remaining} remaining")
    return replace(lot, remaining=lot.remaining - amount)

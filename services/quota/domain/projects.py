"""What the quota service knows of evaluated projects (from ProjectEvaluated). Only admitted projects
may request quota; the facts here also feed the allocation priority."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class ProjectFacts:
    project_id: str
    county_code: str
    admitted: bool  # ProjectEvaluated.admitted
    project_class: str | None = None  # e.g. "A".."D", ordered by PriorityPolicy.class_order
    tax_per_mu_fen: int | None = None  # promised tax per 亩 per year, fen
    industry_code: str | None = None  # matched against PriorityPolicy.strategic_industries
    # assessment's treatment table for the applicant's class (ProjectEvaluated.land_quota_allowed): no new
    # construction land for C, no industrial land for D; the pool's land is both
    land_allowed: bool = True


# Keyed by project id; the service builds it from its ProjectEvaluated projection (latest wins).
ProjectRegistry = Mapping[str, ProjectFacts]

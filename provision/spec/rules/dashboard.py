"""The dashboard: access settings only where a dashboard is installed."""

from __future__ import annotations

from provision.spec.problems import Problem
from provision.spec.rules.base import Add, Judged, rule


@rule("dashboard")
def refuse_access_without_a_dashboard(j: Judged, add: Add) -> None:
    if j.spec.dashboard.type == "none" and j.spec.dashboard.access != "read-only":
        add(Problem("dashboard.access", "access is set but no dashboard is installed",
                    "remove dashboard.access or pick a dashboard"))

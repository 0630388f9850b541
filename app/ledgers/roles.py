"""API-key roles and their ordering: viewer < auditor < manager < admin."""

from __future__ import annotations

from enum import StrEnum


class ApiRole(StrEnum):
    """What an API key may do; each role includes everything the lower ones may."""

    VIEWER = "viewer"
    AUDITOR = "auditor"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: ApiRole | str) -> bool:
        """True when this role is `required` or above (e.g. admin allows manager)."""
        return self.rank >= _RANK[ApiRole(required)]


_RANK: dict[ApiRole, int] = {
    ApiRole.VIEWER: 0,
    ApiRole.AUDITOR: 1,
    ApiRole.MANAGER: 2,
    ApiRole.ADMIN: 3,
}


def role_allows(actual: ApiRole | str | None, required: ApiRole | str) -> bool:
    """True when `actual` (None = no valid key) is at least `required`."""
    if actual is None:
        return False
    return ApiRole(actual).allows(required)

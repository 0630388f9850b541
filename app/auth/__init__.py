"""API-key authentication (`Authorization: Bearer <key>`) and role checks for the routers."""

from app.auth.deps import Principal, require

__all__ = ["Principal", "require"]

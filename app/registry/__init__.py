"""Park registry: which parks and devices exist, and what role each device plays."""

from app.registry.loader import RegistryError, load_registry, parse_registry
from app.registry.models import (
    COUNTER_QUANTITIES,
    INSTANT_QUANTITIES,
    RENEWABLE_ROLES,
    ROLE_COUNTERS,
    SUBMETER_ROLES,
    Device,
    Fuel,
    H2Class,
    Park,
    Registry,
    Role,
)

__all__ = [
    "COUNTER_QUANTITIES",
    "INSTANT_QUANTITIES",
    "RENEWABLE_ROLES",
    "ROLE_COUNTERS",
    "SUBMETER_ROLES",
    "Device",
    "Fuel",
    "H2Class",
    "Park",
    "Registry",
    "RegistryError",
    "Role",
    "load_registry",
    "parse_registry",
]

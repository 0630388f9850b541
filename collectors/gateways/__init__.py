"""Broker users and per-park ACLs for Mosquitto: password file, ACL file, `lingtan gateways`."""

from collectors.gateways.acl import COLLECTOR_READ, gateway_prefix, render_block, user_rules
from collectors.gateways.names import AuthConfigError, check_park, check_username
from collectors.gateways.passwd import (
    generate_password,
    hash_password,
    read_entries,
    remove_user,
    set_user,
    verify_password,
)
from collectors.gateways.state import BrokerUser, load_state, save_state
from collectors.gateways.workflow import DEFAULT_COLLECTOR, RELOAD_HINT, BrokerAuth, Issued

__all__ = [
    "COLLECTOR_READ",
    "DEFAULT_COLLECTOR",
    "RELOAD_HINT",
    "AuthConfigError",
    "BrokerAuth",
    "BrokerUser",
    "Issued",
    "check_park",
    "check_username",
    "gateway_prefix",
    "generate_password",
    "hash_password",
    "load_state",
    "read_entries",
    "remove_user",
    "render_block",
    "save_state",
    "set_user",
    "user_rules",
    "verify_password",
]

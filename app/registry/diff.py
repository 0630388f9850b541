"""What changed between two registries: parks and devices added, removed or edited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.registry.models import Registry

#: Park settings that decide how stored intervals are aligned; changing them re-cuts time.
ALIGNMENT_FIELDS = ("timezone", "interval_minutes")


@dataclass(frozen=True, slots=True)
class RegistryDiff:
    """Ids of what differs; devices as `park/device`. Empty everywhere = same registry."""

    parks_added: tuple[str, ...] = ()
    parks_removed: tuple[str, ...] = ()
    parks_changed: tuple[str, ...] = ()
    devices_added: tuple[str, ...] = ()
    devices_removed: tuple[str, ...] = ()
    devices_changed: tuple[str, ...] = ()
    #: parks whose time zone or interval length changed (their intervals are cut differently)
    realigned: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any(
            (
                self.parks_added,
                self.parks_removed,
                self.parks_changed,
                self.devices_added,
                self.devices_removed,
                self.devices_changed,
            )
        )

    def touched_parks(self) -> set[str]:
        """Every park with any difference (added, removed or edited)."""
        return {*self.parks_added, *self.parks_removed, *self.parks_changed}

    def stale_devices(self, old: Registry) -> set[tuple[str, str]]:
        """(park, device) whose derived state (interval history, live values) no longer holds:
        removed or edited devices, and every device of a removed or realigned park."""
        out = {_split(d) for d in (*self.devices_removed, *self.devices_changed)}
        for park_id in (*self.parks_removed, *self.realigned):
            park = old.park(park_id)
            if park is not None:
                out.update((park_id, d.id) for d in park.devices)
        return out

    def summary(self, limit: int = 200) -> dict[str, Any]:
        """For audit details and API answers: the non-empty lists, each cut at `limit` ids."""
        out: dict[str, Any] = {}
        for name in (
            "parks_added",
            "parks_removed",
            "parks_changed",
            "devices_added",
            "devices_removed",
            "devices_changed",
            "realigned",
        ):
            ids: tuple[str, ...] = getattr(self, name)
            if ids:
                out[name] = list(ids[:limit])
                if len(ids) > limit:
                    out[f"{name}_total"] = len(ids)
        return out


def _split(key: str) -> tuple[str, str]:
    park, _, device = key.partition("/")
    return park, device


def diff_registries(old: Registry, new: Registry) -> RegistryDiff:
    """Compare by id; a device counts as changed when any of its fields differs."""
    old_ids, new_ids = old.park_map, new.park_map
    parks_changed: list[str] = []
    realigned: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    for park_id, after in new_ids.items():
        before = old_ids.get(park_id)
        if before is None:
            continue
        if before == after:
            continue
        parks_changed.append(park_id)
        if any(getattr(before, f) != getattr(after, f) for f in ALIGNMENT_FIELDS):
            realigned.append(park_id)
        for dev_id, dev in after.device_map.items():
            prev = before.device(dev_id)
            if prev is None:
                added.append(f"{park_id}/{dev_id}")
            elif prev != dev:
                changed.append(f"{park_id}/{dev_id}")
        removed.extend(f"{park_id}/{d}" for d in before.device_map if d not in after.device_map)
    return RegistryDiff(
        parks_added=tuple(p for p in new_ids if p not in old_ids),
        parks_removed=tuple(p for p in old_ids if p not in new_ids),
        parks_changed=tuple(parks_changed),
        devices_added=tuple(added),
        devices_removed=tuple(removed),
        devices_changed=tuple(changed),
        realigned=tuple(realigned),
    )

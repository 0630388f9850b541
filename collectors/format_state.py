"""Gateway-format state kept across collector restarts: the Sparkplug BIRTHs' aliases.

Without it a restarted collector could not read the DATA messages the broker queued for it
while it was down (their metrics carry only aliases) and would dead-letter them all; with
it they are read with the aliases of the BIRTHs they follow (docs/gateways.md).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from app.telemetry.formats.sparkplug import SparkplugFormat

log = logging.getLogger(__name__)


class FormatState:
    """Loads and saves one collector's Sparkplug state as JSON beside its spool."""

    def __init__(self, path: Path, sparkplug: SparkplugFormat) -> None:
        self.path = path
        self.sparkplug = sparkplug
        self._saved = sparkplug.version

    def load(self) -> None:
        """Restore the saved state; a missing or unreadable file starts empty (the edge
        nodes are then asked for a rebirth when their data arrives)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.sparkplug.import_state(data)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable gateway state %s: %s", self.path, exc)
            return
        self._saved = self.sparkplug.version

    def save_if_changed(self) -> None:
        """Write the state if a BIRTH or DEATH changed it since the last save (atomically)."""
        version = self.sparkplug.version
        if version == self._saved:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.sparkplug.export_state()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save gateway state to %s: %s", self.path, exc)
            return
        self._saved = version

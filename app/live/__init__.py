"""Live view: in-memory latest values per device, the `/live` document and its SSE stream."""

from app.live.state import DeviceLive, LiveState

__all__ = ["DeviceLive", "LiveState"]

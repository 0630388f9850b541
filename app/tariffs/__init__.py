"""Energy tariffs: time-of-use periods and prices a park's cost is computed with (docs/cost.md)."""

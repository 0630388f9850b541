"""Data-quality reports: what share of a park's numbers is measured, estimated or missing."""

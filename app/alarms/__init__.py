"""Alarms: rules over the live view and storage, an audited alarm log, and its delivery."""

"""Telemetry domain: the MQTT payload contract, its validation and the reading types."""

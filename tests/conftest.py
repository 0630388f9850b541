"""Test-wide fixtures: real Mosquitto and influxd processes on free loopback ports."""

pytest_plugins = [
    "tests.fixtures.mosquitto",
    "tests.fixtures.influx",
    "tests.fixtures.sql",
    "tests.fixtures.storage",
    "tests.process_support",
]

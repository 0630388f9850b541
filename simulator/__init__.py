"""Realistic park simulator: physics, gateway behaviour, ground truth and MQTT publishing."""

from simulator.generator import SimMessage, SimOptions, simulate, simulate_parks
from simulator.options import GatewayOptions
from simulator.plant import ParkModel, StepResult
from simulator.registry_ext import add_synthetic_loads, dump_registry
from simulator.truth import TruthAccumulator

__all__ = [
    "GatewayOptions",
    "ParkModel",
    "SimMessage",
    "SimOptions",
    "StepResult",
    "TruthAccumulator",
    "add_synthetic_loads",
    "dump_registry",
    "simulate",
    "simulate_parks",
]

"""Normalizing flows (zuko through ``pyro.contrib.zuko``), as density models and as SVI guides."""

from .flow import FLOW_KINDS, Flow
from .guide import FlowGuide, fit_guide

__all__ = ["Flow", "FLOW_KINDS", "FlowGuide", "fit_guide"]

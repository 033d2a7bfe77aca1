"""Spread on networks: SI/SIS/SIR/SEIR, cascades and thresholds as stochastic Pyro simulators."""

from .analysis import celf_influence, choose_nodes, final_size_equation, homogeneous_ode
from .model import Spread
from .simulate import COMPARTMENTS, Outbreaks, gillespie, simulate_batch

__all__ = ["Spread", "Outbreaks", "COMPARTMENTS", "simulate_batch", "gillespie", "choose_nodes", "celf_influence",
           "homogeneous_ode", "final_size_equation"]

"""Bayesian networks: a pgmpy DAG with CPDs, batched exact inference on torch, causal queries."""

from .causal import NHEFS_EDGES, ate, counterfactual, nhefs_network, twin_network
from .learn import learn_structure, posterior_interval, shd
from .network import BayesianNetwork

__all__ = ["BayesianNetwork", "ate", "counterfactual", "twin_network", "learn_structure", "posterior_interval", "shd",
           "nhefs_network", "NHEFS_EDGES"]

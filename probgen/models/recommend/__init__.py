"""Recommenders with one interface (``recommend``, ``predict``, fold-in of new users): Mult-VAE / Mult-DAE
(a multinomial likelihood over each user's items) and Bayesian matrix factorisation (Gibbs, NUTS or SVI).
The RBM recommender lives with the RBMs (``probgen.models.rbm.RecommenderRBM``) and shares the interface."""

from .bpmf import BayesianMF, GibbsMFKernel
from .interface import Recommender, ratings_frame
from .multvae import MultDAE, MultVAE, UserMultinomial

__all__ = ["MultVAE", "MultDAE", "BayesianMF", "Recommender", "UserMultinomial", "GibbsMFKernel", "ratings_frame"]

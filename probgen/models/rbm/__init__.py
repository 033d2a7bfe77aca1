"""Restricted Boltzmann machines (CD-k, PCD, tempering through a block-Gibbs kernel) and the RBM recommender."""

from .rbm import RBM, BlockGibbsKernel
from .recommend import RecommenderRBM

__all__ = ["RBM", "RecommenderRBM", "BlockGibbsKernel"]

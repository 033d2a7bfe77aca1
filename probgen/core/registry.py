"""The one table of model families: family name -> where its class lives.

Built-in families are listed here as ``"module:Class"`` and imported only when asked for, so
``probgen.load`` imports just the family it loads. A ``Model`` subclass defined elsewhere with
a ``family`` name adds itself when its class is created, so it saves and loads too.

Adding a family: write its subpackage under ``probgen/models/`` and add one line below.
"""

from __future__ import annotations

__all__ = ["BUILTIN_FAMILIES", "register_family", "family_class", "family_names", "class_location"]

import importlib

# family name -> "module:Class" (imported lazily)
BUILTIN_FAMILIES: dict[str, str] = {
    "linear_regression": "probgen.models.regression:BayesianLinearRegression",
    "bayesian_network": "probgen.models.bayesnet:BayesianNetwork",
    "markov_chain": "probgen.models.markov:MarkovChain",
    "text_generator": "probgen.models.markov:TextGenerator",
    "spread": "probgen.models.spread:Spread",
    "autoencoder": "probgen.models.autoencoders:Autoencoder",
    "adversarial_autoencoder": "probgen.models.autoencoders:AdversarialAutoencoder",
    "vae": "probgen.models.autoencoders:VAE",
    "gan": "probgen.models.gan:GAN",
    "conditional_gan": "probgen.models.gan:ConditionalGAN",
    "text_to_image_gan": "probgen.models.gan:TextToImageGAN",
    "image_to_image_gan": "probgen.models.gan:ImageToImageGAN",
    "super_resolution_gan": "probgen.models.gan:SuperResolutionGAN",
    "rbm": "probgen.models.rbm:RBM",
    "recommender_rbm": "probgen.models.rbm:RecommenderRBM",
    "mult_vae": "probgen.models.recommend:MultVAE",
    "mult_dae": "probgen.models.recommend:MultDAE",
    "bayesian_mf": "probgen.models.recommend:BayesianMF",
    "pixel_cnn": "probgen.models.pixel:PixelCNN",
    "pixel_rnn": "probgen.models.pixel:PixelRNN",
    "flow": "probgen.models.flows:Flow",
    "gaussian_copula": "probgen.models.copula:GaussianCopula",
    "diffusion": "probgen.models.diffusion:Diffusion",
    "semi_supervised_vae": "probgen.models.semisupervised:SemiSupervisedVAE",
    "stacked_semi_supervised_vae": "probgen.models.semisupervised:StackedSemiSupervisedVAE",
    "semi_supervised_gan": "probgen.models.semisupervised:SemiSupervisedGAN",
    "chord_ngram": "probgen.models.music:ChordNGram",
    "rnn_rbm": "probgen.models.music:RNNRBM",
    "roll_nade": "probgen.models.music:RollNADE",
    "deep_markov": "probgen.models.music:DeepMarkovModel",
}

_FAMILIES: dict[str, type | str] = dict(BUILTIN_FAMILIES)


def register_family(cls: type) -> type:
    """Record ``cls`` under its ``family`` name (called when a ``Model`` subclass is created)."""
    name = cls.family
    current = _FAMILIES.get(name)
    location = f"{cls.__module__}:{cls.__qualname__}"
    if isinstance(current, type) and current is not cls and class_location(current) != location:
        raise ValueError(f"family name {name!r} is taken by {class_location(current)}")
    if isinstance(current, str):
        module, _, qualname = current.partition(":")
        if qualname != cls.__qualname__ or not (cls.__module__ == module or cls.__module__.startswith(module + ".")):
            raise ValueError(f"family name {name!r} is taken by {current}")
    _FAMILIES[name] = cls
    return cls


def class_location(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def family_class(name: str) -> type:
    """The class of the family ``name``, importing only its own module (``KeyError`` listing valid names)."""
    from .checks import unknown_key

    if not isinstance(name, str) or name not in _FAMILIES:
        raise unknown_key("family", name, _FAMILIES)
    entry = _FAMILIES[name]
    if isinstance(entry, str):
        module, _, qualname = entry.partition(":")
        entry = getattr(importlib.import_module(module), qualname)
        _FAMILIES[name] = entry
    return entry


def family_names() -> list[str]:
    """Every family name, built-in and registered, without importing any family."""
    return sorted(_FAMILIES)

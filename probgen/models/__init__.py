"""The model families, one module each, imported on first use.

``available()`` lists the registered family names; ``get(name)`` returns a class.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..core.registry import family_class, registered_families

# public class name -> module defining it (imported lazily, so `import probgen` stays fast)
_CLASSES = {
    "BayesianLinearRegression": "regression",
    "BayesianNetwork": "bayesnet",
    "MarkovChain": "markov",
    "TextGenerator": "text",
    "Spread": "spread",
    "Autoencoder": "autoencoder",
    "AdversarialAutoencoder": "autoencoder",
    "VAE": "vae",
    "GAN": "gan",
    "ConditionalGAN": "gan",
    "TextToImageGAN": "gan_text",
    "ImageToImageGAN": "gan_image",
    "SuperResolutionGAN": "gan_image",
    "RBM": "rbm",
    "RecommenderRBM": "rbm_recommend",
    "PixelCNN": "pixel",
    "PixelRNN": "pixel",
    "Flow": "flows",
    "Diffusion": "diffusion",
}

__all__ = ["available", "get", *_CLASSES]


def __getattr__(name: str):
    if name in _CLASSES:
        if importlib.util.find_spec(f"{__name__}.{_CLASSES[name]}") is None:
            raise AttributeError(f"probgen.models.{name} is not available in this version")
        module = importlib.import_module(f".{_CLASSES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'probgen.models' has no attribute {name!r}")


def _import_all() -> None:
    for module in sorted(set(_CLASSES.values())):
        # a family module that does not exist (yet) is skipped; one that fails to import raises
        if importlib.util.find_spec(f"{__name__}.{module}") is not None:
            importlib.import_module(f".{module}", __name__)


def available() -> list[str]:
    """The registered family names.

    Example:
        >>> "linear_regression" in available()
        True
    """
    _import_all()
    return sorted(registered_families())


def get(name: str) -> type:
    """The class of the family called ``name`` (``KeyError`` listing valid names)."""
    _import_all()
    return family_class(name)

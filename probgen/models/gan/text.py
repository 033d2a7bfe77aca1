"""Text-to-image GAN on digits: a generator conditioned on a learned code of the caption."""

from __future__ import annotations

__all__ = ["TextToImageGAN"]

from typing import Any, Sequence

import numpy as np
import torch

from ...core.base import Model  # noqa: E402
from ...core.base import ContractCase
from ...core.checks import as_tensor, check_positive, unknown_key
from ...datasets.captions import ATTRIBUTE_WORDS, DIGIT_WORDS, caption_digits
from ...nn.text import TextEncoder
from .gan import GAN, _check_temperature, _data_tensor

VOCABULARY = ("<pad>", "a", *ATTRIBUTE_WORDS, *DIGIT_WORDS)


class TextToImageGAN(GAN):
    r"""A GAN whose generator and projection critic are conditioned on an encoded caption.

    Captions are lower-case words of ``vocabulary`` (by default: "a", the digit names
    "zero"…"nine" and the attributes "thin", "thick", "upright", "slanted"; see
    ``caption_digits``). The text encoder sums learned word embeddings and maps
    them linearly, so a caption whose words were never seen *together* in
    training still has a meaningful code. The critic has its own text encoder and is
    matching-aware (Reed et al. 2016): real images under another example's caption
    count as fake, which forces the generator to follow the caption. Unknown words raise ``KeyError`` naming
    the word (there is no silent unknown token).

    Arguments:
        data_shape: image shape, e.g. ``(1, 8, 8)`` (digits) or ``(1, 28, 28)``.
        vocabulary: the known words (index 0 is reserved for padding).
        text_dim: size of the caption code; ``word_dim``: of the word embeddings.
        max_words: the longest caption accepted.
        others: as for ``GAN``.

    Example:
        >>> import torch
        >>> x = torch.rand(32, 1, 8, 8)
        >>> caps = ["a thick seven", "a thin one"] * 16
        >>> m = TextToImageGAN(data_shape=(1, 8, 8), hidden=(8, 4))
        >>> _ = m.fit((x, caps), steps=2, progress=False, seed=0)
        >>> m.sample(3, seed=0, caption="a thin seven").shape
        torch.Size([3, 1, 8, 8])
    """

    family = "text_to_image_gan"
    matching_aware = True

    def __init__(self, data_shape: Sequence[int] = (1, 8, 8), latent_dim: int = 16, hidden: Sequence[int] = (256, 256),
                 critic_hidden: Sequence[int] | None = None, objective: str = "hinge", spectral_norm: bool = True,
                 pack: int = 1, ema: float | None = None, gp_weight: float = 10.0, r1_weight: float = 0.0,
                 vocabulary: Sequence[str] = VOCABULARY[1:], text_dim: int = 32, word_dim: int = 32,
                 max_words: int = 8):
        check_positive("text_dim", text_dim, integer=True)
        check_positive("word_dim", word_dim, integer=True)
        check_positive("max_words", max_words, integer=True)
        words = [str(w) for w in vocabulary]
        if len(set(words)) != len(words) or any((not w) or (" " in w) or w == "<pad>" for w in words):
            raise ValueError("vocabulary: expected distinct single words (without '<pad>')")
        self.vocabulary = ["<pad>", *words]
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.text_dim, self.max_words = int(text_dim), int(max_words)
        super().__init__(data_shape, latent_dim, hidden, critic_hidden, objective, spectral_norm, pack, ema, gp_weight,
                         r1_weight)
        self.text_encoder = TextEncoder(len(self.vocabulary), int(word_dim), self.text_dim)
        self.critic_text_encoder = TextEncoder(len(self.vocabulary), int(word_dim), self.text_dim)

    # ------------------------------------------------------------ tokenizer
    def tokenize(self, captions: Any, name: str = "caption") -> torch.Tensor:
        """Token ids ``(n, max_words)`` of a caption or a list of captions (0 = padding)."""
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, (list, tuple, np.ndarray)) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"{name}: expected a caption string or a list of caption strings")
        out = torch.zeros(len(captions), self.max_words, dtype=torch.long)
        for i, caption in enumerate(captions):
            words = caption.lower().split()
            if not words:
                raise ValueError(f"{name}: caption {i} is empty")
            if len(words) > self.max_words:
                raise ValueError(f"{name}: caption {caption!r} has {len(words)} words; max_words is {self.max_words}")
            for j, word in enumerate(words):
                if word not in self.index:
                    raise unknown_key(f"word in {name}", word, self.vocabulary[1:])
                out[i, j] = self.index[word]
        return out

    # ------------------------------------------------------------ conditioning
    def _cond_dim(self) -> int:
        return self.text_dim

    def _condition(self, *cond: torch.Tensor) -> tuple:
        if len(cond) != 1:
            raise ValueError("caption: the text-to-image GAN needs one caption per example")
        return (self.text_encoder(cond[0]),)

    def _critic_condition(self, *cond: torch.Tensor) -> tuple:
        return (self.critic_text_encoder(cond[0]),)

    def prepare_data(self, data: Any, name: str = "data") -> tuple[torch.Tensor, ...]:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"{name}: expected a pair (images, captions)")
        (x,) = super().prepare_data(_data_tensor(data[0], name), f"{name}[0] (images)")
        captions = data[1]
        tokens = captions if isinstance(captions, torch.Tensor) else self.tokenize(list(captions), f"{name}[1] (captions)")
        if len(tokens) != len(x):
            raise ValueError(f"{name}: {len(x)} images but {len(tokens)} captions")
        return x, tokens.to(torch.long)

    def _sample(self, n: int, caption: Any = None, temperature: float = 1.0, **condition: Any) -> torch.Tensor:
        if condition:
            raise ValueError(f"sample: unexpected condition {sorted(condition)}; give caption='a thick seven'")
        if caption is None:
            raise ValueError("caption: sample needs a caption (or a list of n captions)")
        tokens = self.tokenize(caption).to(self.device)
        if len(tokens) == 1:
            tokens = tokens.expand(n, -1)
        elif len(tokens) != n:
            raise ValueError(f"caption: expected one caption or n={n} captions, got {len(tokens)}")
        return GAN.model(self, n, tokens, temperature=_check_temperature(temperature))

    def fit_encoder(self, data: Any, *cond: Any, **options: Any):
        x, tokens = self.prepare_data(data)
        return super().fit_encoder(x, tokens, **options)

    def score(self, x: Any, caption: Any = None) -> torch.Tensor:
        """Anomaly score of images under their captions (or of an (images, captions) pair)."""
        if caption is None and isinstance(x, (tuple, list)) and len(x) == 2:
            x, caption = x
        if caption is None:
            raise ValueError("caption: give score(x, captions)")
        x = as_tensor(_data_tensor(x, "x"), "x", ndim=1 + len(self.data_shape), shape=self.data_shape)
        tokens = self.tokenize([caption] * len(x) if isinstance(caption, str) else list(caption), "caption")
        if len(tokens) != len(x):
            raise ValueError(f"caption: {len(x)} images but {len(tokens)} captions")
        return super().score(x, tokens)

    def encode(self, x: Any) -> torch.Tensor:
        raise NotImplementedError("TextToImageGAN.encode: the encoder needs captions; use score(x, captions)")

    def encode_text(self, caption: Any) -> torch.Tensor:
        """The text encoder's code of one caption or a list of captions."""
        with torch.no_grad():
            return self.text_encoder(self.tokenize(caption).to(self.device))

    @classmethod
    def _contract_case(cls) -> ContractCase:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(32, 1, 8, 8, generator=g)
        caps = ["a thick seven", "a thin one", "a slanted two", "a one"] * 8
        return ContractCase(cls(data_shape=(1, 8, 8), latent_dim=4, hidden=(8, 4)), (x, caps),
                            {"steps": 3, "batch_size": 16}, sample_kwargs={"caption": "a thin seven"})

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Captions in, digits out: including word pairs never seen together in training."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ...datasets.captions import DIGIT_WORDS
        from ...gallery import TourSection, demo_source, digit_agreement
        from ...plot import sample_grid

        steps = 150 if quick else 1000

        def demo():
            from probgen.datasets.captions import caption_digits

            torch.manual_seed(0)
            train = probgen.datasets.load("digits", split="train")
            captions, _ = caption_digits(train.x, train.y)  # "a thick slanted seven", from label and measured ink
            keep = torch.tensor(["thick seven" not in c for c in captions])  # never show a thick seven
            model = probgen.models.TextToImageGAN(data_shape=(1, 8, 8), hidden=(256, 256), latent_dim=16, ema=0.99)
            model.fit((train.x[keep], [c for c, k in zip(captions, keep) if k]), steps=steps, batch_size=128,
                      lr=5e-4, seed=0, progress=False)
            asked = ["a zero", "a thin one", "a two", "a slanted three", "a four", "a thick five", "a six",
                     "a thick seven", "an eight", "a thin nine"]
            images = {c: model.sample(6, seed=0, caption=c.replace("an ", "a ")) for c in asked}
            return images

        images = demo()
        digits = [next(i for i, w in enumerate(DIGIT_WORDS) if c.endswith(w)) for c in images]
        read = digit_agreement(torch.cat(list(images.values())), torch.tensor(digits).repeat_interleave(6))
        unseen = digit_agreement(images["a thick seven"], torch.full((6,), 7))
        fig, axes = plt.subplots(len(images), 1, figsize=(4, 9))
        for ax, (caption, x) in zip(axes, images.items()):
            sample_grid(x, nrow=6, ax=ax)
            ax.set_title(caption, fontsize=8, loc="left")
        path = os.path.join(out_dir, "text_to_image_gan.png")
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        return TourSection(cls.family, "Text-to-image GAN: captions to digits",
                           [(path, "six samples per caption; 'a thick seven' never appeared in training")],
                           {"samples read as the captioned digit": f"{100 * read:.0f}%",
                            "'a thick seven' (unseen pair) read as a seven": f"{100 * unseen:.0f}%"},
                           demo_source(demo, steps=steps), "works" if read >= 0.8 else "limited")


"""Text-to-image GAN on digits: captions from labels and measured attributes, a learned text encoder."""

from __future__ import annotations

__all__ = ["TextToImageGAN", "digit_attributes", "caption_digits", "DIGIT_WORDS", "ATTRIBUTE_WORDS"]

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...core.base import Model  # noqa: E402
from ...core.base import ContractCase
from ...core.checks import as_tensor, check_positive, unknown_key
from .gan import GAN, _check_temperature, _data_tensor

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTE_WORDS = ("thin", "thick", "upright", "slanted")
VOCABULARY = ("<pad>", "a", *ATTRIBUTE_WORDS, *DIGIT_WORDS)


def digit_attributes(x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Thickness and slant of each image (n, 1, H, W) in [0, 1].

    Thickness is the mean ink per row that has ink (a stroke-width proxy, in pixels);
    slant is the shear of the ink's second moments, ``cov(col, row) / var(row)``
    (positive: the top leans right).

    Example:
        >>> x = torch.zeros(1, 1, 8, 8); x[0, 0, :, 3] = 1
        >>> [abs(round(float(t[0]), 2)) for t in digit_attributes(x)]
        [1.0, 0.0]
    """
    x = as_tensor(x, "x", ndim=4)
    img = x[:, 0]
    h, w = img.shape[-2:]
    rows = torch.arange(h, dtype=img.dtype, device=img.device)[None, :, None]
    cols = torch.arange(w, dtype=img.dtype, device=img.device)[None, None, :]
    mass = img.sum((1, 2)).clamp_min(1e-6)
    inked_rows = (img.sum(2) > 0.1 * img.amax((1, 2))[:, None]).sum(1).clamp_min(1)
    thickness = mass / inked_rows
    r_mean = (img * rows).sum((1, 2)) / mass
    c_mean = (img * cols).sum((1, 2)) / mass
    var_r = (img * (rows - r_mean[:, None, None]) ** 2).sum((1, 2)) / mass
    cov = (img * (rows - r_mean[:, None, None]) * (cols - c_mean[:, None, None])).sum((1, 2)) / mass
    slant = -cov / var_r.clamp_min(1e-6)  # rows grow downwards: the top leaning right gives negative cov
    return thickness, slant


def caption_digits(x: Any, y: Any, thresholds: dict | None = None) -> tuple[list[str], dict]:
    """Captions such as ``"a thick slanted seven"`` from labels and measured attributes.

    An attribute word is added when the image lies in the lower / upper third of the
    data's thickness ("thin" / "thick") or slant ("upright" / "slanted"). Returns the
    captions and the thresholds (pass them back to caption other images the same way).

    Example:
        >>> x = torch.rand(30, 1, 8, 8); y = torch.arange(30) % 10
        >>> caps, th = caption_digits(x, y)
        >>> caps[0].startswith("a ") and caps[0].endswith("zero")
        True
    """
    thickness, slant = digit_attributes(x)
    labels = as_tensor(y, "y", dtype=torch.long, ndim=1)
    if len(labels) != len(thickness) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError("y: expected one digit label in [0, 9] per image")
    if thresholds is None:
        q = torch.tensor([1 / 3, 2 / 3])
        thresholds = {"thickness": torch.quantile(thickness, q).tolist(), "slant": torch.quantile(slant, q).tolist()}
    captions = []
    for t, s, k in zip(thickness.tolist(), slant.tolist(), labels.tolist()):
        words = ["a"]
        if t < thresholds["thickness"][0]:
            words.append("thin")
        elif t > thresholds["thickness"][1]:
            words.append("thick")
        if s < thresholds["slant"][0]:
            words.append("upright")
        elif s > thresholds["slant"][1]:
            words.append("slanted")
        words.append(DIGIT_WORDS[k])
        captions.append(" ".join(words))
    return captions, thresholds


class TextEncoder(nn.Module):
    """Sum of learned word embeddings, then a linear map.

    The code of a caption is additive in its words (``code("a thick two") = code("a two")
    + e("thick")``), which is what lets a word combination never seen in training still
    mean both of its words.
    """

    def __init__(self, vocab_size: int, embed_dim: int, out_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.linear = nn.Linear(embed_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.embedding(tokens).sum(1))


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
                 critic_hidden: Sequence[int] | None = None, loss: str = "hinge", spectral_norm: bool = True,
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
        super().__init__(data_shape, latent_dim, hidden, critic_hidden, loss, spectral_norm, pack, ema, gp_weight,
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


# The GAN tour fits unlabelled points; text-to-image tours through its captioned contract case.
TextToImageGAN.tour = classmethod(Model.tour.__func__)

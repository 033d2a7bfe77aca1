"""n-gram text generation: a Markov chain over tokens with Kneser–Ney or add-k smoothing."""

from __future__ import annotations

__all__ = ["TextGenerator", "tokenize"]

import math
import re
from collections import Counter, OrderedDict
from typing import Any, Iterable, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from ...core.base import ContractCase, Model
from ...core.checks import check_choice, check_positive
from ...core.result import FitResult
from ...core.engines import implements
from .chain import MarkovChain, sample_chains

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+|[^\sa-z\d]")
_NO_SPACE_BEFORE = set(".,;:!?)]}'%")
_NO_SPACE_AFTER = set("([{")


def tokenize(text: str, level: str = "word") -> list[list[str]]:
    """Split ``text`` into documents (at blank lines) of tokens.

    ``"word"``: lower-cased words, numbers and single punctuation marks;
    ``"char"``: characters (newlines inside a document included).

    Example:
        >>> tokenize("Hello, world.\\n\\nBye!")
        [['hello', ',', 'world', '.'], ['bye', '!']]
    """
    check_choice("level", level, ("word", "char"))
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string, got {type(text).__name__}")
    docs = [d.strip() for d in re.split(r"\n\s*\n", text)]
    if level == "char":
        return [list(d) for d in docs if d]
    return [toks for toks in (_WORD.findall(d.lower()) for d in docs) if toks]


def _is_mark(tok: str) -> bool:
    return len(tok) == 1 and not tok.isalnum() and not tok.isspace()


def _detokenize(tokens: Sequence[str], level: str) -> str:
    if level == "char":
        return "".join(tokens)
    out: list[str] = []
    for tok in tokens:
        glued = _is_mark(tok) and _is_mark(out[-1]) if out else False  # ">>>", "__", "--" stay together
        if out and not glued and tok != "\n\n" and tok not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER and out[-1] != "\n\n":
            out.append(" ")
        out.append(tok)
    return "".join(out)


class TextGenerator(Model):
    r"""An n-gram language model: a Markov chain of order ``order`` over word or character tokens.

    It is a ``MarkovChain`` whose states are tokens, but its transition table is
    never built densely: a vocabulary of V tokens at order n would need a V**n × V
    tensor (10,000 words at order 2: 10**12 entries), while the text has at most one
    n-gram per token. So the counts live in sparse tables (dicts of n-gram tuples)
    and only the next-token distributions that are needed are computed.
    ``to_markov_chain()`` gives the dense ``MarkovChain`` (same probabilities) when
    it is small enough, for the chain analysis (stationary distribution, ...).

    Smoothing: ``"kneser_ney"`` is interpolated Kneser–Ney (Chen & Goodman 1999),
    one absolute discount per order D = n₁ / (n₁ + 2 n₂), continuation counts for the
    lower orders, interpolated down to the uniform distribution; ``"add_k"`` adds
    ``k`` to every count of the highest order (``k=1``: add-one / Laplace).
    Documents are padded with ``order`` start tokens and one end token; tokens seen
    fewer than ``min_count`` times in training become ``<unk>``.

    Arguments:
        order: how many previous tokens the next one depends on (order 2 = trigrams).
        level: ``"word"`` or ``"char"``.
        estimator: the smoothed estimate of the next-token probabilities, ``"kneser_ney"``
            (interpolated, modified Kneser-Ney) or ``"add_k"``.
        k: the pseudo-count of add-k smoothing.
        min_count: rarer training tokens map to ``<unk>`` (default 2 for words, 1 for characters).

    References:
        Kneser & Ney, Improved backing-off for m-gram language modeling, ICASSP 1995.
        Chen & Goodman, An empirical study of smoothing techniques for language modeling, 1999.

    Example:
        >>> import probgen
        >>> tg = probgen.models.TextGenerator(order=2, level="char")
        >>> _ = tg.fit("the cat sat on the mat. the cat ate.", progress=False)
        >>> len(tg.generate(20, seed=0))
        20
        >>> tg.perplexity("the cat sat.") < tg.num_tokens
        True
    """

    family = "text_generator"
    renamed_config_keys = {"smoothing": "estimator"}
    default_inference = "exact"
    log_prob_kind = "exact"

    def __init__(self, order: int = 2, level: str = "word", estimator: str = "kneser_ney", k: float = 1.0,
                 min_count: int | None = None):
        check_positive("order", order, integer=True)
        check_choice("level", level, ("word", "char"))
        check_choice("estimator", estimator, ("kneser_ney", "add_k"))
        check_positive("k", k)
        if min_count is not None:
            check_positive("min_count", min_count, integer=True)
        super().__init__()
        self.order = int(order)
        self.level = level
        self.estimator = estimator
        self.k = float(k)
        self.min_count = int(min_count) if min_count is not None else (2 if level == "word" else 1)
        self.vocab: list[str] = []
        self._allocate(0)
        self.register_load_state_dict_post_hook(lambda module, keys: module._invalidate())

    # ------------------------------------------------------------ state
    def _allocate(self, m: int) -> None:
        # only the highest-order raw counts are stored; every other table is derived from them
        self.register_buffer("ngrams", torch.zeros(m, self.order + 1, dtype=torch.long))
        self.register_buffer("ngram_counts", torch.zeros(m, dtype=torch.long))
        self._invalidate()

    def _invalidate(self) -> None:
        self._tables = None
        self._dense_cache: OrderedDict = OrderedDict()

    def get_state_json(self) -> dict:
        return {"vocab": self.vocab, "num_ngrams": len(self.ngram_counts)}

    def set_state_json(self, state: dict) -> None:
        self._set_vocab(list(state.get("vocab", [])))
        self._allocate(int(state.get("num_ngrams", 0)))

    def _set_vocab(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self._ids = {t: i for i, t in enumerate(vocab)}

    @property
    def num_tokens(self) -> int:
        """Size of the predicted vocabulary (tokens, ``</s>`` and ``<unk>``; not ``<s>``)."""
        return len(self.vocab) - 1 if self.vocab else 0

    def _require_fitted(self, what: str) -> None:
        super()._require_fitted(what, bool(self.vocab), "call fit(text) first")

    # ------------------------------------------------------------ data
    def _documents(self, data: Any, name: str) -> list[list[str]]:
        if data is None:
            from ...datasets import load

            data = load("english", split="train")
        if isinstance(data, str):
            docs = tokenize(data, self.level)
        elif isinstance(data, (list, tuple)) and all(isinstance(d, str) for d in data):
            docs = [toks for d in data for toks in tokenize(d, self.level)]
        else:
            raise ValueError(f"{name}: expected text (a string or a list of strings), got {type(data).__name__}")
        if not docs:
            raise ValueError(f"{name}: empty corpus; expected some text")
        return docs

    def _encode(self, docs: Iterable[list[str]]) -> list[list[int]]:
        unk, bos, eos = self._ids[UNK], self._ids[BOS], self._ids[EOS]
        return [[bos] * self.order + [self._ids.get(t, unk) for t in d] + [eos] for d in docs]

    # ------------------------------------------------------------ fitting
    def fit(self, data: Any = None, *, inference: str | None = None, **options: Any) -> FitResult:
        """Count the n-grams of ``data`` (text; the English corpus of ``probgen.datasets`` when ``None``)."""
        return super().fit(data, inference=inference, **options)

    @implements("exact")
    def _fit_exact(self, data: Any = None, **options: Any) -> FitResult:
        from ...infer.options import parse_options

        opts = parse_options("exact", options)
        docs = self._documents(data, "data")
        freq = Counter(t for d in docs for t in d)
        kept = sorted(t for t, c in freq.items() if c >= self.min_count and t not in (BOS, EOS, UNK))
        # <s> last, so ids 0..V-1 are exactly the predicted tokens
        self._set_vocab(kept + [UNK, EOS, BOS])
        n = self.order + 1
        counts: Counter = Counter()
        for ids in self._encode(docs):
            counts.update(zip(*(ids[i:] for i in range(n))))
        self._allocate(len(counts))
        if counts:
            self.ngrams = torch.tensor(list(counts.keys()), dtype=torch.long)
            self.ngram_counts = torch.tensor(list(counts.values()), dtype=torch.long)
        return FitResult(model=self, engine="exact", device=str(opts.device),
                         info={"documents": len(docs), "tokens": sum(len(d) for d in docs), "vocabulary": len(kept),
                               "ngrams": len(counts)})

    def _build_tables(self) -> None:
        """Counts per order (raw at the top, continuation counts below), context totals, discounts."""
        n = self.order + 1
        top = dict(zip(map(tuple, self.ngrams.tolist()), self.ngram_counts.tolist()))
        counts = {n: top}
        for j in range(n - 1, 0, -1):
            cont: Counter = Counter()
            for gram in counts[j + 1]:
                cont[gram[1:]] += 1  # distinct left extensions
            counts[j] = dict(cont)
        contexts, discounts = {}, {}
        for j, table in counts.items():
            stats: dict = {}
            for gram, c in table.items():
                s = stats.get(gram[:-1])
                stats[gram[:-1]] = (c, 1) if s is None else (s[0] + c, s[1] + 1)
            contexts[j] = stats
            histogram = Counter(v for v in table.values() if v <= 2)
            n1, n2 = histogram.get(1, 0), histogram.get(2, 0)
            discounts[j] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
        self._tables = {"counts": counts, "contexts": contexts, "discounts": discounts, "followers": {}}

    @property
    def tables(self) -> dict:
        self._require_fitted("tables")
        if self._tables is None:
            self._build_tables()
        return self._tables

    # ------------------------------------------------------------ probabilities
    def prob(self, token_id: int, context: Sequence[int]) -> float:
        """P(next token | the last ``order`` token ids of ``context``)."""
        t = self.tables
        v = self.num_tokens
        n = self.order + 1
        ctx = tuple(context[len(context) - self.order:]) if self.order else ()
        if self.estimator == "add_k":
            c = t["counts"][n].get(ctx + (token_id,), 0)
            total = t["contexts"][n].get(ctx, (0, 0))[0]
            return (c + self.k) / (total + self.k * v)
        p = 1.0 / v
        for j, h, total, types, d in self._kneser_ney_levels(ctx):
            c = t["counts"][j].get(h + (token_id,), 0)
            p = (max(c - d, 0.0) + d * types * p) / total
        return p

    def _kneser_ney_levels(self, ctx: tuple):
        """Interpolated Kneser-Ney, lowest order first: ``(order, history, count, types, discount)``
        for each order whose history was seen (``prob`` and ``next_distribution`` both walk these)."""
        t = self.tables
        for j in range(1, self.order + 2):
            h = ctx[len(ctx) - (j - 1):] if j > 1 else ()
            total, types = t["contexts"][j].get(h, (0, 0))
            if total:
                yield j, h, total, types, t["discounts"][j]

    def _followers(self, j: int, h: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
        t = self.tables
        if not t["followers"]:
            for jj, table in t["counts"].items():
                groups: dict = {}
                for gram, c in table.items():
                    groups.setdefault(gram[:-1], ([], []))
                    groups[gram[:-1]][0].append(gram[-1])
                    groups[gram[:-1]][1].append(c)
                t["followers"][jj] = groups
        g = t["followers"][j].get(h)
        if g is None:
            return None
        return torch.tensor(g[0], dtype=torch.long), torch.tensor(g[1], dtype=torch.float64)

    def next_distribution(self, context: Sequence[int]) -> torch.Tensor:
        """The full next-token distribution (float64, length ``num_tokens``) after ``context`` (ids)."""
        ctx = tuple(context[len(context) - self.order:])
        hit = self._dense_cache.get(ctx)
        if hit is not None:
            self._dense_cache.move_to_end(ctx)
            return hit
        v, n = self.num_tokens, self.order + 1
        if self.estimator == "add_k":
            p = torch.full((v,), self.k, dtype=torch.float64)
            f = self._followers(n, ctx)
            if f is not None:
                p.index_add_(0, f[0], f[1])
            p = p / p.sum()
        else:
            p = torch.full((v,), 1.0 / v, dtype=torch.float64)
            for j, h, total, types, d in self._kneser_ney_levels(ctx):
                ids, cs = self._followers(j, h)
                p = p * (d * types / total)
                p.index_add_(0, ids, (cs - d).clamp_min(0) / total)
        self._dense_cache[ctx] = p
        if len(self._dense_cache) > 4096:
            self._dense_cache.popitem(last=False)
        return p

    def log_prob(self, texts: Any) -> torch.Tensor:
        """Exact log-probability (nats) of each document (tokens and the end token; float64)."""
        self._require_fitted("log_prob")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(x, str) for x in texts):
            raise ValueError("texts: expected a string or a list of strings")
        out = []
        for text in texts:
            docs = tokenize(text, self.level) or [[]]
            out.append(sum(self._doc_log_prob(ids) for ids in self._encode(docs)))
        return torch.tensor(out, dtype=torch.float64)

    def _doc_log_prob(self, ids: list[int]) -> float:
        return sum(math.log(self.prob(ids[i], ids[i - self.order:i])) for i in range(self.order, len(ids)))

    def perplexity(self, text: Any = None) -> float:
        """exp(mean negative log-probability per predicted token) on ``text`` (English test split when ``None``)."""
        self._require_fitted("perplexity")
        if text is None:
            from ...datasets import load

            text = load("english", split="test")
        docs = self._documents(text, "text")
        total, count = 0.0, 0
        for ids in self._encode(docs):
            total += self._doc_log_prob(ids)
            count += len(ids) - self.order
        return math.exp(-total / count)

    # ------------------------------------------------------------ sampling
    def _contexts(self, prompt: str | None, n: int) -> torch.Tensor:
        bos = self._ids[BOS]
        ids = [bos] * self.order
        if prompt:
            if not isinstance(prompt, str):
                raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
            docs = tokenize(prompt, self.level)
            if docs:
                ids += self._encode([docs[-1]])[0][self.order:-1]
        return torch.tensor(ids[len(ids) - self.order:], dtype=torch.long).expand(n, self.order).clone()

    def _draw(self, n: int, length: int, prompt: str | None, temperature: float) -> torch.Tensor:
        check_positive("temperature", temperature)
        eos, bos = self._ids[EOS], self._ids[BOS]

        def next_probs(ctx: torch.Tensor) -> torch.Tensor:
            rows = ctx.tolist()
            return torch.stack([self.next_distribution(r) for r in rows])

        def step(ctx: torch.Tensor) -> torch.Tensor:
            # after </s> a new document starts: </s> and everything before it reads as <s> padding
            before_end = (ctx == eos).flip(1).cummax(1).values.flip(1)
            return next_probs(torch.where(before_end, torch.full_like(ctx, bos), ctx))

        return sample_chains(step, self._contexts(prompt, n), length, self.num_tokens, temperature,
                             forbid=[self._ids[UNK]])

    def _render(self, ids: Sequence[int]) -> str:
        eos = self._ids[EOS]
        return _detokenize(["\n\n" if i == eos else self.vocab[i] for i in ids], self.level)

    def _sample(self, n: int, length: int = 20, prompt: str | None = None, temperature: float = 1.0) -> list[str]:
        """``n`` texts of ``length`` tokens each, drawn as ``n`` chains at once."""
        self._require_fitted("sample")
        check_positive("length", length, integer=True)
        return [self._render(row) for row in self._draw(n, int(length), prompt, temperature).tolist()]

    def generate(self, num_tokens: int = 100, prompt: str | None = None, temperature: float = 1.0,
                 seed: int | None = None) -> str:
        """Text of ``num_tokens`` new tokens continuing ``prompt`` (``<unk>`` is never drawn).

        ``temperature`` < 1 sharpens the next-token distributions, > 1 flattens them.
        """
        check_positive("num_tokens", num_tokens, integer=True)
        return self.sample(1, seed=seed, length=num_tokens, prompt=prompt, temperature=temperature)[0]

    def model(self, texts: Sequence[str] | None = None) -> list[torch.Tensor]:
        """The Pyro program: one categorical site per token, under a plate over documents, ``pyro.markov`` over time.

        Documents are observed token by token (those shorter than the longest are
        masked after their end token).
        """
        self._require_fitted("model")
        if texts is None:
            raise ValueError("texts: the Pyro program observes texts; use sample() to generate")
        seqs = self._encode([d for t in texts for d in (tokenize(t, self.level) or [[]])])
        longest = max(map(len, seqs))
        obs = torch.tensor([s + [self._ids[EOS]] * (longest - len(s)) for s in seqs])
        lengths = torch.tensor([len(s) for s in seqs])
        out = []
        with pyro.plate("documents", len(seqs), dim=-1):
            for i in pyro.markov(range(self.order, longest)):
                probs = torch.stack([self.next_distribution(r) for r in obs[:, i - self.order:i].tolist()])
                with pyro.poutine.mask(mask=i < lengths):
                    out.append(pyro.sample(f"token_{i}", dist.Categorical(probs), obs=obs[:, i]))
        return out

    def to_markov_chain(self) -> MarkovChain:
        """The dense ``MarkovChain`` over the tokens with the same (smoothed) transition probabilities.

        Its states are the predicted tokens plus ``<s>`` (which only starts documents,
        and to which ``</s>`` leads back). Only for small models (V**order × V entries).
        """
        self._require_fitted("to_markov_chain")
        v = self.num_tokens + 1  # + <s>
        if v ** self.order * v > 5_000_000:
            raise ValueError(f"to_markov_chain: a dense table would need {v ** self.order * v} entries; "
                             "use a lower order or character level")
        bos, eos = self._ids[BOS], self._ids[EOS]
        rows = []
        for c in range(v ** self.order):
            ctx = [(c // v ** (self.order - 1 - j)) % v for j in range(self.order)]
            row = torch.zeros(v, dtype=torch.float64)
            if ctx[-1] == eos:
                row[bos] = 1.0
            else:
                row[:-1] = self.next_distribution(ctx)
            rows.append(row)
        return MarkovChain.from_matrix(torch.stack(rows).numpy(), states=list(self.vocab), order=self.order)

    # ------------------------------------------------------------ examples
    @classmethod
    def _contract_case(cls) -> ContractCase:
        text = ("the quick brown fox jumps over the lazy dog. the dog sleeps.\n\n"
                "a quick brown dog runs. the fox runs over the dog.")
        return ContractCase(cls(order=2, level="word", min_count=1), text, sample_kwargs={"length": 6},
                            log_prob_data=["the dog runs.", "a fox sleeps.", "the cat."])

    @classmethod
    def tour(cls, out_dir, quick: bool = False):
        """Character n-grams of orders 1-5 on English docstrings; held-out perplexity and a sample."""
        import os

        import matplotlib.pyplot as plt

        import probgen
        from ...gallery import TourSection, demo_source

        size = 50_000 if quick else 300_000

        def demo():
            from probgen.datasets._catalog import stdlib_docstrings

            docs = list(stdlib_docstrings(size))  # real English that ships with Python
            train, test = "\n\n".join(docs[:-100]), "\n\n".join(docs[-100:])
            perplexity = {}
            for order in (1, 2, 3, 4, 5):
                model = probgen.models.TextGenerator(order=order, level="char")  # Kneser-Ney
                model.fit(train, progress=False)
                perplexity[order] = model.perplexity(test)
            text = model.generate(300, seed=0)
            return perplexity, text

        perplexity, text = demo()
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(list(perplexity), list(perplexity.values()), "o-")
        ax.set(xlabel="order (characters of context)", ylabel="held-out perplexity per character",
               title="Kneser-Ney character models")
        path = os.path.join(out_dir, "text_generator.png")
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        best = min(perplexity.values())
        return TourSection(cls.family, "n-gram text from the standard library's docstrings",
                           [(path, "held-out perplexity per character (lower is better) against the model's order")],
                           {"held-out perplexity, order 1": f"{perplexity[1]:.2f}",
                            "held-out perplexity, order 5": f"{perplexity[5]:.2f}"},
                           demo_source(demo, size=size), "works" if best < perplexity[1] / 2 else "limited",
                           text=f"order-5 sample:\n{text}")

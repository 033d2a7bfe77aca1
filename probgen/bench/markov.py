"""Markov chains and n-gram text: held-out perplexity by order, and batched sampling against pgmpy."""

from __future__ import annotations

__all__ = ["run", "perplexity_table", "sampling_throughput"]

import time

import pandas as pd
import torch

from .harness import Report


def _corpus(quick: bool) -> tuple[str, str, str]:
    if quick:
        from ..datasets._catalog import stdlib_docstrings

        docs = list(stdlib_docstrings(60_000))
        cut = len(docs) - max(1, len(docs) // 10)
        return "\n\n".join(docs[:cut]), "\n\n".join(docs[cut:]), "first 60k characters of stdlib docstrings, 90/10"
    from ..datasets import load

    return load("english", split="train"), load("english", split="test"), "probgen english train / test split"


def perplexity_table(train: str, test: str, orders, levels=("word", "char")) -> pd.DataFrame:
    """Held-out perplexity of Kneser–Ney and add-one for each level and order (one count pass per model)."""
    from ..models.markov.text import TextGenerator

    rows = []
    for level in levels:
        for order in orders:
            kn = TextGenerator(order=order, level=level, estimator="kneser_ney")
            start = time.perf_counter()
            kn.fit(train, progress=False)
            fit_s = time.perf_counter() - start
            add1 = TextGenerator(order=order, level=level, estimator="add_k", k=1.0)
            add1.set_state_json(kn.get_state_json())
            add1.load_state_dict(kn.state_dict())
            rows.append({"level": level, "order": order, "kneser_ney": kn.perplexity(test),
                         "add_one": add1.perplexity(test), "vocabulary": kn.num_tokens, "fit_s": fit_s})
    return pd.DataFrame(rows).set_index(["level", "order"])


def sampling_throughput(train: str, chains: int, length: int, pgmpy_steps: int) -> tuple[float, float, int]:
    """Tokens/s of probgen (``chains`` chains batched) and of pgmpy ``MarkovChain.sample`` (one chain),
    on the same first-order character chain fitted to ``train``."""
    from ..models.markov.chain import MarkovChain
    from ..models.markov.text import tokenize

    chain = MarkovChain().fit(tokenize(train, "char"), progress=False).model
    chain.sample(chains, length=10, seed=0, indices=True)  # warm-up
    start = time.perf_counter()
    chain.sample(chains, length=length, seed=0, indices=True)
    ours = chains * length / (time.perf_counter() - start)
    pg = chain.to_pgmpy()
    from pgmpy.factors.discrete import State

    start = time.perf_counter()
    pg.sample(start_state=[State("state", 0)], size=pgmpy_steps, seed=0)
    theirs = pgmpy_steps / (time.perf_counter() - start)
    return ours, theirs, chain.num_states


def run(quick: bool = False, device: str = "cpu") -> Report:
    report = Report("markov", "Markov chains: held-out perplexity by order, sampling throughput vs pgmpy")
    train, test, source = _corpus(quick)
    orders = [1, 2] if quick else [1, 2, 3, 4, 5]
    table = perplexity_table(train, test, orders, levels=("char",) if quick else ("word", "char"))
    for (level, order), row in table.iterrows():
        report.add(f"{level} order {order}", "held-out perplexity", row["kneser_ney"], row["add_one"],
                   baseline_name="add-one (Laplace)", goal="< 1x")
    report.table("held-out perplexity (lower is better)", table)
    chains, length, steps = (200, 200, 300) if quick else (1000, 1000, 3000)
    ours, theirs, k = sampling_throughput(train, chains, length, steps)
    report.add(f"char chain, {k} states, {chains} chains x {length}", "sampling throughput", ours, theirs,
               baseline_name="pgmpy MarkovChain.sample", unit="tokens/s", goal=">= 100x")
    report.note(f"corpus: {source}; order = number of previous tokens (order 2 = trigrams)")
    report.note("perplexity per predicted token incl. the end-of-document token; words seen once map to <unk>")
    report.note("pgmpy samples one chain (its API has no batch of chains); probgen draws all chains in one torch step")
    return report

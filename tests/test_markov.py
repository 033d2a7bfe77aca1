"""Markov chains and n-gram text generation (probgen.models.markov.chain, probgen.models.markov.text)."""

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from scipy import stats

import probgen
from probgen.models import MarkovChain, TextGenerator
from probgen.models.markov.text import tokenize

WEATHER = [[0.8, 0.15, 0.05], [0.3, 0.5, 0.2], [0.25, 0.25, 0.5]]
STATES = ["sunny", "cloudy", "rainy"]


@pytest.fixture(scope="module")
def corpus():
    from probgen.datasets._catalog import stdlib_docstrings

    docs = list(stdlib_docstrings(120_000))
    return "\n\n".join(docs[:-40]), "\n\n".join(docs[-40:])


def _weather():
    return MarkovChain.from_matrix(WEATHER, states=STATES)


# ------------------------------------------------------------------ chain maths
def test_stationary_solves_balance_and_matches_eigenvector():
    m = _weather()
    pi = m.stationary_distribution().numpy()
    p = np.array(WEATHER)
    assert np.abs(pi @ p - pi).max() < 1e-10
    assert abs(pi.sum() - 1) < 1e-12
    values, vectors = np.linalg.eig(p.T)
    v = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    assert np.allclose(pi, v / v.sum(), atol=1e-10)


def test_sampled_frequencies_pass_chi_square_against_stationary():
    m = _weather()
    pi = m.stationary_distribution()
    start = MarkovChain.from_matrix(WEATHER, states=STATES, initial=pi.numpy())
    last = start.sample(20_000, length=5, seed=0)[:, -1]  # independent draws from pi
    observed = np.array([(last == s).sum() for s in STATES])
    assert stats.chisquare(observed, pi.numpy() * len(last)).pvalue > 1e-3
    # and a chain far from stationarity is rejected by the same test
    assert stats.chisquare(observed, np.array([1 / 3] * 3) * len(last)).pvalue < 1e-6


@pytest.mark.parametrize("order", [1, 2])
def test_probabilities_of_all_sequences_sum_to_one(order):
    seq = _weather().sample(1, length=400, seed=1)[0].tolist()
    m = MarkovChain(order=order, smoothing=0.5).fit([seq], progress=False).model
    every = [list(t) for t in itertools.product(m.states, repeat=4)]
    assert math.isclose(float(m.log_prob(every).exp().sum()), 1.0, abs_tol=1e-10)


def test_maximum_likelihood_is_normalised_counts_and_bayes_is_dirichlet_mean():
    seq = ["a", "a", "b", "a", "b", "b", "b", "a"]
    m = MarkovChain().fit([seq], progress=False).model
    # from a: a->a once, a->b twice; from b: b->a twice, b->b twice
    assert torch.allclose(m.transition_matrix(), torch.tensor([[1 / 3, 2 / 3], [0.5, 0.5]], dtype=torch.float64))
    r = MarkovChain(alpha=2.0).fit([seq], inference="bayes", num_samples=400, progress=False, seed=0)
    assert torch.allclose(r.model.transition_matrix(), torch.tensor([[3 / 7, 4 / 7], [0.5, 0.5]], dtype=torch.float64))
    post = r.to_arviz().posterior["transition"]
    assert post.shape == (4, 100, 2, 2)
    assert abs(float(post.sel(context="a", next="b").mean()) - 4 / 7) < 0.03


def test_pyro_program_matches_log_prob():
    m = _weather()
    x = m.sample(5, length=7, seed=2).tolist()
    trace = pyro.poutine.trace(m.model).get_trace(x)
    assert math.isclose(float(trace.log_prob_sum()), float(m.log_prob(x).sum()), rel_tol=1e-9)
    drawn = pyro.poutine.trace(m.model).get_trace(n=3, length=4).nodes["_RETURN"]["value"]
    assert drawn.shape == (3, 4)


def test_irreducible_aperiodic_gap_and_mixing():
    a, b = 0.3, 0.1
    two = MarkovChain.from_matrix([[1 - a, a], [b, 1 - b]])
    assert two.is_irreducible() and two.is_aperiodic()
    assert math.isclose(two.spectral_gap(), a + b, rel_tol=1e-9)
    t = two.mixing_time(0.25)
    pi = two.stationary_distribution().numpy()
    tv = lambda k: 0.5 * np.abs(two.n_step(k).numpy() - pi).sum(1).max()  # noqa: E731
    assert tv(t) <= 0.25 < tv(t - 1)
    flip = MarkovChain.from_matrix([[0.0, 1.0], [1.0, 0.0]])
    assert flip.is_irreducible() and not flip.is_aperiodic()
    split = MarkovChain.from_matrix([[1.0, 0.0], [0.0, 1.0]])
    assert not split.is_irreducible()
    with pytest.raises(ValueError, match="not unique"):
        split.stationary_distribution()
    assert torch.allclose(two.n_step(3), torch.linalg.matrix_power(two.transition_matrix(), 3))


def test_gamblers_ruin_absorption_and_hitting_times():
    n = 5
    p = np.zeros((n + 1, n + 1))
    p[0, 0] = p[n, n] = 1
    for i in range(1, n):
        p[i, i - 1] = p[i, i + 1] = 0.5
    m = MarkovChain.from_matrix(p)
    assert m.absorbing_states() == [0, n]
    b = m.absorption_probabilities()
    assert np.allclose(b[n].to_numpy(), [i / n for i in range(1, n)])
    h = m.expected_hitting_times([0, n])
    assert np.allclose(h.to_numpy(), [i * (n - i) for i in range(n + 1)])
    assert np.isinf(m.expected_hitting_times(n)[0])  # from the other absorbing state, never


def test_higher_order_chain_recovers_second_order_dependence():
    # x_t = x_{t-2} (period-2 pattern with noise): invisible to order 1, clear at order 2
    g = torch.Generator().manual_seed(0)
    seq = [0, 1]
    for _ in range(3000):
        seq.append(seq[-2] if torch.rand((), generator=g) < 0.9 else int(torch.randint(0, 3, (), generator=g)))
    test = seq[2000:]
    first = MarkovChain(order=1, smoothing=1).fit([seq[:2000]], progress=False).model
    second = MarkovChain(order=2, smoothing=1).fit([seq[:2000]], progress=False).model
    assert second.log_prob([test]) > first.log_prob([test]) + 100
    assert len(second.state_names()) == 9 and second.state_names()[1] == (0, 1)
    pi = second.stationary_distribution()
    lifted = second.lifted_matrix()
    assert torch.allclose(pi @ lifted, pi, atol=1e-10)


def test_pgmpy_round_trip():
    m = _weather()
    back = MarkovChain.from_pgmpy(m.to_pgmpy(), states=STATES)
    assert back.states == m.states
    assert torch.equal(back.transition_matrix(), m.transition_matrix())
    from pgmpy.models import MarkovChain as PgmpyMC

    factored = PgmpyMC(["a", "b"], [2, 2])
    factored.add_transition_model("a", {0: {0: 0.9, 1: 0.1}, 1: {0: 0.2, 1: 0.8}})
    factored.add_transition_model("b", {0: {0: 0.5, 1: 0.5}, 1: {0: 0.3, 1: 0.7}})
    joint = MarkovChain.from_pgmpy(factored)
    assert joint.states[1] == "a=0|b=1"
    assert math.isclose(float(joint.transition_matrix()[1, 2]), 0.1 * 0.3)


def test_pandas_and_array_inputs_give_the_same_chain():
    import pandas as pd

    seq = _weather().sample(1, length=300, seed=4)[0].tolist()
    from_list = MarkovChain().fit([seq], progress=False).model.transition_matrix()
    from_series = MarkovChain().fit(pd.Series(seq), progress=False).model.transition_matrix()
    from_frame = MarkovChain().fit(pd.DataFrame([seq[:150], seq[150:]]), progress=False).model
    assert torch.equal(from_list, from_series)
    assert from_frame.counts.sum() == len(seq) - 2  # two sequences: one transition fewer each
    ints = MarkovChain().fit(np.array([[0, 1, 1, 2, 0, 2]]), progress=False).model
    assert ints.states == [0, 1, 2] and ints.sample(3, length=4, seed=0).dtype == torch.long


def test_seeds_reproduce_and_start_state():
    m = _weather()
    assert np.array_equal(m.sample(10, length=6, seed=3), m.sample(10, length=6, seed=3))
    x = m.sample(50, length=3, seed=0, start="rainy")
    assert (x[:, 0] == "rainy").all()


def test_bad_input_is_reported_clearly():
    m = _weather()
    with pytest.raises(KeyError, match="snow"):
        m.log_prob([["sunny", "snow"]])
    with pytest.raises(ValueError, match="never occur"):
        MarkovChain(states=["a", "b", "c"]).fit([["a", "b", "a"]], progress=False)
    smoothed = MarkovChain(states=["a", "b", "c"], smoothing=1.0).fit([["a", "b", "a"]], progress=False).model
    assert float(smoothed.log_prob([["a", "c"]])[0]) > -math.inf
    with pytest.raises(ValueError, match="empty"):
        MarkovChain().fit([[]], progress=False)
    with pytest.raises(ValueError, match="longer than 3"):
        MarkovChain(order=3).fit([["a", "b", "c"]], progress=False)
    with pytest.raises(ValueError, match="sum to 1"):
        MarkovChain.from_matrix([[0.5, 0.4], [0.5, 0.5]])
    with pytest.raises(ValueError, match="non-negative"):
        MarkovChain.from_matrix([[1.5, -0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="NaN"):
        MarkovChain().fit([[1.0, float("nan")]], progress=False)
    with pytest.raises(ValueError, match="order"):
        MarkovChain(order=0)
    with pytest.raises(ValueError, match="not fitted|no transition"):
        MarkovChain().sample(2, length=3)


# ------------------------------------------------------------------ text
def test_kneser_ney_beats_add_one_on_held_out_text(corpus):
    train, test = corpus
    kn = TextGenerator(order=2, level="word").fit(train, progress=False).model
    add1 = TextGenerator(order=2, level="word", estimator="add_k", k=1.0).fit(train, progress=False).model
    assert kn.perplexity(test) < 0.5 * add1.perplexity(test)


def test_kneser_ney_distribution_is_normalised_and_consistent(corpus):
    train, _ = corpus
    m = TextGenerator(order=2, level="char").fit(train[:20_000], progress=False).model
    ids = m._encode([list("the ")])[0]
    ctx = ids[-m.order:]
    dense = m.next_distribution(ctx)
    assert math.isclose(float(dense.sum()), 1.0, abs_tol=1e-12)
    assert all(math.isclose(float(dense[w]), m.prob(w, ctx), rel_tol=1e-9) for w in range(m.num_tokens))


def test_generated_text_uses_only_the_vocabulary(corpus):
    train, _ = corpus
    for level in ("word", "char"):
        m = TextGenerator(order=2, level=level).fit(train, progress=False).model
        text = m.generate(150, prompt="return the", seed=0)
        tokens = {t for doc in tokenize(text, level) for t in doc}
        assert tokens and tokens <= set(m.vocab) - {"<s>", "</s>", "<unk>"}
        assert m.generate(30, seed=1) == m.generate(30, seed=1)
        cold = m.generate(30, seed=1, temperature=0.2)
        assert isinstance(cold, str)


def test_text_log_prob_matches_pyro_program_and_dense_chain():
    text = "abba abab baab.\n\nbab aba."
    m = TextGenerator(order=1, level="char").fit(text, progress=False).model
    docs = ["ab ba.", "ba"]
    trace = pyro.poutine.trace(m.model).get_trace(docs)
    assert math.isclose(float(trace.log_prob_sum()), float(m.log_prob(docs).sum()), rel_tol=1e-9)
    chain = m.to_markov_chain()
    rows = chain.transition_matrix()
    assert torch.allclose(rows.sum(1), torch.ones(len(rows), dtype=torch.float64))
    seq = ["<s>", "a", "b", " ", "b", "a", ".", "</s>"]
    lp_chain = float(chain.log_prob([seq]) - chain.initial[m.vocab.index("<s>")].log())
    assert math.isclose(lp_chain, float(m.log_prob("ab ba.")), rel_tol=1e-9)


def test_text_bad_input():
    with pytest.raises(ValueError, match="empty"):
        TextGenerator().fit("   \n\n  ", progress=False)
    with pytest.raises(ValueError, match="level"):
        TextGenerator(level="byte")
    with pytest.raises(ValueError, match="estimator"):
        TextGenerator(estimator="good_turing")
    m = TextGenerator(order=1, min_count=1).fit("one two three.", progress=False).model
    assert math.isfinite(float(m.log_prob("four unseen words")[0]))  # unknown words map to <unk>
    with pytest.raises(ValueError, match="temperature"):
        m.generate(5, temperature=0)


def test_text_save_load_round_trip(tmp_path):
    m = TextGenerator(order=2, level="char").fit("a cat sat on a mat.\n\nthat cat ate.", progress=False).model
    back = probgen.load(probgen.save(m, tmp_path / "tg.safetensors"))
    assert back.generate(40, seed=0) == m.generate(40, seed=0)
    assert torch.equal(back.log_prob(["cat mat"]), m.log_prob(["cat mat"]))


def test_bench_quick():
    from probgen.bench.markov import run

    report = run(quick=True)
    frame = report.frame()
    assert len(frame) == 3
    ppl = frame[frame.metric == "held-out perplexity"]
    assert (ppl.probgen > 1).all() and (ppl.probgen < ppl.baseline * 1.05).all()
    speed = frame[frame.metric == "sampling throughput"].iloc[0]
    assert speed.probgen > speed.baseline > 0

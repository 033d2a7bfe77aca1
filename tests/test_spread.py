"""Spread on networks: simulation laws, exact likelihood, posterior coverage, bad input."""

from __future__ import annotations

import math
import warnings

import networkx as nx
import numpy as np
import pytest
import torch

import probgen
from probgen.models.spread.model import Spread
from probgen.models.spread.analysis import final_size_equation

warnings.filterwarnings("ignore", message="Sparse")

KARATE = nx.karate_club_graph()


def test_rate_zero_spreads_nothing():
    for model, rates in (("SIR", {"beta": 0.0}), ("SI", {"beta": 0.0}), ("IC", {"p": 0.0}), ("SEIR", {"beta": 0.0})):
        out = Spread(KARATE, model, **rates).simulate(50, 20, initial=[0, 1], seed=0)
        assert torch.all(out.final_size == 2), model
        assert torch.all(out.counts[:, :, 0] == 32)


def test_si_on_connected_graph_infects_every_node():
    out = Spread(KARATE, "SI", beta=0.5).simulate(40, 60, seed=1)
    assert torch.all(out.final_size == 34)
    assert torch.all(out.count("I")[:, -1] == 34)
    assert torch.all(out.count("I").diff(dim=1) >= 0)  # SI never loses an infection


def test_sir_complete_graph_matches_kermack_mckendrick():
    n, gamma, r0 = 300, 0.5, 2.0
    beta = r0 * -math.expm1(-gamma) / n  # R0 = beta * n * E[infectious steps]
    out = Spread(nx.complete_graph(n), "SIR", beta=beta, gamma=gamma).simulate(160, 80, initial=4, seed=0)
    assert torch.all(out.count("I")[:, -1] == 0)  # every run is over
    z = out.final_size.double() / n
    major = z[z > 0.3]  # minor outbreaks die out early; the equation describes major ones
    assert len(major) > 120
    se = float(major.std() / math.sqrt(len(major)))
    assert abs(float(major.mean()) - final_size_equation(r0)) < 3 * se + 1e-3
    # compartments always add up to n
    assert torch.all(out.counts.sum(-1) == n)


def test_independent_cascade_on_tree_matches_exact_probabilities():
    tree = nx.balanced_tree(2, 3)  # 15 nodes, root 0
    p = 0.6
    out = Spread(tree, "IC", p=p).simulate(20000, 6, initial=[0], seed=0)
    freq = (out.infection_time >= 0).double().mean(0)
    depth = nx.single_source_shortest_path_length(tree, 0)
    exact = torch.tensor([p ** depth[v] for v in tree.nodes()], dtype=torch.float64)
    se = torch.sqrt(exact * (1 - exact) / 20000).clamp_min(1e-4)
    assert torch.all((freq - exact).abs() < 4 * se), (freq, exact)


def test_linear_threshold_and_seir_run_and_are_monotone():
    lt = Spread(KARATE, "LT")
    out = lt.simulate(30, 20, initial=[0, 33], seed=0, record_states=True)
    assert torch.all(out.count("active").diff(dim=1) >= 0)
    assert torch.all(out.states[:, 1:][out.states[:, :-1] == 2] == 2)  # active nodes stay active
    assert torch.isfinite(lt.log_prob(out)).all()
    seir = Spread(KARATE, "SEIR", beta=0.5, gamma=0.3, sigma=0.5).simulate(30, 40, initial=[0], seed=0, record_states=True)
    assert torch.all(seir.counts.sum(-1) == 34)
    # onset after exposure, recovery after onset
    ok = seir.onset_time >= 0
    assert torch.all(seir.onset_time[ok] > seir.infection_time[ok] - (seir.infection_time[ok] == 0).long())
    sis = Spread(KARATE, "SIS", beta=0.4, gamma=0.3).simulate(20, 40, seed=0)
    assert torch.all(sis.counts.sum(-1) == 34)


def test_seeds_reproduce_and_first_step_matches_chain_binomial():
    m = Spread(KARATE, "SIR", beta=0.3, gamma=0.2)
    a, b = m.simulate(30, 20, seed=5), m.simulate(30, 20, seed=5)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.infection_time, b.infection_time)
    # first step: a neighbour of the seed with k infectious neighbours is infected w.p. 1 - exp(-beta k)
    star = nx.star_graph(3)
    out = Spread(star, "SIR", beta=0.7, gamma=0.2).simulate(40000, 1, initial=[0], seed=0)
    freq = (out.infection_time[:, 1:] == 1).double().mean()
    assert abs(float(freq) - (1 - math.exp(-0.7))) < 4 * math.sqrt(0.25 / 120000)


def test_gillespie_exact_option_agrees_with_small_step_discrete_time():
    m = Spread(KARATE, "SIR", beta=0.04, gamma=0.05)
    g = m.simulate(60, 200, initial=[0], seed=0, method="gillespie")
    d = m.simulate(600, 200, initial=[0], seed=0)
    assert torch.all(g.counts.sum(-1) == 34)
    # the discrete chain binomial converges to the continuous-time process for small rates
    gm, dm = g.final_size.double().mean(), d.final_size.double().mean()
    se = math.sqrt(float(g.final_size.double().var()) / 60 + float(d.final_size.double().var()) / 600)
    assert abs(float(gm - dm)) < 3 * se + 1.5


def test_log_prob_equals_brute_force_product_of_node_steps():
    g = nx.gnp_random_graph(12, 0.3, seed=1, directed=True)
    for u, v in g.edges:
        g[u][v]["weight"] = 0.5 + (u + v) % 3
    m = Spread(g, "SIR", beta=0.35, gamma=0.25)
    x = m.sample(3, seed=2, steps=8, initial=[0, 1])
    lp = m.log_prob(x)
    w = nx.to_numpy_array(g, weight="weight")  # w[u, v]: u -> v
    for k in range(3):
        total = 0.0
        for t in range(8):
            inf = x[k, t].numpy() == 2
            for v in range(12):
                a, b = int(x[k, t, v]), int(x[k, t + 1, v])
                if a == 0:
                    q = 1 - math.exp(-0.35 * float(w[inf, v].sum()))
                    if q > 0 or b != 0:
                        total += math.log(q) if b == 2 else math.log1p(-q)
                elif a == 2:
                    r = 1 - math.exp(-0.25)
                    total += math.log(r) if b == 3 else math.log1p(-r)
        assert abs(total - float(lp[k])) < 1e-3 * max(1, abs(total))


def test_posterior_from_simulated_outbreak_covers_true_rates():
    truth = {"beta": 0.25, "gamma": 0.3}
    sim = Spread(KARATE, "SIR", **truth)
    data = sim.simulate(3, 20, initial=[0], seed=7, record_states=True)
    m = Spread(KARATE, "SIR")
    # one outbreak set: the bench measures the coverage frequency over 20 outbreaks
    result = m.fit(data, num_samples=100, warmup_steps=100, num_chains=1, seed=0, progress=False)
    post = result.to_arviz().posterior
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].values.ravel(), [0.05, 0.95])
        assert lo < value < hi, (name, lo, hi)
    assert "R0" in post
    assert float(m.point_rates()["beta"]) == pytest.approx(float(post["beta"].mean()), rel=1e-5)


def test_svi_and_aggregate_counts_fit():
    sim = Spread(KARATE, "SIR", beta=0.3, gamma=0.3, initial=[0])
    data = sim.simulate(1, 15, seed=2, record_states=True)
    m = Spread(KARATE, "SIR")
    r = m.fit(data, inference="svi", steps=150, lr=0.08, seed=0, progress=False)
    idata = r.to_arviz(200)
    assert {"beta", "gamma", "R0"} <= set(idata.posterior.data_vars)
    assert 0.1 < float(idata.posterior["beta"].mean()) < 0.6
    cases = data.new_cases()[0]
    agg = Spread(KARATE, "SIR", initial=[0], priors={"rho": (20.0, 2.0)})
    r2 = agg.fit(cases[:8], inference="svi", steps=40, lr=0.05, seed=0, progress=False)
    assert {"beta", "gamma", "rho", "phi"} <= set(r2.to_arviz(100).posterior.data_vars)


def test_save_load_round_trip(tmp_path):
    m = Spread(probgen.datasets.load("florentine"), "SEIR", beta=0.5, gamma=0.2, sigma=0.4,
               initial=["Medici"], immune=["Strozzi"])
    path = probgen.save(m, tmp_path / "spread.safetensors")
    m2 = probgen.load(path)
    assert torch.equal(m.sample(4, seed=0), m2.sample(4, seed=0))
    assert torch.all(m2.sample(4, seed=0)[:, :, m2.index["Strozzi"]] == 3)


def test_interventions_influence_and_mean_field():
    g = nx.barabasi_albert_graph(300, 2, seed=0)
    m = Spread(g, "SIR", beta=0.3, gamma=0.3)
    base = m.expected_final_size(300, 40, initial=3, seed=0)[0]
    hubs = m.vaccinate("degree", fraction=0.1).expected_final_size(300, 40, initial=3, seed=0)[0]
    rand = m.vaccinate("random", fraction=0.1, seed=0).expected_final_size(300, 40, initial=3, seed=0)[0]
    assert hubs < rand < base
    assert m.remove_nodes([0, 1]).n == 298
    ic = Spread(nx.star_graph(6), "IC", p=0.5)
    seeds, values = ic.influence_maximization(2, samples=300, seed=0)
    assert seeds[0] == 0 and values[0] == pytest.approx(1 + 6 * 0.5, abs=0.3)
    assert values[1] > values[0]
    mf = Spread(KARATE, "SI", beta=0.5, initial=[0]).mean_field(60)
    assert float(mf["I"].iloc[-1]) == pytest.approx(34, abs=0.5)
    ode = Spread(KARATE, "SIR", initial=[0]).mean_field(30, kind="homogeneous")
    assert np.allclose(ode.sum(1), 34)


def test_bad_input_gives_clear_errors():
    with pytest.raises(KeyError, match="initial"):
        Spread(KARATE, "SIR").simulate(2, 5, initial=[99])
    with pytest.raises(ValueError, match="beta"):
        Spread(KARATE, "SIR", beta=-1.0)
    with pytest.raises(ValueError, match="p"):
        Spread(KARATE, "IC", p=1.5)
    with pytest.raises(ValueError, match="gamma"):
        Spread(KARATE, "SI", gamma=0.3)
    with pytest.raises(ValueError, match="graph"):
        Spread(nx.Graph(), "SIR")
    with pytest.raises(ValueError, match="model"):
        Spread(KARATE, "SIRS")
    m = Spread(KARATE, "SIR", initial=[0])
    with pytest.raises(ValueError, match="steps"):
        m.fit({"cases": [1, 2, 3], "initial": [0], "steps": 5})
    with pytest.raises(ValueError, match="one per node"):
        m.fit(torch.zeros(10, 30, dtype=torch.long))
    with pytest.raises(ValueError, match="impossible"):
        bad = torch.zeros(3, 34, dtype=torch.long)
        bad[0, 0], bad[1, 0] = 3, 2  # R -> I
        m.fit(bad)
    with pytest.raises(ValueError, match="without any infectious"):
        bad = torch.zeros(3, 34, dtype=torch.long)
        bad[1:, 5] = 2
        m.log_prob(bad)
    with pytest.raises(ValueError, match="rates"):
        m.simulate(2, 5, rates={"beta": -1.0})
    with pytest.raises(ValueError, match="fit"):
        Spread(KARATE, "LT").fit(torch.zeros(3, 34))


def test_bench_quick():
    from probgen.bench import spread

    report = spread.run(quick=True)
    frame = report.frame()
    assert len(frame) >= 3
    speed = frame[frame.metric.str.contains("node-updates")]
    assert (speed.probgen > 0).all() and (speed.baseline > 0).all()

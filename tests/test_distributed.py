"""Scale-out on torch.distributed (gloo on localhost): same trajectory as one process; sharded queries."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

import probgen
from probgen.infer.distributed import map_shards, world
from probgen.models import BayesianLinearRegression

pytestmark = pytest.mark.xdist_group("distributed")  # one process group at a time on this machine


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    return x, x @ torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(64, generator=g)


def test_two_processes_follow_the_one_process_trajectory():
    x, y = _data()
    single = BayesianLinearRegression(num_features=2)
    r1 = probgen.fit(single, (x, y), steps=12, batch_size=16, lr=0.05, seed=3, progress=False)
    multi = BayesianLinearRegression(num_features=2)
    r2 = probgen.fit(multi, (x, y), steps=12, batch_size=16, lr=0.05, seed=3, progress=False, distributed=2)
    assert r2.info["processes"] == 2 and len(r2.history) == 12
    np.testing.assert_allclose(r2.history["loss"], r1.history["loss"], rtol=1e-5, atol=1e-5)
    for a, b in zip(single.parameters(), multi.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_two_processes_build_networks_under_the_seed():
    # the VAE builds its networks from the data inside fit: with distributed=2 that build must
    # happen under the seed too, so both fits start from the same weights. A learning rate of
    # 1e-30 leaves the weights where they started (the ELBO's own draws differ between one and
    # two processes, so the trajectories are not compared here)
    x = (torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    opts = dict(steps=2, batch_size=16, lr=1e-30, seed=5, progress=False)
    single = probgen.models.VAE(latent_dim=2, hidden=(8,))
    probgen.fit(single, x, **opts)
    multi = probgen.models.VAE(latent_dim=2, hidden=(8,))
    probgen.fit(multi, x, distributed=2, **opts)
    for (name, a), b in zip(single.state_dict().items(), multi.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_distributed_argument_errors():
    x, y = _data()
    m = BayesianLinearRegression(num_features=2)
    with pytest.raises(ValueError, match="torchrun"):
        m.fit((x, y), steps=1, distributed=True)
    with pytest.raises(ValueError, match="distributed: expected"):
        m.fit((x, y), steps=1, distributed=-2)
    with pytest.raises(ValueError, match="callbacks"):
        m.fit((x, y), steps=1, distributed=2, callbacks=[lambda *a: False])


def test_map_shards_outside_a_group_is_the_plain_call():
    assert not world().active
    frame = pd.DataFrame({"a": range(5)})
    assert map_shards(lambda df: df + 1, frame).equals(frame + 1)


_SCRIPT = textwrap.dedent('''
    import json, sys
    import pandas as pd, torch, probgen
    import torch.distributed as dist
    from probgen.infer import map_shards
    from probgen.models import BayesianLinearRegression

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = x @ torch.tensor([1.0, -1.0]) + 0.1 * torch.randn(64, generator=g)
    model = BayesianLinearRegression(num_features=2)
    result = probgen.fit(model, (x, y), steps=8, batch_size=16, lr=0.05, seed=3, progress=False, distributed=True)
    frame = pd.DataFrame({"a": range(7)})
    doubled = map_shards(lambda df: df.assign(rank=dist.get_rank(), b=df["a"] * 2), frame)
    bn = probgen.models.BayesianNetwork.example("asia")
    evidence = bn.sample(301, seed=0)[["xray", "dysp", "smoke"]]
    sharded = map_shards(lambda df: bn.posterior("lung", df), evidence)
    # one row for two processes: rank 0's share is empty and skipped (fn would divide by zero)
    one = map_shards(lambda df: df.assign(inv=1.0 / len(df)), frame.iloc[:1])
    one_bn = map_shards(lambda df: bn.posterior("lung", df), evidence.iloc[:1])
    none = map_shards(lambda df: bn.posterior("lung", df), evidence.iloc[:0])
    if dist.get_rank() == 0:
        whole = bn.posterior("lung", evidence)
        json.dump({"bn_max_diff": float((sharded - whole).abs().to_numpy().max()),
                   "bn_index_equal": bool(sharded.index.equals(whole.index)),
                   "one": one["inv"].tolist(), "one_bn": one_bn.to_numpy().tolist(),
                   "one_bn_ref": bn.posterior("lung", evidence.iloc[:1]).to_numpy().tolist(),
                   "none": [len(none), list(none.columns)],
                   "loss": result.history["loss"].tolist(), "b": doubled["b"].tolist(),
                   "ranks": sorted(set(doubled["rank"])), "index": doubled.index.tolist()}, open(sys.argv[1], "w"))
''')


def test_under_torchrun(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out.json"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    from probgen.infer.distributed import _free_port

    cmd = [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"torchrun failed:\n{run.stderr[-4000:]}"
    got = json.loads(out.read_text())
    x, y = _data()
    ref = BayesianLinearRegression(num_features=2).fit((x, y), steps=8, batch_size=16, lr=0.05, seed=3, progress=False)
    np.testing.assert_allclose(got["loss"], ref.history["loss"], rtol=1e-5, atol=1e-5)
    assert got["bn_index_equal"] and got["bn_max_diff"] < 1e-12  # sharded Bayesian-network queries
    assert got["one"] == [1.0] and got["one_bn"] == got["one_bn_ref"]  # empty shares skipped
    assert got["none"] == [0, ["yes", "no"]]
    assert got["b"] == [2 * a for a in range(7)] and got["index"] == list(range(7)) and got["ranks"] == [0, 1]

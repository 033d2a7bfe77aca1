"""Files written by probgen before the family-per-package redesign still load.

``tests/data/saved-before-redesign`` holds one small fitted model per family, saved by the
code at commit 38c9aaf (the contract case of each family, ``seed=0``). Loading resolves the
family by name, so moving a family's module must not break a saved file.
"""

from pathlib import Path

import pytest
import torch

import probgen

SAVED = Path(__file__).parent / "data" / "saved-before-redesign"
FILES = sorted(SAVED.glob("*.safetensors"))


def test_there_is_one_saved_file_per_family_of_that_time():
    assert len(FILES) == 19


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_old_file_loads_and_samples(path):
    model = probgen.load(path)
    assert model.family == path.stem
    assert type(model) is probgen.models.get(path.stem)
    with torch.no_grad():
        reloaded = dict(model.state_dict())
    from safetensors.torch import load_file

    stored = load_file(path)
    for key, value in stored.items():
        torch.testing.assert_close(reloaded[key].cpu(), value, rtol=0, atol=0, equal_nan=True, msg=key)
    case = type(model)._contract_case()
    samples = model.sample(3, seed=0, **case.sample_kwargs)
    assert samples is not None


def test_load_imports_only_the_family_it_loads():
    import json
    import subprocess
    import sys

    path = SAVED / "markov_chain.safetensors"
    code = ("import json, sys, probgen; m = probgen.load(sys.argv[1]); "
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('probgen.models.'))))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "probgen.models.markov.chain" in loaded
    assert not [m for m in loaded if m.split(".")[2] not in ("markov",)], loaded

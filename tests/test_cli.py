"""The ``probgen`` command: help, listings, a quick benchmark, and the tour."""

import json
import subprocess
import sys

import pytest

from probgen import bench
from probgen.cli import main


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "probgen.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("tour", "datasets", "models", "bench"):
        assert command in out.stdout


def test_datasets_and_models(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k" in out and "alarm" in out
    assert main(["models"]) == 0
    assert "linear_regression" in capsys.readouterr().out


def test_bench_svi_quick_prints_ratio_and_writes_json(tmp_path, capsys):
    path = tmp_path / "svi.json"
    assert main(["bench", "svi", "--quick", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "probgen bench svi" in out and "x" in out
    payload = json.loads(path.read_text())
    row = payload["rows"][0]
    assert row["probgen"] > 0 and row["baseline"] > 0 and row["ratio"] == pytest.approx(row["probgen"] / row["baseline"])
    with pytest.raises(KeyError, match="svi"):
        bench.run("no-such-bench")


def test_tour_of_one_family(tmp_path, capsys):
    assert main(["tour", "--out", str(tmp_path), "--only", "linear_regression"]) == 0
    out = capsys.readouterr().out
    assert "linear_regression" in out and "FAILED" not in out

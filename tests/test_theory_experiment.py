"""The paper's experiment: toy MoE gradients, data model, allocations, pipeline and CLI."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from accelsim.cli import main
from accelsim.theory.data import digits_tasks, synthetic_tasks
from accelsim.theory.experiment import (ExperimentConfig, ExpertSignals, allocate,
                                        levels_for, run_experiment)
from accelsim.theory.toymoe import init_params, loss_and_grads


def test_toy_moe_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    p = init_params(d=5, experts=3, neurons=4, seed=1, router_std=0.5)
    X = rng.normal(size=(6, 4, 5))
    y = np.where(rng.random(6) < 0.5, 1.0, -1.0)
    _, gr, gw = loss_and_grads(p, X, y, aux=0.1)
    h = 1e-6
    for name, grad in (("router", gr), ("w", gw)):
        base = getattr(p, name)
        for idx in [tuple(rng.integers(0, s) for s in base.shape) for _ in range(12)]:
            plus, minus = base.copy(), base.copy()
            plus[idx] += h
            minus[idx] -= h
            # the top-1 choice is piecewise constant: central differences are exact
            # away from ties, which random weights avoid
            num = (loss_and_grads(replace(p, **{name: plus}), X, y, 0.1)[0]
                   - loss_and_grads(replace(p, **{name: minus}), X, y, 0.1)[0]) / (2 * h)
            assert grad[idx] == pytest.approx(num, rel=1e-4, abs=1e-8)


def test_synthetic_feature_frequencies_follow_the_data_model():
    t = synthetic_tasks(3, n_pretrain=10, n_finetune=20000, n_test=10, sigma=0.0)
    # with no noise every patch is exactly one unit feature; the class-relevant one is
    # the patch whose feature is not among the 8 shared irrelevant ones
    pats = t.finetune_X.reshape(-1, t.d)
    uniq, counts = np.unique(np.round(pats, 6), axis=0, return_counts=True)
    assert len(uniq) == 8 + 8            # 8 irrelevant + 2 classes x 4 fine-tuning features
    rel = np.sort(counts)[:8] / 20000     # the 8 rarest are the class-relevant ones
    expect = np.sort(np.repeat(0.5 ** np.arange(4) / np.sum(0.5 ** np.arange(4)), 2) / 2)
    np.testing.assert_allclose(rel, expect, atol=0.01)
    assert set(np.unique(t.finetune_y)) == {-1.0, 1.0}


def test_digits_tasks_are_disjoint_patches_and_labels():
    t = digits_tasks(0)
    assert t.finetune_X.shape[1:] == (9, 25) and t.pretrain_X.shape[1:] == (9, 25)
    n = t.pretrain_X.shape[0] + t.finetune_X.shape[0] + t.test_X.shape[0]
    assert n < 1797                       # fine-tuning digits are subsampled
    assert np.all(t.finetune_X[:, :, 16:].sum(axis=2) == 1)   # one-hot positions


def test_levels_and_allocations_use_the_paper_rules():
    assert levels_for(2.0) == (3, 2, 1) and levels_for(2.5) == (3, 2, 1)
    assert levels_for(3.0) == (4, 3, 2) and levels_for(1.5) == (2, 1)
    assert levels_for(7.5) == (8, 7, 6) and levels_for(8.0) == (8, 7, 6)
    sig = ExpertSignals(norm_change=np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.8, 0.7, 0.4]),
                        frequency=np.array([0.1, 0.3, 0.05, 0.2, 0.1, 0.1, 0.1, 0.05]),
                        max_variance=np.ones(8))
    rng = np.random.default_rng(0)
    for avg in (2.0, 2.5, 3.0):
        for method in ("router-norm", "reverse", "frequency", "random"):
            bits = allocate(method, sig, avg, rng)
            assert bits.mean() == pytest.approx(avg)
    rn = allocate("router-norm", sig, 2.5, rng)
    assert rn[1] == rn.max() and rn[2] == rn.min()      # least change -> most bits
    rv = allocate("reverse", sig, 2.5, rng)
    assert rv[2] == rv.max() and rv[1] == rv.min()
    fr = allocate("frequency", sig, 2.5, rng)
    assert fr[1] == fr.max()
    assert allocate("uniform", sig, 2.5, rng) is None
    assert allocate("uniform", sig, 3.0, rng).tolist() == [3] * 8
    # a large max intra-neuron variance promotes an expert (zeta = 3)
    big = replace(sig, max_variance=np.array([1, 1, 50, 1, 1, 1, 1, 1.0]))
    assert allocate("router-norm", big, 2.5, rng)[2] == 3


def test_small_experiment_rows_and_reproducibility():
    cfg = ExperimentConfig(data="synthetic", seeds=2, bits=(2.0, 2.5), steps=40, samples=300)
    rows = run_experiment(cfg)
    assert rows == run_experiment(cfg)               # seeded
    keys = {"data", "method", "avg_bits", "accuracy", "accuracy_std", "seeds", "per_seed"}
    assert all(set(r) == keys for r in rows)
    for r in rows:   # mean and sample std are those of the per-seed values
        assert r["accuracy"] == pytest.approx(sum(r["per_seed"]) / 2)
        assert r["accuracy_std"] == pytest.approx(abs(r["per_seed"][0] - r["per_seed"][1])
                                                  / 2 ** 0.5)
    methods = {(r["method"], r["avg_bits"]) for r in rows}
    assert ("uniform", 2.5) not in methods and ("uniform", 2.0) in methods
    assert ("router-norm", 2.5) in methods and ("float", 32.0) in methods
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["seeds"] == 2 for r in rows)


def test_experiment_config_rejects_bad_values():
    from accelsim.errors import ConfigError
    with pytest.raises(ConfigError, match="data must be"):
        ExperimentConfig(data="mnist")
    with pytest.raises(ConfigError, match="average bits"):
        ExperimentConfig(bits=(0.5,))


def test_cli_experiment_json_csv_and_out_dir(tmp_path, capsys):
    args = ["theory", "experiment", "--seeds", "1", "--bits", "2,3", "--steps", "30",
            "--samples", "200"]
    assert main(args + ["--format", "json", "--out", str(tmp_path / "res")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows][:2] == ["float", "router-norm"]
    for name in ("experiment.json", "experiment.csv", "experiment.png"):
        assert (tmp_path / "res" / name).stat().st_size > 0
    assert json.loads((tmp_path / "res" / "experiment.json").read_text()) == rows
    assert main(args + ["--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "data,method,avg_bits,accuracy,accuracy_std,seeds"


def test_cli_experiment_bad_input_exits_2(capsys, tmp_path):
    assert main(["theory", "experiment", "--bits", "2,x"]) == 2
    assert "--bits" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("")
    assert main(["theory", "experiment", "--out", str(f)]) == 2
    assert main(["theory", "experiment", "--data", "mnist"]) == 2


def test_cli_certify_formats_and_errors(tmp_path, capsys):
    base = ["theory", "certify", "--workload", "mixtral-8x7b", "--tokens", "16",
            "--layers", "2", "--scale", "128"]
    assert main(base + ["--alloc", "4"]) == 0
    out = capsys.readouterr().out
    assert "synthetic weights" in out and "certified" in out and "1/128 scale" in out
    assert main(base + ["--alloc", "4", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["layers"]) == 2 and doc["setup"]["scale"] == 128
    assert doc["layers"][0]["bound_mean"] >= doc["layers"][0]["measured_mean"]
    from accelsim.precision import BitAllocation
    from accelsim.workload import load_workload
    m = load_workload("mixtral-8x7b")
    alloc = BitAllocation.uniform(m, 3).with_expert_bits(
        np.tile([3, 3, 2, 2, 4, 4, 3, 3], (32, 1)))
    path = tmp_path / "alloc.yaml"
    alloc.save(path)
    assert main(base + ["--alloc", str(path), "--format", "csv", "--out",
                        str(tmp_path / "c.csv")]) == 0
    assert (tmp_path / "c.csv").read_text().startswith("layer,eps_in_mean,certified")
    for bad in (["--alloc", "12"], ["--alloc", "missing.yaml"]):
        assert main(base + bad) == 2
        assert "--alloc" in capsys.readouterr().err
    assert main(["theory", "certify", "--workload", "mixtral-8x7b", "--alloc", "4",
                 "--layers", "40"]) == 2
    assert main(base + ["--alloc", "4", "--out", str(tmp_path / "no" / "x.csv")]) == 2


def test_cli_theory_subprocess():
    r = subprocess.run([sys.executable, "-m", "accelsim.cli", "theory", "certify",
                        "--workload", "switch-base-64", "--alloc", "3", "--tokens", "8",
                        "--layers", "1", "--scale", "64", "--format", "csv"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("layer,")


def test_cli_progress_goes_to_stderr(run_cli):
    rc, out, err = run_cli("theory", "experiment", "--seeds", "2", "--bits", "2", "--steps",
                           "5", "--samples", "100", "--format", "json")
    assert rc == 0, err
    assert "seed 1/2 done" in err and "seed 2/2 done" in err
    assert "seed" not in out.split("[", 1)[0]         # stdout is the result alone
    import json
    assert json.loads(out)
    rc, out, err = run_cli("theory", "certify", "--workload", "mixtral-8x7b", "--alloc", "3",
                           "--layers", "2", "--tokens", "8", "--format", "json")
    assert rc == 0, err
    assert "certified layer 2/2" in err and json.loads(out)["layers"]

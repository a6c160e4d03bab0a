"""Signals: formulas by hand, checkpoints written here, NPZ and trace files."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from accelsim.alloc.signals import (ExpertSignals, expert_sensitivity,
                                    max_intra_neuron_variance, router_norms,
                                    signals_from_checkpoint, signals_from_npz,
                                    signals_from_trace)
from accelsim.errors import ConfigError
from accelsim.workload import Trace

PRE = "model.layers.{i}.block_sparse_moe"


def write_mixtral(path, layers=2, experts=4, hidden=8, ffn=6, seed=0, router_scale=1.0):
    """A tiny Mixtral-family checkpoint; returns the tensors written."""
    rng = np.random.default_rng(seed)
    t = {}
    for i in range(layers):
        p = PRE.format(i=i)
        t[f"{p}.gate.weight"] = (rng.standard_normal((experts, hidden)) *
                                 router_scale).astype(np.float32)
        for e in range(experts):
            t[f"{p}.experts.{e}.w1.weight"] = rng.standard_normal((ffn, hidden)).astype(
                np.float32) * (1 + e)
            t[f"{p}.experts.{e}.w3.weight"] = rng.standard_normal((ffn, hidden)).astype(
                np.float32)
            t[f"{p}.experts.{e}.w2.weight"] = rng.standard_normal((hidden, ffn)).astype(
                np.float32)
    save_file(t, str(path))
    return t


def test_router_norm_is_row_l2():
    assert router_norms([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]]).tolist() == [5.0, 1.0, 0.0]


def test_max_variance_variants_by_hand():
    # rows: [0, 2] var 2 (norm 2); [5, 5.5] var 0.125 (norm ~7.43); [1, -1] var 2 (norm 1.41)
    w = np.array([[0.0, 2.0], [5.0, 5.5], [1.0, -1.0]])
    assert max_intra_neuron_variance(w, "max_row") == pytest.approx(2.0)
    assert max_intra_neuron_variance(w, "top_norm_row") == pytest.approx(0.125)
    with pytest.raises(ConfigError):
        max_intra_neuron_variance(w, "nope")


def test_checkpoint_signals_match_numpy(tmp_path):
    ft = write_mixtral(tmp_path / "ft.safetensors", seed=1)
    pt = write_mixtral(tmp_path / "pt.safetensors", seed=2)
    s = signals_from_checkpoint(tmp_path / "ft.safetensors", "mixtral",
                                pretrained=tmp_path / "pt.safetensors",
                                variance="top_norm_row")
    for i in range(2):
        g_ft = ft[f"{PRE.format(i=i)}.gate.weight"].astype(np.float64)
        g_pt = pt[f"{PRE.format(i=i)}.gate.weight"].astype(np.float64)
        np.testing.assert_allclose(s.router_norm[i], np.linalg.norm(g_ft, axis=1), rtol=1e-6)
        np.testing.assert_allclose(s.router_norm_change[i], np.linalg.norm(g_ft, axis=1)
                                   - np.linalg.norm(g_pt, axis=1), rtol=1e-5, atol=1e-6)
        for e in range(4):
            w = ft[f"{PRE.format(i=i)}.experts.{e}.w1.weight"].astype(np.float64)
            top = np.argmax((w * w).sum(axis=1))
            assert s.max_variance[i, e] == pytest.approx(np.var(w[top], ddof=1), rel=1e-6)
    assert s.max_variance_kind == "top_norm_row"
    assert s.router_scores()[1] == "router_norm_change"


def test_checkpoint_sensitivity_decreases_with_bits(tmp_path):
    write_mixtral(tmp_path / "ft.safetensors")
    s = signals_from_checkpoint(tmp_path / "ft.safetensors", "mixtral", variance=None,
                                sensitivity_bits=(2, 4, 8), group_size=8)
    assert s.sensitivity.shape == (2, 4, 3)
    assert np.all(s.sensitivity[..., 0] > s.sensitivity[..., 1])
    assert np.all(s.sensitivity[..., 1] > s.sensitivity[..., 2])
    assert s.max_variance is None


def test_sensitivity_is_relative_output_error():
    from accelsim.quant import Expert, expert_forward, quantize_expert
    rng = np.random.default_rng(5)
    e = Expert("relu", {"wi": rng.standard_normal((8, 8)), "wo": rng.standard_normal((8, 8))})
    x = rng.standard_normal((16, 8)).astype(np.float32)
    got = expert_sensitivity(e, [3, 16], x, group_size=8, act_bits=None)
    ref = expert_forward(e, x).astype(np.float64)
    q = expert_forward(quantize_expert(e, 3, group_size=8), x).astype(np.float64)
    assert got[0] == pytest.approx(((q - ref) ** 2).sum() / (ref ** 2).sum(), rel=1e-6)
    assert got[1] == 0.0


def test_pretrained_with_other_layers_is_an_error(tmp_path):
    write_mixtral(tmp_path / "ft.safetensors")
    write_mixtral(tmp_path / "pt.safetensors", layers=3)
    with pytest.raises(ConfigError, match="MoE layers differ"):
        signals_from_checkpoint(tmp_path / "ft.safetensors", "mixtral",
                                pretrained=tmp_path / "pt.safetensors")


def test_npz_roundtrip_and_checks(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, router_norm_change=np.ones((2, 4)), max_variance=np.ones((2, 4)))
    s = signals_from_npz(p)
    s.check(2, 4)
    assert s.available == ("router_norm_change", "max_variance")
    with pytest.raises(ConfigError, match=r"must have shape \(3, 4\)"):
        s.check(3, 4)


def test_npz_nan_wrong_key_and_missing(tmp_path):
    p = tmp_path / "nan.npz"
    a = np.ones((2, 4))
    a[1, 2] = np.nan
    np.savez(p, router_norm=a)
    with pytest.raises(ConfigError, match="finite.*layer 1, expert 2"):
        signals_from_npz(p).check(2, 4)
    np.savez(tmp_path / "typo.npz", router_norms=np.ones((2, 4)))
    with pytest.raises(ConfigError, match="did you mean 'router_norm'"):
        signals_from_npz(tmp_path / "typo.npz")
    with pytest.raises(ConfigError, match="no such"):
        signals_from_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="NPZ"):
        signals_from_npz(tmp_path / "junk.npz")


def test_trace_frequency_and_mean_weight(tmp_path):
    ids = np.array([[[0, 1]], [[0, 2]], [[1, 0]]])          # 3 tokens, 1 layer, top-2
    w = np.array([[[0.75, 0.25]], [[0.5, 0.5]], [[0.6, 0.4]]])
    np.savez(tmp_path / "t.npz", expert_ids=ids, routing_weights=w)
    s = signals_from_trace(tmp_path / "t.npz", 4)
    # expert 0: 3 of 6 selections, weights .75 .5 .4; expert 1: .25 .6; expert 2: .5
    np.testing.assert_allclose(s.frequency, [[0.5, 2 / 6, 1 / 6, 0.0]])
    np.testing.assert_allclose(s.mean_weight, [[(0.75 + 0.5 + 0.4) / 3, 0.425, 0.5, 0.0]])


def test_trace_with_wrong_experts_is_an_error():
    with pytest.raises(ConfigError, match="expert ids"):
        signals_from_trace(Trace(np.array([[[0, 9]]])), 4)


def test_merge_keeps_first():
    a = ExpertSignals(router_norm=np.zeros((1, 2)), source="a")
    b = ExpertSignals(router_norm=np.ones((1, 2)), frequency=np.ones((1, 2)), source="b")
    m = a.merged(b)
    assert m.router_norm.tolist() == [[0, 0]] and m.frequency is not None
    assert m.source == "a + b"

"""Figures: the data each one draws (not pixels), Pareto fronts against a brute-force
reference, the roofline against the chip's peak and bandwidth, and the ``plot`` CLI."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from accelsim.hw import load_hw
from accelsim.plot import (
    bits_tradeoff,
    core_timeline,
    op_breakdown,
    pareto_front,
    pareto_mask,
    plot_table,
    roofline,
)


def _brute_front(values, maximize):
    """Reference: a row is on the front unless some row is as good everywhere and better
    somewhere (straight from the definition, one pair at a time)."""
    v = [[(-x if m else x) for x, m in zip(row, maximize)] for row in values]
    out = []
    for i, a in enumerate(v):
        if any(np.isnan(a)):
            out.append(False)
            continue
        dominated = any(
            not any(np.isnan(b)) and all(bj <= aj for aj, bj in zip(a, b))
            and any(bj < aj for aj, bj in zip(a, b))
            for j, b in enumerate(v) if j != i)
        out.append(not dominated)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_pareto_mask_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(1, 4))
    v = rng.integers(0, 6, size=(n, k)).astype(float)  # small integers: many ties
    if seed % 2:
        v[rng.integers(0, n)] = np.nan
    maximize = [bool(b) for b in rng.integers(0, 2, size=k)]
    assert pareto_mask(v, maximize).tolist() == _brute_front(v.tolist(), maximize)


def test_pareto_mask_blocks_give_the_same_answer_on_many_rows():
    rng = np.random.default_rng(1)
    v = rng.random((1300, 2))
    mask = pareto_mask(v, [False, False])
    # 2-D front by sweeping x ascending: y must strictly fall
    order = np.lexsort((v[:, 1], v[:, 0]))
    best, ref = np.inf, np.zeros(len(v), bool)
    for i in order:
        if v[i, 1] < best:
            ref[i], best = True, v[i, 1]
    assert mask.tolist() == ref.tolist()


def _table():
    rows = []
    for hw, method, bits in itertools.product(["chipA", "chipB"], ["uniform", "router-norm"],
                                              [2.0, 3.0, 4.0]):
        scale = 1.0 if hw == "chipA" else 2.0
        for batch in (1, 4):
            lat = scale * bits * (1.1 if method == "uniform" else 1.0) / batch
            rows.append({"hw": hw, "method": method, "avg_bits": bits, "batch": batch,
                         "latency_s": lat, "weight_bytes": bits * 1e9,
                         "tokens_per_s": batch / lat,
                         "noise_equiv_bits": bits - (0.3 if method == "uniform" else 0.0),
                         "error": None})
    rows.append({"hw": "chipA", "method": "uniform", "avg_bits": 5.0, "batch": 1,
                 "latency_s": np.nan, "weight_bytes": np.nan, "tokens_per_s": np.nan,
                 "noise_equiv_bits": np.nan, "error": "DoesNotFitError: no room"})
    return pd.DataFrame(rows)


def test_line_draws_the_mean_per_series_and_x():
    df = _table()
    r = plot_table(df, "avg_bits", "latency_s", hue="method", kind="line")
    d = r.data.set_index(["method", "avg_bits"])
    # chipA and chipB, batches 1 and 4: mean of s * b * f / batch over s in {1,2}, batch in {1,4}
    for method, f in (("uniform", 1.1), ("router-norm", 1.0)):
        for b in (2.0, 3.0, 4.0):
            want = np.mean([s * b * f / bt for s in (1, 2) for bt in (1, 4)])
            assert d.loc[(method, b), "latency_s"] == pytest.approx(want)
            assert d.loc[(method, b), "n"] == 4
    assert r.meta["dropped"] == 1  # the failed point
    lines = r.figure.axes[0].get_lines()
    assert len(lines) == 2
    assert sorted(line.get_label() for line in lines) == ["router-norm", "uniform"]


def test_scatter_draws_every_successful_row():
    r = plot_table(_table(), "weight_bytes", "latency_s", kind="scatter")
    assert len(r.data) == 24
    assert r.data["latency_s"].notna().all()


def test_pareto_kind_front_per_series_and_direction():
    df = _table()
    r = plot_table(df, "latency_s", "tokens_per_s", hue="hw", kind="pareto")
    for hw, g in r.data.groupby("hw"):
        ref = _brute_front(g[["latency_s", "tokens_per_s"]].values.tolist(), [False, True])
        assert g["pareto"].tolist() == ref
    assert r.data["pareto"].any()


def test_bar_means_per_category():
    r = plot_table(_table(), "method", "latency_s", hue="hw", kind="bar")
    d = r.data.set_index(["method", "hw"])["latency_s"]
    want = np.mean([2.0 * b * 1.1 / bt for b in (2.0, 3.0, 4.0) for bt in (1, 4)])
    assert d[("uniform", "chipB")] == pytest.approx(want)
    assert len(r.data) == 4


def test_bits_tradeoff_panels_per_metric_and_chip_lines_per_method():
    df = _table()
    r = bits_tradeoff(df[df.batch == 1])
    assert len(r.figure.axes) == 2 * 2
    for ax in r.figure.axes:
        assert len(ax.get_lines()) == 2
    d = r.data.set_index(["hw", "method", "avg_bits", "metric"])["value"]
    assert d[("chipB", "uniform", 3.0, "latency_s")] == pytest.approx(2.0 * 3.0 * 1.1)
    assert d[("chipA", "router-norm", 4.0, "weight_bytes")] == pytest.approx(4e9)
    assert not (r.data["avg_bits"] == 5.0).any()  # the failed point is not drawn


def test_pareto_front_three_objectives():
    df = _table()
    r = pareto_front(df)
    names = ["latency_s", "weight_bytes", "noise_equiv_bits"]
    assert r.data["pareto"].tolist() == _brute_front(r.data[names].values.tolist(),
                                                     [False, False, True])
    # uniform is dominated by router-norm at the same chip, bits and batch
    assert not r.data.loc[r.data.method == "uniform", "pareto"].any()
    assert len(r.data) == 24


def test_roofline_roofs_are_peak_and_bandwidth_and_points_are_macs_over_time():
    hw = load_hw("gemmini")  # 16 x 16 int8 at 1 GHz, DRAM 16 B/cycle
    pts = pd.DataFrame({"macs": [1e9, 4e9], "latency_s": [0.1, 0.05],
                        "offchip_bytes": [2e9, 1e8], "hw": ["gemmini", "gemmini"],
                        "error": [None, None]})
    r = roofline(hw, pts, label="hw")
    roofs = r.data["roofs"]
    assert roofs["bits"].tolist() == [8]
    assert roofs["peak_macs_per_s"].iloc[0] == pytest.approx(16 * 16 * 1e9)
    assert r.meta["bandwidth"] == pytest.approx(16 * 1e9)
    assert roofs["ridge_macs_per_byte"].iloc[0] == pytest.approx(16.0)
    p = r.data["points"]
    assert p["intensity_macs_per_byte"].tolist() == pytest.approx([0.5, 40.0])
    assert p["macs_per_s"].tolist() == pytest.approx([1e10, 8e10])


def test_roofline_per_precision_on_a_bit_parallel_chip():
    # halving rule on both operands: the rate doubles per halving of max(w, a) bits
    hw = load_hw("northpole")
    int8 = 256 * 32 * 32 * 400e6
    peaks = dict(roofline(hw).data["roofs"][["bits", "peak_macs_per_s"]].values.tolist())
    assert peaks == pytest.approx({2: int8, 4: int8, 8: int8})  # A8: the int8 rate
    peaks = dict(roofline(hw, activation_bits=2).data["roofs"][["bits", "peak_macs_per_s"]]
                 .values.tolist())
    assert peaks == pytest.approx({2: 4 * int8, 4: 2 * int8, 8: int8})


def _ops():
    return pd.DataFrame({
        "op": ["gemm", "gemm", "attention", "norm", "gemm"],
        "core": [0, 1, 0, 1, 0],
        "start_cycle": [0, 0, 100, 50, 300],
        "end_cycle": [100, 50, 300, 60, 350],
        "compute_cycles": [80, 40, 150, 10, 50],
        "stall_cycles": [20, 10, 50, 0, 0]})


def test_op_breakdown_sums_per_op_largest_first():
    r = op_breakdown(_ops())
    d = r.data.set_index("op")
    assert d.loc["gemm", "compute_cycles"] == 170 and d.loc["gemm", "stall_cycles"] == 30
    assert d.loc["attention", "total_cycles"] == 200
    assert r.data["op"].tolist() == ["gemm", "attention", "norm"]
    assert r.data["share"].sum() == pytest.approx(1.0)
    r = op_breakdown(_ops(), by="core")
    assert r.data.set_index("core")["total_cycles"].to_dict() == {0: 350, 1: 60}


def test_core_timeline_bars_per_core():
    r = core_timeline(_ops())
    assert r.meta["cores"] == [0, 1]
    assert r.data.groupby("core")["duration"].sum().to_dict() == {0: 350, 1: 60}
    ax = r.figure.axes[0]
    assert len(ax.patches) == 5  # one bar per op piece
    assert sorted(p.get_width() for p in ax.patches) == [10, 50, 50, 100, 200]


def _toy_result():
    import yaml
    from test_sweep_spec import TOY_WL

    from accelsim.precision import BitAllocation
    from accelsim.sim import simulate
    from accelsim.workload import Scenario, build_graph, load_workload
    m = load_workload(yaml.safe_load(TOY_WL))
    return simulate(load_hw("spyre"), build_graph(m, Scenario(batch=4)),
                    BitAllocation.uniform(m, 4))


def test_breakdown_and_timeline_of_a_real_simulation_account_for_every_cycle():
    res = _toy_result()
    b = op_breakdown(res)
    assert b.data["compute_cycles"].sum() == pytest.approx(res.compute_cycles)
    assert b.data["stall_cycles"].sum() == pytest.approx(res.stall_cycles)
    assert set(b.data["op"]) <= {"gemm", "attention", "norm", "router", "topk", "dispatch",
                                 "combine", "elementwise", "embed", "lm_head"}
    t = core_timeline(res)
    # the timeline spreads every op's core-cycles of work over the cores
    assert t.data["duration"].sum() == pytest.approx(res.ops["cycles"].sum())
    assert t.data["end_cycle"].max() <= res.cycles * (1 + 1e-9)
    assert set(t.data["op"]) <= set(res.ops["op"])
    assert len(t.meta["cores"]) <= res.cores


def test_figures_use_an_agg_canvas_without_pyplot():
    import sys

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    had_pyplot = "matplotlib.pyplot" in sys.modules
    r = plot_table(_table(), "avg_bits", "latency_s")
    assert isinstance(r.figure.canvas, FigureCanvasAgg)
    if not had_pyplot:  # plotting must not load pyplot (and with it a global backend)
        assert "matplotlib.pyplot" not in sys.modules


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def results(tmp_path):
    p = tmp_path / "r.parquet"
    _table().to_parquet(p, index=False)
    return p


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_cli_plot_writes_the_figure(run_cli, results, tmp_path, suffix, magic):
    out = tmp_path / f"f{suffix}"
    rc, stdout, err = run_cli("plot", results, "--x", "avg_bits", "--y", "latency_s",
                              "--hue", "method", "--kind", "line", "--out", out, "--average")
    assert rc == 0, err
    assert out.read_bytes().startswith(magic)
    assert "line: 6 means" in stdout
    # averaging over chips and batches is allowed with --average, and said on stderr
    assert "accelsim: warning:" in err and "hw (chipA/chipB" in err and "batch (1/4" in err


def test_cli_plot_refuses_to_average_over_other_parameters(run_cli, results, tmp_path):
    out = tmp_path / "f.png"
    rc, stdout, err = run_cli("plot", results, "--x", "avg_bits", "--y", "latency_s",
                              "--hue", "method", "--out", out)
    assert rc == 2 and not out.exists()
    assert "differ in hw (chipA/chipB at method=router-norm, avg_bits=2.0)" in err
    assert "batch (1/4" in err and "--average" in err
    # one chip and one batch: nothing mixed, no refusal
    rc, stdout, err = run_cli("plot", results, "--x", "avg_bits", "--y", "latency_s",
                              "--hue", "method", "--where", "hw=chipA", "--where", "batch=1",
                              "--out", out)
    assert rc == 0 and err == ""


def test_failed_points_that_change_the_average_are_named(run_cli, tmp_path):
    df = _table()
    df = df[(df.hw == "chipA") & (df.batch == 1)].copy()
    df = pd.concat([df, df.assign(seed=1)], ignore_index=True)   # two seeds per point
    df.loc[0, ["latency_s", "error"]] = [np.nan, "SimulationError: x"]
    path = tmp_path / "r.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "f.png"
    rc, _, err = run_cli("plot", path, "--x", "avg_bits", "--y", "latency_s", "--hue",
                         "method", "--out", out)
    assert rc == 2 and "failed points change which rows are averaged" in err
    assert "1 of 2" in err
    r = plot_table(df, "avg_bits", "latency_s", hue="method")
    assert any("1 of 2" in w for w in r.meta["warnings"])


def test_where_splits_at_the_last_equals_and_takes_units(run_cli, tmp_path):
    col = "hw.memory[name=lpddr5].read_bandwidth"
    df = _table()
    df = df[(df.hw == "chipA") & (df.batch == 1)].copy()
    df = pd.concat([df.assign(**{col: 1e11}), df.assign(**{col: 2e11})], ignore_index=True)
    path = tmp_path / "r.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "f.png"
    for value in ("2e11", "200 GB/s"):
        rc, stdout, err = run_cli("plot", path, "--x", "avg_bits", "--y", "latency_s",
                                  "--hue", "method", "--where", f"{col}={value}", "--out", out)
        assert rc == 0, err
        assert "line: 6 means" in stdout


def test_cli_plot_reads_csv_and_filters(run_cli, tmp_path):
    csv = tmp_path / "r.csv"
    _table().to_csv(csv, index=False)
    out = tmp_path / "f.png"
    rc, stdout, err = run_cli("plot", csv, "--x", "latency_s", "--y", "weight_bytes",
                              "--kind", "scatter", "--where", "hw=chipB", "--where",
                              "batch=4", "--out", out)
    assert rc == 0, err
    assert "scatter: 6 points" in stdout


def test_cli_plot_misspelt_column_exit_2_with_did_you_mean(run_cli, results, tmp_path):
    out = tmp_path / "f.png"
    rc, stdout, err = run_cli("plot", results, "--x", "avg_bit", "--y", "latency_s",
                              "--out", out)
    assert rc == 2 and stdout == ""
    assert "--x: no column 'avg_bit' in the results (did you mean 'avg_bits'?)" in err
    assert str(results) in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args,reason", [
    (["--out", "f.jpg"], "must be a .png, .svg or .pdf"),
    (["--out", "f.png", "--where", "nocol=1"], "no column 'nocol'"),
    (["--out", "f.png", "--where", "hw"], "must be COL=VALUE"),
    (["--out", "f.png", "--where", "hw=chipZ"], "no successful points"),
    (["--out", "f.png", "--y", "method"], "not numeric"),
])
def test_cli_plot_bad_input(run_cli, results, tmp_path, monkeypatch, args, reason):
    monkeypatch.chdir(tmp_path)
    base = ["plot", results, "--x", "avg_bits"]
    if "--y" not in args:
        base += ["--y", "latency_s"]
    rc, _, err = run_cli(*base, *args)
    assert rc == 2, err
    assert reason in err
    assert not list(tmp_path.glob("f.*"))


def test_cli_plot_unreadable_results(run_cli, tmp_path):
    bad = tmp_path / "r.parquet"
    bad.write_text("not parquet")
    rc, _, err = run_cli("plot", bad, "--x", "a", "--y", "b", "--out", tmp_path / "f.png")
    assert rc == 2 and "cannot read results" in err
    rc, _, err = run_cli("plot", tmp_path / "none.csv", "--x", "a", "--y", "b", "--out",
                         tmp_path / "f.png")
    assert rc == 2 and "no such results file" in err


def test_roofline_points_of_real_sweep_points_stay_under_both_roofs(tmp_path):
    from test_sweep_spec import TINY_HW, TOY_WL

    from accelsim.sweep import run_sweep, sweep_from_dict
    (tmp_path / "tiny.yaml").write_text(TINY_HW)
    (tmp_path / "toy.yaml").write_text(TOY_WL)
    spec = sweep_from_dict({"fixed": {"workload": "toy.yaml", "hw": "tiny.yaml"},
                            "axes": [{"grid": {"avg_bits": [2, 4, 8],
                                               "batch": [1, 16, 256]}},
                                     {"zip": {"phase": ["decode", "prefill"],
                                              "seq_len": [1, 64]}}]},
                           base_dir=tmp_path)
    table = run_sweep(spec).table
    hw = load_hw(tmp_path / "tiny.yaml")
    r = roofline(hw, table, label="phase")
    pts = r.data["points"]
    assert len(pts) == 18
    peak = 8 * 8 * 500e6          # tiny: 8 x 8 int8 array at 500 MHz
    bw = 4e9                      # tiny: DRAM 4 GB/s
    assert r.data["roofs"]["peak_macs_per_s"].max() == pytest.approx(peak)
    assert (pts["macs_per_s"] <= peak * (1 + 1e-9)).all()
    assert (pts["macs_per_s"] <= bw * pts["intensity_macs_per_byte"] * (1 + 1e-9)).all()

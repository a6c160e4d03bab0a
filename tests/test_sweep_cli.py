"""Real sweep points on small configs: each row is what the simulator gives for the point's
inputs, overrides reach the chip, executors agree, and the ``sweep`` CLI's contract."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from test_sweep_spec import TINY_HW, TOY_WL

from accelsim.alloc import DEFAULT_ROLE_BITS, AllocRequest, allocate
from accelsim.errors import ConfigError
from accelsim.hw import load_hw
from accelsim.precision import BitAllocation
from accelsim.sim import simulate
from accelsim.sweep import evaluate_point, load_sweep, parts_dir, read_table, run_sweep
from accelsim.sweep.allocation import synthetic_signals
from accelsim.workload import Scenario, Zipf, build_graph, load_workload


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_HW)
    (tmp_path / "toy.yaml").write_text(TOY_WL)
    return tmp_path


def _spec_file(cfg, body: str, name: str = "s.yaml"):
    p = cfg / name
    p.write_text(textwrap.dedent(body))
    return p


SMALL = """\
    name: small
    seed: 5
    fixed: {workload: toy.yaml, hw: tiny.yaml, routing: "zipf:1.5", context: 64}
    axes:
      - grid: {method: [uniform, router-norm, frequency], avg_bits: [2, 4]}
      - zip: {batch: [1, 4], phase: [decode, prefill], seq_len: [1, 16]}
    """


def test_rows_are_what_the_simulator_gives_for_the_point(cfg):
    spec = load_sweep(_spec_file(cfg, SMALL))
    table = run_sweep(spec).table
    assert len(table) == 3 * 2 * 2 and table["error"].isna().all()
    model = load_workload(cfg / "toy.yaml")
    hw = load_hw(cfg / "tiny.yaml")
    for _, row in table.iterrows():
        sc = Scenario(phase=row["phase"], batch=int(row["batch"]),
                      seq_len=int(row["seq_len"]), context=64, routing=Zipf(1.5), seed=5)
        g = build_graph(model, sc)
        shares = sc.expert_load(model).probabilities
        if row["method"] == "uniform":
            alloc = BitAllocation(model.name, np.full((2, 4), int(row["avg_bits"])),
                                  defaults=DEFAULT_ROLE_BITS)
        else:
            levels = (5, 4, 3) if row["avg_bits"] == 4 else (3, 2, 1)  # documented default
            sig = synthetic_signals((2, 4), 5, shares)
            alloc = allocate(row["method"], AllocRequest(model, sig, avg_bits=row["avg_bits"],
                                                         levels=levels, seed=5))
        # the default 'native' packing: widths padded to those the chip computes on
        from accelsim.packing import packed
        stored = packed(alloc, hw.cores.mac_array.weight_bits)
        res = simulate(hw, g, stored)
        assert row["latency_s"] == res.latency_s and row["energy_j"] == res.energy_j
        assert row["weight_bytes"] == res.weight_bytes
        assert row["weight_bytes"] == pytest.approx(stored.weight_bytes(model), rel=1e-12)
        assert row["offchip_bytes"] == res.offchip_bytes and row["bound"] == res.bound
        assert row["macs"] == pytest.approx(g.graph["total_macs"], rel=1e-12)
        assert row["tokens_per_s"] == pytest.approx(sc.tokens / row["latency_s"])
        assert row["expert_avg_bits"] == pytest.approx(row["avg_bits"])
        # proxy from its formula: -log2(sum_w 4^-b / sum_w) / 2, w = routing shares
        b = alloc.expert_bits
        want = -np.log2((shares * 4.0 ** -b).sum() / shares.sum()) / 2
        assert row["noise_equiv_bits"] == pytest.approx(want)


def test_frequency_method_gives_hot_experts_more_bits_so_the_proxy_rises(cfg):
    spec = load_sweep(_spec_file(cfg, SMALL))
    t = run_sweep(spec).table
    at2 = t[(t.avg_bits == 2) & (t.batch == 1)].set_index("method")["noise_equiv_bits"]
    assert at2["uniform"] == pytest.approx(2.0)
    assert at2["frequency"] > at2["uniform"]  # Zipf routing: hot experts at 3 bits


def test_override_equals_the_edited_file_and_more_bandwidth_is_never_slower(cfg):
    spec = load_sweep(_spec_file(cfg, """\
        fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4, batch: 2, packing: dense}
        axes:
          - grid:
              hw.memory[name=dram].read_bandwidth: [1 GB/s, 4 GB/s, 64 GB/s]
              hw.memory[0].capacity: [4 KiB, 64 KiB]
        """))
    t = run_sweep(spec).table
    assert t["error"].isna().all()
    raw = yaml.safe_load(TINY_HW)
    raw["memory"][1]["read_bandwidth"] = "1 GB/s"
    raw["memory"][0]["capacity"] = "4 KiB"
    (cfg / "edited.yaml").write_text(yaml.safe_dump(raw))
    model = load_workload(cfg / "toy.yaml")
    g = build_graph(model, Scenario(batch=2))
    direct = simulate(load_hw(cfg / "edited.yaml"), g,
                      BitAllocation(model.name, np.full((2, 4), 4), defaults=DEFAULT_ROLE_BITS))
    row = t.iloc[0]
    # override columns hold base units: 1 GB/s = 1e9 bytes/s, 4 KiB = 4096 bytes
    assert row["hw.memory[name=dram].read_bandwidth"] == 1e9
    assert sorted(t["hw.memory[0].capacity"].unique()) == [4096, 65536]
    assert row["latency_s"] == direct.latency_s
    for cap, g2 in t.groupby("hw.memory[0].capacity"):
        lat = g2.set_index("hw.memory[name=dram].read_bandwidth")["latency_s"]
        assert lat[1e9] >= lat[4e9] >= lat[64e9]
        assert lat[1e9] > lat[64e9]


def test_processes_and_dask_give_the_serial_results_on_real_points(cfg):
    spec = load_sweep(_spec_file(cfg, SMALL))
    serial = run_sweep(spec).table
    pd.testing.assert_frame_equal(run_sweep(spec, executor="processes", workers=2,
                                            chunk=3).table, serial)
    pytest.importorskip("distributed")
    pd.testing.assert_frame_equal(run_sweep(spec, executor="dask", workers=2, local=True,
                                            processes=False, chunk=2).table, serial)


# ----------------------------------------------------------------------------- CLI


def test_cli_sweep_writes_the_table(run_cli, cfg):
    spec = _spec_file(cfg, SMALL)
    out = cfg / "r.csv"
    rc, stdout, err = run_cli("sweep", spec, "--out", out, "--chunk", "5")
    assert rc == 0, err
    assert stdout.startswith(f"wrote 12 points to {out} (0 failed")
    t = read_table(out)
    assert len(t) == 12 and list(t["point_id"]) == list(range(12))
    for col in ("hw", "workload", "method", "avg_bits", "latency_s", "tokens_per_s",
                "energy_j", "weight_bytes", "offchip_bytes", "bound", "batch", "phase",
                "seq_len", "seed", "error"):
        assert col in t.columns
    assert (t["hw"] == "tiny.yaml").all() and (t["seed"] == 5).all()
    assert not parts_dir(out).exists()


def test_cli_sweep_with_an_existing_dask_cluster(run_cli, cfg):
    distributed = pytest.importorskip("distributed")
    spec = _spec_file(cfg, SMALL)
    with distributed.LocalCluster(n_workers=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        rc, stdout, err = run_cli("sweep", spec, "--out", cfg / "r.parquet", "--dask",
                                  cluster.scheduler_address)
    assert rc == 0, err
    assert "on dask" in stdout
    pd.testing.assert_frame_equal(read_table(cfg / "r.parquet"), run_sweep(load_sweep(spec)).table)


def test_cli_sweep_dask_local_cluster_of_worker_processes_and_progress_bar(run_cli, cfg):
    pytest.importorskip("distributed")
    spec = _spec_file(cfg, SMALL)
    rc, stdout, err = run_cli("sweep", spec, "--out", cfg / "r.parquet", "--dask-local", "2",
                              "--progress")
    assert rc == 0, err
    assert "on dask x2" in stdout
    assert "sweep: 100%" in err and "12/12" in err  # tqdm, forced on a non-terminal
    pd.testing.assert_frame_equal(read_table(cfg / "r.parquet"),
                                  run_sweep(load_sweep(spec)).table)


def test_cli_no_progress_bar_when_stderr_is_not_a_terminal(run_cli, cfg):
    rc, _, err = run_cli("sweep", _spec_file(cfg, SMALL), "--out", cfg / "r.csv")
    assert rc == 0 and err == ""


def _interrupt_after(n):
    state = {"left": n}

    def evaluate(point):
        if state["left"] == 0:
            raise KeyboardInterrupt
        state["left"] -= 1
        return evaluate_point(point)
    return evaluate


def test_cli_resume_completes_an_interrupted_run(run_cli, cfg):
    spec_file = _spec_file(cfg, SMALL)
    out = cfg / "r.parquet"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_sweep(spec_file), out, evaluate=_interrupt_after(5), chunk=2)
    assert len(list(parts_dir(out).glob("part-*"))) == 2 and not out.exists()
    rc, _, err = run_cli("sweep", spec_file, "--out", out)
    assert rc == 2 and "add --resume" in err
    rc, stdout, err = run_cli("sweep", spec_file, "--out", out, "--resume")
    assert rc == 0, err
    assert "4 from the interrupted run" in stdout
    pd.testing.assert_frame_equal(read_table(out), run_sweep(load_sweep(spec_file)).table)


def test_cli_failed_points_are_noted_and_all_failed_is_status_1(run_cli, cfg):
    spec = _spec_file(cfg, """\
        fixed: {workload: toy.yaml, hw: tiny.yaml, method: uniform}
        axes: [{grid: {avg_bits: [2.5, 4]}}]
        """)
    rc, stdout, err = run_cli("sweep", spec, "--out", cfg / "r.csv")
    assert rc == 0
    assert "1 failed" in stdout
    assert "point 0: ConfigError: avg_bits: uniform needs an integer" in err
    spec = _spec_file(cfg, """\
        fixed: {workload: toy.yaml, hw: tiny.yaml, method: uniform, avg_bits: 2.5}
        """, "s2.yaml")
    rc, stdout, err = run_cli("sweep", spec, "--out", cfg / "r2.csv")
    assert rc == 1 and "1 point(s) failed" in err
    assert read_table(cfg / "r2.csv")["error"].notna().all()


@pytest.mark.parametrize("body,extra,key,reason", [
    ("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bit: 4}", [], "fixed.avg_bit",
     "did you mean 'avg_bits'"),
    ("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4}\n"
     "axes: [{grid: {'hw.memory[name=hbm].capacity': [1 GiB]}}]", [],
     "axes[0].grid.hw.memory[name=hbm].capacity[0]", "no item of 'memory' has name=hbm"),
    ("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4, hw.cores.count: 0}", [],
     "fixed.hw.cores.count", "tiny.yaml: cores.count: must be >= 1"),
    ("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4, method: routernorm}", [],
     "fixed.method", "did you mean 'router-norm'"),
    ("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4}", ["--workers", "2",
                                                                 "--dask-local", "1"],
     "--dask-local", "alternatives"),
    ("fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4}", ["--chunk", "0"],
     "", "--chunk"),
])
def test_cli_sweep_bad_input_exit_2_nothing_written(run_cli, cfg, body, extra, key, reason):
    spec = _spec_file(cfg, body + "\n")
    out = cfg / "r.parquet"
    rc, stdout, err = run_cli("sweep", spec, "--out", out, *extra)
    assert rc == 2, err
    assert "Traceback" not in err and stdout == ""
    assert any(key in line and reason in line for line in err.splitlines()), err
    if key.startswith(("fixed", "axes")):
        assert str(spec) in err
    assert not out.exists() and not parts_dir(out).exists()


def test_cli_sweep_bad_paths(run_cli, cfg):
    spec = _spec_file(cfg, "fixed: {workload: toy.yaml, hw: tiny.yaml, avg_bits: 4}\n")
    rc, _, err = run_cli("sweep", cfg / "none.yaml", "--out", cfg / "r.csv")
    assert rc == 2 and "no such sweep spec" in err
    rc, _, err = run_cli("sweep", spec, "--out", cfg / "r.xlsx")
    assert rc == 2 and ".parquet or .csv" in err
    rc, _, err = run_cli("sweep", spec, "--out", cfg / "nodir" / "r.csv")
    assert rc == 2 and "directory does not exist" in err


def test_signals_file_drives_router_norm_by_the_papers_rule(cfg):
    from accelsim.sweep.allocation import make_allocation
    change = np.array([[0.4, 0.1, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]])
    np.savez(cfg / "sig.npz", router_norm_change=change)
    spec = load_sweep(_spec_file(cfg, """\
        fixed: {workload: toy.yaml, hw: tiny.yaml, method: router-norm, avg_bits: 2.5,
                levels: [3, 2], signals: sig.npz}
        """))
    p = spec.points[0]
    assert p.columns["signals"] == "sig.npz" and p.columns["levels"] == "3,2"
    alloc = make_allocation(load_workload(cfg / "toy.yaml"), p.params)
    # two levels: round((2.5 - 2) / (3 - 2) * 4) = 2 experts at 3 bits, the two with the
    # smallest router-norm change
    assert alloc.expert_bits.tolist() == [[2, 3, 2, 3], [3, 3, 2, 2]]
    row = run_sweep(spec).table.iloc[0]
    assert row["error"] is None and row["expert_avg_bits"] == 2.5


def test_signals_file_of_the_wrong_shape_is_a_spec_error(cfg):
    np.savez(cfg / "sig.npz", router_norm_change=np.ones((3, 4)))
    with pytest.raises(ConfigError) as ei:
        load_sweep(_spec_file(cfg, """\
            fixed: {workload: toy.yaml, hw: tiny.yaml, method: router-norm, avg_bits: 3,
                    signals: sig.npz}
            """))
    assert "fixed.signals" in str(ei.value) and "must have shape (2, 4)" in str(ei.value)

"""Sweep execution with an injected evaluation: executors agree, failures are recorded,
results are written in chunks and a killed run resumes without losing or repeating points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from accelsim.errors import ConfigError
from accelsim.sweep import parts_dir, read_table, run_sweep, sweep_from_dict

SPEC = {"seed": 3,
        "fixed": {"workload": "mixtral-8x7b", "hw": "gemmini"},
        "axes": [{"grid": {"avg_bits": [2, 3, 4, 5, 6], "batch": [1, 2, 4, 8]}},
                 {"zip": {"context": [128, 256], "phase": ["decode", "prefill"]}}]}


def fake_eval(point):
    """A deterministic stand-in for the simulator; fails where avg_bits == 3 and batch == 2."""
    p = point.params
    if p["avg_bits"] == 3 and p["batch"] == 2:
        raise ValueError("no such luck")
    lat = p["avg_bits"] * 1e-3 / p["batch"] + p["context"] * 1e-6
    return {"latency_s": lat, "tokens_per_s": p["batch"] / lat,
            "weight_bytes": int(p["avg_bits"] * 1000), "bound": "memory",
            "seed_seen": point.seed}


def slow_eval(point):
    time.sleep(0.04)
    return fake_eval(point)


def _spec():
    return sweep_from_dict(SPEC)


def _expected_row(point):
    p = point.params
    lat = p["avg_bits"] * 1e-3 / p["batch"] + p["context"] * 1e-6
    return lat


def test_every_point_once_with_its_values_and_failures_recorded():
    spec = _spec()
    res = run_sweep(spec, evaluate=fake_eval, chunk=7)
    t = res.table
    assert len(t) == len(spec) == 5 * 4 * 2
    assert t["point_id"].tolist() == list(range(len(spec)))
    assert res.failed == 2 and res.points == 40
    bad = t[t["error"].notna()]
    assert set(zip(bad["avg_bits"], bad["batch"])) == {(3.0, 2)}
    assert bad["error"].str.startswith("ValueError: no such luck").all()
    assert bad["latency_s"].isna().all()
    ok = t[t["error"].isna()]
    for _, row in ok.iterrows():
        lat = row["avg_bits"] * 1e-3 / row["batch"] + row["context"] * 1e-6
        assert row["latency_s"] == pytest.approx(lat, rel=1e-12)
    assert (t["seed_seen"].dropna() == 3).all()
    # parameter columns first, in order, then results, then the error
    assert list(t.columns[:len(spec.columns)]) == list(spec.columns)
    assert t.columns[-1] == "error"


def test_progress_reports_every_chunk_up_to_the_total():
    calls = []
    run_sweep(_spec(), evaluate=fake_eval, chunk=9, progress=lambda d, n: calls.append((d, n)))
    assert calls[0] == (0, 40) and calls[-1] == (40, 40)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == 1 + 5  # ceil(40 / 9) chunks


@pytest.fixture(scope="module")
def serial_table():
    return run_sweep(_spec(), evaluate=fake_eval, chunk=6).table


def test_processes_give_the_serial_results(serial_table):
    res = run_sweep(_spec(), executor="processes", workers=2, evaluate=fake_eval, chunk=5)
    assert res.executor == "processes" and res.workers == 2
    pd.testing.assert_frame_equal(res.table, serial_table)


def test_dask_local_cluster_gives_the_serial_results(serial_table):
    pytest.importorskip("distributed")
    # thread workers here; worker processes in test_sweep_cli (--dask-local)
    res = run_sweep(_spec(), executor="dask", workers=2, local=True, processes=False,
                    evaluate=fake_eval, chunk=8)
    assert res.executor == "dask" and res.workers == 2
    pd.testing.assert_frame_equal(res.table, serial_table)


def test_dask_existing_cluster_by_address(serial_table):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        res = run_sweep(_spec(), executor="dask", address=cluster.scheduler_address,
                        evaluate=fake_eval, chunk=8)
    pd.testing.assert_frame_equal(res.table, serial_table)


def test_unreachable_dask_scheduler_is_a_config_error():
    pytest.importorskip("distributed")
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        run_sweep(_spec(), executor="dask", address="tcp://127.0.0.1:9", timeout="1s",
                  evaluate=fake_eval)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_out_file_is_the_table_and_the_parts_are_removed(tmp_path, serial_table, suffix):
    out = tmp_path / f"r{suffix}"
    run_sweep(_spec(), out, evaluate=fake_eval, chunk=4)
    assert not parts_dir(out).exists()
    back = read_table(out)
    assert back["point_id"].tolist() == list(range(40))
    assert list(back.columns) == list(serial_table.columns)
    pd.testing.assert_series_equal(back["latency_s"], serial_table["latency_s"])
    assert back["error"].notna().sum() == 2
    if suffix == ".parquet":
        pd.testing.assert_frame_equal(back, serial_table)


def test_bad_out_suffix_and_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match=".parquet or .csv"):
        run_sweep(_spec(), tmp_path / "r.xlsx", evaluate=fake_eval)
    with pytest.raises(ConfigError, match="directory does not exist"):
        run_sweep(_spec(), tmp_path / "no" / "r.csv", evaluate=fake_eval)


def test_leftover_parts_need_resume_and_a_changed_spec_is_refused(tmp_path):
    out = tmp_path / "r.parquet"
    parts_dir(out).mkdir()
    (parts_dir(out) / "manifest.json").write_text('{"fingerprint": "other", "points": 40}')
    with pytest.raises(ConfigError, match="add --resume"):
        run_sweep(_spec(), out, evaluate=fake_eval)
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(_spec(), out, evaluate=fake_eval, resume=True)
    assert not out.exists()


def test_resume_without_parts_runs_everything(tmp_path, serial_table):
    out = tmp_path / "r.parquet"
    res = run_sweep(_spec(), out, evaluate=fake_eval, resume=True)
    assert res.reused == 0
    pd.testing.assert_frame_equal(read_table(out), serial_table)


_KILLED_RUN = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {tests!r})
    from test_sweep_run import slow_eval, SPEC
    from accelsim.sweep import run_sweep, sweep_from_dict
    run_sweep(sweep_from_dict(SPEC), {out!r}, executor={executor!r}, workers=2,
              evaluate=slow_eval, chunk=2)
    """)


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_a_killed_run_resumes_without_losing_or_repeating_points(tmp_path, serial_table,
                                                                 executor):
    out = tmp_path / "r.parquet"
    code = _KILLED_RUN.format(tests=str(Path(__file__).parent), out=str(out),
                              executor=executor)
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stderr=subprocess.PIPE)
    parts = parts_dir(out)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if parts.is_dir() and len(list(parts.glob("part-*.parquet"))) >= 3:
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not out.exists()
    written = len(list(parts.glob("part-*.parquet")))
    assert 3 <= written < 20
    res = run_sweep(_spec(), out, evaluate=fake_eval, resume=True, chunk=3)
    assert 6 <= res.reused < 40
    pd.testing.assert_frame_equal(res.table, serial_table)
    pd.testing.assert_frame_equal(read_table(out), serial_table)
    assert not parts.exists()


def test_gemm_sweep_runs_scale_sim_compute_model():
    # weight-stationary gemmini, 16 x 16: SCALE-Sim's folds x (2R + C + M - 2) compute cycles
    # for every weight bit-width and scratchpad size (the array is 8-bit: narrower weights only
    # shrink the bytes)
    spec = sweep_from_dict({"fixed": {"hw": "gemmini", "dataflow": "weight_stationary",
                                      "packing": "dense"},
                            "axes": [{"grid": {"gemm": ["64,256,256", "16,512,128"],
                                               "avg_bits": [4, 8],
                                               "hw.memory[1].capacity": ["256 KiB",
                                                                         "1 MiB"]}}]})
    table = run_sweep(spec).table
    assert table["error"].isna().all()
    for _, row in table.iterrows():
        m, k, n = (int(x) for x in row["gemm"].split(","))
        assert row["compute_cycles"] == (k // 16) * (n // 16) * (2 * 16 + 16 + m - 2)
        assert row["macs"] == m * k * n
        assert row["expert_avg_bits"] == row["noise_equiv_bits"] == row["avg_bits"]
    # 4-bit weights: half the bytes of 8-bit ones, group scales and zeros included
    w = table.set_index(["gemm", "avg_bits", "hw.memory[1].capacity"])["weight_bytes"]
    codes4, codes8 = 256 * 256 // 2, 256 * 256
    groups = 256 * (256 // 128) * 3          # fp16 scale + uint8 zero per 128 weights
    # the override column holds bytes (base units), not the text written
    assert w[("64,256,256", 4.0, 256 * 1024)] == codes4 + groups
    assert w[("64,256,256", 8.0, 2**20)] == codes8 + groups
    # native packing (the default) stores 4-bit weights as the 8-bit array computes them
    native = run_sweep(sweep_from_dict({"fixed": {"hw": "gemmini", "gemm": "64,256,256",
                                                  "avg_bits": 4}})).table
    assert native["weight_bytes"].iloc[0] == codes8 + groups

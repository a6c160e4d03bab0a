"""``accelsim simulate``: formats, --ops, --out, --gemm, --alloc, --routing, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from accelsim.precision import BitAllocation
from accelsim.sim import simulate, simulate_gemm
from accelsim.workload import Scenario, build_graph, load_workload

WL = ("--hw", "h100", "--workload", "mixtral-8x7b", "--bits", "4", "--batch", "4")


def test_table(run_cli):
    rc, out, err = run_cli("simulate", *WL)
    assert rc == 0, err
    for word in ("latency_s", "tokens_per_s", "energy_j", "bound", "weight_bytes[hbm3]"):
        assert word in out


def test_json_matches_the_api(run_cli):
    rc, out, err = run_cli("simulate", *WL, "--context", "128", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    m = load_workload("mixtral-8x7b")
    r = simulate("h100", build_graph(m, Scenario(batch=4, context=128)),
                 BitAllocation.uniform(m, 4))
    for k in ("latency_s", "cycles", "tokens_per_s", "energy_j", "weight_bytes",
              "offchip_bytes", "onchip_bytes_moved", "mac_utilization", "compute_cycles",
              "stall_cycles"):
        assert d[k] == pytest.approx(getattr(r, k), rel=1e-12)
    assert d["bound"] == r.bound
    assert d["weight_bytes_by_level"] == pytest.approx(r.weight_bytes_by_level)
    assert "ops" not in d


def test_json_and_csv_with_ops(run_cli):
    rc, out, _ = run_cli("simulate", *WL, "--format", "json", "--ops")
    d = json.loads(out)
    n = build_graph(load_workload("mixtral-8x7b"), Scenario(batch=4)).number_of_nodes()
    assert rc == 0 and len(d["ops"]) == n and d["ops"][0]["name"] == "embed"
    rc, out, _ = run_cli("simulate", *WL, "--format", "csv", "--ops")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and len(rows) == n and "start_cycle" in rows[0]


def test_csv_totals_is_one_row(run_cli):
    rc, out, _ = run_cli("simulate", *WL, "--format", "csv")
    lines = out.strip().splitlines()
    assert rc == 0 and len(lines) == 2
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["bound"] and float(row["latency_s"]) > 0 and "weight_bytes[hbm3]" in row


def test_gemm(run_cli):
    rc, out, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "64,256,256", "--format",
                           "json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["compute_cycles"] == simulate_gemm("gemmini", 64, 256, 256).compute_cycles
    assert d["model"] is None and d["macs"] == 64 * 256 * 256


@pytest.mark.parametrize("gs,scale_groups", [(None, 1), ("none", 1), ("128", 2), ("64", 4)])
def test_gemm_group_size(run_cli, gs, scale_groups):
    # 256 x 256 int8 weights: 1 B a weight, plus per output row and group of K a 16-bit
    # scale and an 8-bit zero point (3 B); default 128: two groups of 128 along K = 256
    args = ["simulate", "--hw", "gemmini", "--gemm", "64,256,256", "--format", "json"]
    if gs is not None:
        args += ["--group-size", gs]
    rc, out, err = run_cli(*args)
    assert rc == 0, err
    groups = 2 if gs is None else scale_groups
    assert json.loads(out)["weight_bytes"] == 256 * 256 + 256 * groups * 3


@pytest.mark.parametrize("frac", ["0.5", "1"])
def test_gemm_and_workload_staging_fraction(run_cli, frac):
    # gemmini keeps the fraction of its 256 KiB scratchpad for tiles (the accumulator, which
    # holds only outputs, is all staging)
    rc, out, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "16,4096,1024",
                           "--staging-fraction", frac, "--format", "json")
    assert rc == 0, err
    st = json.loads(out)["staging_bytes_by_level"]
    assert st == {"accumulator": 65536.0, "scratchpad": 262144 * float(frac), "dram": 0.0}
    rc, out, err = run_cli("simulate", "--hw", "h100", "--workload", "mixtral-8x7b", "--bits",
                           "4", "--staging-fraction", frac, "--format", "json")
    assert rc == 0, err
    m = load_workload("mixtral-8x7b")
    r = simulate("h100", build_graph(m, Scenario()), BitAllocation.uniform(m, 4),
                 staging_fraction=float(frac))
    assert json.loads(out)["latency_s"] == pytest.approx(r.latency_s, rel=1e-12)
    assert json.loads(out)["staging_bytes_by_level"] == r.staging_bytes_by_level


def test_alloc_file_and_routing(run_cli, tmp_path):
    m = load_workload("mixtral-8x7b")
    a = BitAllocation.uniform(m, 3)
    path = tmp_path / "alloc.yaml"
    a.save(path, m)
    rc, out, err = run_cli("simulate", "--hw", "h100", "--workload", "mixtral-8x7b", "--alloc",
                           str(path), "--routing", "zipf:1.2", "--format", "json",
                           "--packing", "dense")
    assert rc == 0, err
    r = simulate("h100", build_graph(m, Scenario(routing=__import__(
        "accelsim.workload", fromlist=["Zipf"]).Zipf(1.2))), a)
    assert json.loads(out)["latency_s"] == pytest.approx(r.latency_s, rel=1e-12)


def test_out_file(run_cli, tmp_path):
    target = tmp_path / "r.json"
    rc, out, _ = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,64,64", "--format",
                         "json", "--out", str(target))
    assert rc == 0 and out == "" and json.loads(target.read_text())["cycles"] > 0
    bad = tmp_path / "nope" / "r.json"
    rc, _, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,64,64", "--out", str(bad))
    assert rc == 2 and "directory does not exist" in err and not bad.parent.exists()


@pytest.mark.parametrize("args,msg", [
    (("--hw", "gemmini"), "give --workload"),
    (("--hw", "gemmini", "--gemm", "1,2,3", "--workload", "mixtral-8x7b"), "exclude"),
    (("--hw", "gemmini", "--workload", "mixtral-8x7b", "--bits", "4", "--alloc", "x.yaml"),
     "--bits and --alloc exclude"),
    (("--hw", "gemmini", "--gemm", "1,2"), "must be M,K,N"),
    (("--hw", "gemmini", "--gemm", "0,2,3"), "must be >= 1"),
    (("--hw", "gemmini", "--workload", "mixtral-8x7b", "--routing", "zipff:1"),
     "routing must be"),
    (("--hw", "gemmini", "--workload", "mixtral-8x7b", "--bits", "4", "--residency",
      "must-fit"), "must-fit: the weights need"),
    (("--hw", "northpole", "--workload", "mixtral-8x7b", "--bits", "4"),
     "no off-chip memory"),
    (("--hw", "gemmini", "--gemm", "4,4,4", "--dataflow", "output_stationary", "--hw",
      "northpole"), "northpole supports weight_stationary"),
    (("--hw", "nopole", "--gemm", "4,4,4"), "unknown accelerator preset"),
    (("--hw", "gemmini", "--gemm", "4,4,4", "--group-size", "0"),
     "--group-size: must be an integer in 1..1048576"),
    (("--hw", "gemmini", "--gemm", "4,4,4", "--group-size", "12x"),
     "--group-size: must be an integer"),
    (("--hw", "gemmini", "--workload", "mixtral-8x7b", "--group-size", "-3"),
     "--group-size: must be an integer"),
    (("--hw", "gemmini", "--gemm", "4,4,4", "--staging-fraction", "0"), "--staging-fraction"),
    (("--hw", "gemmini", "--gemm", "4,4,4", "--staging-fraction", "1.5"), "--staging-fraction"),
    (("--hw", "gemmini", "--gemm", "4,4,4", "--staging-fraction", "half"),
     "--staging-fraction"),
])
def test_errors_are_one_line_exit_2(run_cli, args, msg):
    rc, out, err = run_cli("simulate", *args)
    assert rc == 2 and msg in err and "Traceback" not in err and out == ""
    assert len(err.strip().splitlines()) == 1, err


def test_subprocess_entry_point():
    p = subprocess.run([sys.executable, "-m", "accelsim.cli", "simulate", "--hw", "gemmini",
                        "--gemm", "16,64,64", "--format", "json"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["compute_cycles"] > 0


def test_output_states_what_ran(run_cli):
    rc, out, err = run_cli("simulate", "--hw", "spyre", "--workload", "mixtral-8x7b", "--bits",
                           "3", "--batch", "8", "--context", "64")
    assert rc == 0, err
    head = out.splitlines()[:2]
    assert "decode, batch 8, context 64" in head[0]
    assert "uniform 3-bit" in head[1] and "experts 3 average bits, stored as 4" in head[1]
    assert "native packing" in head[1] and "KV cache 16 bits" in head[1]
    # spyre's MAC arrays take 4/8/16-bit weights: the 3-bit ones are padded, with a warning
    assert "3->4" in out


def test_packing_native_pads_and_dense_does_not(run_cli):
    args = ("simulate", "--hw", "spyre", "--workload", "mixtral-8x7b", "--bits", "3",
            "--format", "json")
    native = json.loads(run_cli(*args)[1])
    dense = json.loads(run_cli(*args, "--packing", "dense")[1])
    m = load_workload("mixtral-8x7b")
    # native on a 4/8/16-bit array stores 3-bit weights exactly as 4-bit ones
    assert native["weight_bytes"] == BitAllocation.uniform(m, 4).weight_bytes(m)
    assert dense["weight_bytes"] == BitAllocation.uniform(m, 3).weight_bytes(m)
    assert native["run"]["packing"] == "native" and dense["run"]["packing"] == "dense"
    assert native["run"]["stored_average_expert_bits"] == 4
    assert any("3->4" in w for w in native["warnings"])
    assert any("--packing native" in w for w in dense["warnings"])


def test_gemm_packing(run_cli):
    rc, out, err = run_cli("simulate", "--hw", "spyre", "--gemm", "8,256,256", "--bits", "3",
                           "--format", "json")
    d = json.loads(out)
    assert d["run"] == {"weight_bits": 3, "packing": "native", "stored_weight_bits": 4}
    assert d["weight_bytes"] == simulate_gemm("spyre", 8, 256, 256, w_bits=4).weight_bytes

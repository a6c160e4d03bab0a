"""The system commands: ``simulate --system``, ``plan`` and sweeps over system parameters
(the per-device simulation replaced by the stub of ``_sysstub`` where a step is composed)."""

from __future__ import annotations

import json

import pytest
import yaml

from _sysstub import install_stub
from _toys import TINY_HW, TOY_WL


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_HW)
    (tmp_path / "toy.yaml").write_text(TOY_WL)
    (tmp_path / "sys.yaml").write_text(yaml.safe_dump({
        "name": "toy4", "device": "tiny.yaml", "devices_per_node": 2, "nodes": 2,
        "links": {"intra_node": {"bandwidth": "1 GB/s", "latency": "1 us"},
                  "inter_node": {"bandwidth": "100 MB/s", "latency": "5 us"}}}))
    return tmp_path


def test_one_device_system_equals_the_chip(run_cli):
    args = ["--workload", "mixtral-8x7b", "--bits", "4", "--batch", "4", "--format", "json"]
    rc1, out1, _ = run_cli("simulate", "--hw", "h100", *args)
    rc2, out2, _ = run_cli("simulate", "--system", "h100", *args)
    assert rc1 == rc2 == 0
    chip, system = json.loads(out1), json.loads(out2)
    assert {k: v for k, v in system.items() if k in chip} == chip
    assert system["devices"] == 1 and system["plan"] == "pp=1,tp=1,ep=1,dp=1,mb=1"
    assert len(system["per_device"]) == 1 and {x["level"] for x in system["per_link"]} == {
        "intra_node", "inter_node"}


@pytest.mark.parametrize("args, line", [
    (["--hw", "h100", "--system", "h100-8"], "--system: --hw and --system exclude each other"),
    (["--hw", "h100", "--plan", "tp=2"], "--plan: --plan and --devices need --system"),
    (["--system", "h100-8", "--plan", "tp=3"], "plan: tp=3 does not divide the 32 attention "
                                               "heads (mixtral-8x7b)"),
    (["--system", "h100-8", "--plan", "pp=2,ep=8"], "needs 16 devices"),
    (["--system", "h100-8", "--devices", "9"], "devices: must be an integer in 1..8"),
    (["--system", "h10-8"], "unknown system preset 'h10-8' (did you mean 'h100-8'?)"),
])
def test_simulate_system_bad_input_is_one_line(run_cli, args, line):
    rc, out, err = run_cli("simulate", *args, "--workload", "mixtral-8x7b")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and line in err


def test_simulate_system_tables_and_json(run_cli, toy, monkeypatch):
    install_stub(monkeypatch)
    base = ["simulate", "--system", toy / "sys.yaml", "--workload", toy / "toy.yaml",
            "--bits", "8", "--batch", "4"]
    rc, out, err = run_cli(*base, "--plan", "ep=4")
    assert rc == 0, err
    assert "per device:" in out and "per link level:" in out and "inter_node" in out
    rc, out, err = run_cli(*base, "--plan", "ep=4", "--format", "json")
    d = json.loads(out)
    assert d["devices"] == 4 and d["plan"] == "pp=1,tp=1,ep=4,dp=1,mb=1"
    assert [x["device"] for x in d["per_device"]] == [0, 1, 2, 3]
    assert [x["node"] for x in d["per_device"]] == [0, 0, 1, 1]
    inter = {x["level"]: x for x in d["per_link"]}["inter_node"]
    assert inter["bytes"] > 0 and inter["energy_j"] == 0.0
    rc, out, err = run_cli(*base, "--devices", "2", "--format", "json")
    assert json.loads(out)["devices"] == 2


def test_plan_json_is_best_and_pareto(run_cli, toy, monkeypatch):
    install_stub(monkeypatch)
    rc, out, err = run_cli("plan", "--system", toy / "sys.yaml", "--workload",
                           toy / "toy.yaml", "--bits", "8", "--batch", "4", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert set(d) == {"best", "pareto"}
    need = {"plan", "devices", "latency_s", "tokens_per_s", "energy_per_token_j"}
    assert all(need <= set(r) for r in [d["best"], *d["pareto"]])
    # the stub: a layer takes 1 ms / tp + 0.1 ms per expert share, so more devices are
    # faster and the fastest plan uses all 4
    assert d["best"]["devices"] == 4
    lat = [r["latency_s"] for r in d["pareto"]]
    assert min(lat) == d["best"]["latency_s"]
    # no row of the table is beaten on every figure by another
    for a in d["pareto"]:
        for b in d["pareto"]:
            assert not (b is not a and b["devices"] <= a["devices"]
                        and b["latency_s"] < a["latency_s"]
                        and b["tokens_per_s"] >= a["tokens_per_s"]
                        and b["energy_per_token_j"] <= a["energy_per_token_j"])
    rc, out, err = run_cli("plan", "--system", toy / "sys.yaml", "--workload",
                           toy / "toy.yaml", "--bits", "8", "--objective", "devices",
                           "--format", "json")
    assert json.loads(out)["best"]["devices"] == 1
    rc, out, err = run_cli("plan", "--system", toy / "sys.yaml", "--workload",
                           toy / "toy.yaml", "--latency-budget", "1 us")
    assert rc == 2 and "no plan meets the latency budget" in err
    rc, out, err = run_cli("plan", "--system", toy / "sys.yaml", "--workload",
                           toy / "toy.yaml", "--devices", "3")
    assert rc == 0, err     # 3 devices: dp=3, or pp=3 would need 3 layers (the toy has 2)


def test_sweep_over_system_parameters(run_cli, toy, monkeypatch):
    from accelsim.sweep.evaluate import evaluate_point
    from accelsim.sweep.spec import load_sweep
    install_stub(monkeypatch)
    spec = load_sweep({"fixed": {"workload": str(toy / "toy.yaml"),
                                 "system": str(toy / "sys.yaml"), "avg_bits": 8, "batch": 4},
                       "axes": [{"grid": {"plan": ["ep=4", "pp=2,ep=2"],
                                          "system.links.inter_node.bandwidth":
                                              ["100 MB/s", "10 GB/s"]}}]})
    assert len(spec) == 4
    rows = [evaluate_point(p) for p in spec.points]
    # a faster inter-node link never makes a point slower
    assert rows[1]["latency_s"] <= rows[0]["latency_s"]
    assert rows[3]["latency_s"] <= rows[2]["latency_s"]
    # a system point's own columns: the devices and plan used, the links' totals
    import accelsim
    from accelsim.sweep.sources import build_system
    for pt, row in zip(spec.points, rows):
        system = build_system(pt.params["system"],
                              tuple(sorted(pt.system_overrides.items())))
        res = accelsim.simulate(system, accelsim.build_graph(
            accelsim.load_workload(str(toy / "toy.yaml")),
            accelsim.Scenario(phase="decode", batch=4)),
            accelsim.BitAllocation.uniform(accelsim.load_workload(str(toy / "toy.yaml")), 8),
            plan=pt.params["plan"])
        assert row["devices_used"] == res.devices == 4
        assert row["plan_used"] == res.plan
        assert row["link_bytes"] == pytest.approx(sum(r["bytes"] for r in res.per_link))
        assert row["link_bytes"] == pytest.approx(sum(
            v for k, v in row.items() if k.startswith("link_bytes_")))
    assert rows[0]["link_time_s"] > rows[1]["link_time_s"]      # the slower inter-node link
    from accelsim.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        load_sweep({"fixed": {"workload": str(toy / "toy.yaml"), "system": str(toy / "sys.yaml"),
                              "avg_bits": 8, "plan": "pp=3"}})
    assert [str(p) for p in e.value.problems] == [
        "fixed.plan: pp=3 is more stages than the 2 layers (toy-moe) (got 'pp=3,tp=1,ep=1,dp=1,"
        "mb=3')"]


def test_plan_screening_keeps_the_exhaustive_answer(toy, monkeypatch):
    # with the stub a part's latency is the sum over its layers, so the one-layer screen is
    # exact and the screened search must give the exhaustive search's table
    import accelsim
    from accelsim.system import load_system
    from accelsim.system.search import search_plans
    from accelsim.workload.model import MoEModel
    install_stub(monkeypatch)
    m = MoEModel.model_validate(yaml.safe_load(TOY_WL))
    g = accelsim.build_graph(m, accelsim.Scenario(batch=4))
    a = accelsim.BitAllocation.uniform(m, 8)
    s = load_system(str(toy / "sys.yaml"))
    full = search_plans(s, g, a, screen=False)
    fast = search_plans(s, g, a, screen=True)
    assert fast["pareto"] == full["pareto"] and fast["best"] == full["best"]
    assert fast["simulated"] <= full["simulated"]

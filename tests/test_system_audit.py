"""Issue 12 audited as its users use it: system files written by hand, plans given back as
printed, the one-device system's per-device table (each test failed before its fix)."""

from __future__ import annotations

import textwrap

import pytest
import yaml

import accelsim
from accelsim.errors import ConfigError
from accelsim.system import check_plan, load_system, parse_plan, system_from_dict
from _toys import TINY_HW, TOY_WL

TOY_DENSE = textwrap.dedent("""\
    name: toy-dense
    hidden_size: 64
    num_layers: 2
    vocab_size: 100
    dense_ffn_size: 128
    attention: {num_heads: 4}
    """)


@pytest.fixture
def toys(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_HW)
    (tmp_path / "toy.yaml").write_text(TOY_WL)
    (tmp_path / "dense.yaml").write_text(TOY_DENSE)
    (tmp_path / "sys.yaml").write_text(yaml.safe_dump({
        "name": "toy4", "device": "tiny.yaml", "devices_per_node": 4,
        "links": {"intra_node": {"bandwidth": "1 GB/s", "latency": "1 us"}}}))
    return tmp_path


# --- bad system files: one line at the key -----------------------------------------------

@pytest.mark.parametrize("device", [5, None, [1, 2], 2.5, True])
def test_device_of_a_wrong_type_is_one_problem_at_device(device):
    with pytest.raises(ConfigError) as e:
        system_from_dict({"name": "x", "device": device}, file="s.yaml")
    assert len(e.value.problems) == 1
    p = e.value.problems[0]
    assert p.key == "device" and p.file == "s.yaml"
    assert "preset name" in p.reason and "mapping" in p.reason


def test_device_naming_a_system_preset_is_one_line():
    with pytest.raises(ConfigError) as e:
        system_from_dict({"name": "x", "device": "h100-8"}, file="s.yaml")
    (p,) = e.value.problems
    assert p.key == "device" and "names a system, not an accelerator" in p.reason


def test_device_naming_a_system_file_is_one_line(toys, run_cli):
    # a system whose device is a system YAML (here: itself, and another system file)
    (toys / "self.yaml").write_text("name: s\ndevice: self.yaml\n")
    (toys / "outer.yaml").write_text("name: o\ndevice: sys.yaml\n")
    for f in ("self.yaml", "outer.yaml"):
        rc, out, err = run_cli("system", "show", toys / f)
        assert rc == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "device: names a system" in lines[0], err
        assert f in lines[0] and "Traceback" not in err
    # an accelerator path beside the system file still loads
    assert load_system(toys / "sys.yaml").hw.name == "tiny"


def test_plan_key_without_value_says_so():
    with pytest.raises(ConfigError) as e:
        parse_plan("pp")
    (p,) = e.value.problems
    assert p.key == "plan" and "needs a value" in p.reason and "did you mean" not in p.reason


# --- plans printed for a dense model are plans the checker accepts ------------------------

def test_dense_model_plan_is_printed_as_given_back(toys):
    model = accelsim.load_workload(toys / "dense.yaml")
    g = accelsim.build_graph(model, accelsim.Scenario(phase="decode", batch=2))
    a = accelsim.BitAllocation.uniform(model, 8)
    r = accelsim.simulate(load_system(toys / "sys.yaml"), g, a, plan="tp=2")
    # a dense model has no expert parallelism: ep=1, and the printed plan is valid input
    assert parse_plan(r.plan).experts == 1 and r.devices == 2
    check_plan(parse_plan(r.plan), model, 4)
    again = accelsim.simulate(load_system(toys / "sys.yaml"), g, a, plan=r.plan)
    assert again.plan == r.plan and again.latency_s == r.latency_s
    # an explicit ep > 1 on a dense model stays an error
    with pytest.raises(ConfigError, match="dense model"):
        accelsim.simulate(load_system(toys / "sys.yaml"), g, a, plan="tp=2,ep=2")


# --- the one-device system's per-device table holds numbers, as every other system's -------

def test_one_device_per_device_row_has_the_expert_figures(toys):
    model = accelsim.load_workload(toys / "toy.yaml")      # 2 MoE layers x 4 experts, top 2
    g = accelsim.build_graph(model, accelsim.Scenario(phase="decode", batch=3))
    a = accelsim.BitAllocation.uniform(model, 8)
    sys1 = load_system(toys / "tiny.yaml")                   # a chip: a system of one device
    (row,) = accelsim.simulate(sys1, g, a).per_device
    # every routed expert on the one device; expected tokens = tokens x top-k per MoE layer
    assert row["experts"] == 2 * 4
    assert row["expected_load"] == pytest.approx(3 * 2 * 2)
    # 8-bit w1/w2/w3 of 64 x 128: the allocation's own storage rule
    want = sum(a.tensor_bytes(model, t) for t in model.tensors() if t.expert is not None
               and t.role == "expert")
    assert want > 3 * 64 * 128 * 8          # 8 experts x three 64 x 128 one-byte matrices
    assert row["expert_bytes"] == pytest.approx(want)
    # the same figures as the composed path (one device, two micro-batches)
    (comp,) = accelsim.simulate(sys1, g, a, plan="mb=2").per_device
    for k in ("experts", "expert_bytes", "expected_load", "memory_bytes"):
        assert comp[k] == pytest.approx(row[k]), k


def test_one_device_dense_per_device_row_is_zero_experts(toys):
    model = accelsim.load_workload(toys / "dense.yaml")
    g = accelsim.build_graph(model, accelsim.Scenario(phase="decode", batch=1))
    (row,) = accelsim.simulate(load_system(toys / "tiny.yaml"), g,
                               accelsim.BitAllocation.uniform(model, 8)).per_device
    assert (row["experts"], row["expert_bytes"], row["expected_load"]) == (0, 0.0, 0.0)


# --- without a plan, simulate uses every device it is given --------------------------------

@pytest.mark.parametrize("n, want", [
    # toy: 4 routed experts, 2 layers; ep = largest divisor of n <= 4, pp = largest divisor
    # of the rest <= 2, dp = what remains
    (2, (1, 2, 1)), (3, (1, 3, 1)), (4, (1, 4, 1)), (5, (1, 1, 5)), (6, (2, 3, 1)),
    (8, (2, 4, 1)), (12, (1, 4, 3)), (16, (2, 4, 2))])
def test_default_plan_uses_every_device(toys, n, want):
    from accelsim.system.simulate import default_plan
    model = accelsim.load_workload(toys / "toy.yaml")
    sys_ = system_from_dict({"name": "t", "device": str(toys / "tiny.yaml"),
                             "devices_per_node": n, "links": {"intra_node": {
                                 "bandwidth": "1 GB/s", "latency": "1 us"}}})
    p = default_plan(sys_, model)
    assert (p.pp, p.experts, p.dp) == want and p.tp == 1 and p.devices == n
    check_plan(p, model, n)


def test_simulate_with_devices_and_no_plan_uses_them_all(toys, run_cli):
    import json
    (toys / "sys6.yaml").write_text(yaml.safe_dump({
        "name": "toy6", "device": "tiny.yaml", "devices_per_node": 3, "nodes": 2,
        "links": {"intra_node": {"bandwidth": "1 GB/s", "latency": "1 us"},
                  "inter_node": {"bandwidth": "100 MB/s", "latency": "5 us"}}}))
    rc, out, err = run_cli("simulate", "--system", toys / "sys6.yaml", "--devices", "6",
                           "--workload", toys / "toy.yaml", "--bits", "8", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["devices"] == 6 and len(d["per_device"]) == 6
    assert sorted(x["device"] for x in d["per_device"]) == list(range(6))


# --- the Python API: wrong plans and systems are ConfigErrors, not TypeErrors ---------------

@pytest.mark.parametrize("plan, words", [
    ({"pp": 2, "xx": 4}, "unknown key 'xx'"),
    ({"pp": 2, "ttp": 2}, "did you mean 'tp'"),
    ({"rep": 2}, "rep must be 0 or 1"),
    ({"mb": 2, "microbatches": 3}, "mb is given twice"),
    ({"pp": "2"}, "pp must be an integer"),
])
def test_plan_mapping_with_bad_keys_is_a_config_error(plan, words):
    from accelsim.system import as_plan
    with pytest.raises(ConfigError) as e:
        as_plan(plan)
    (p,) = e.value.problems
    assert p.key == "plan" and words in p.reason


def test_plan_mapping_spells_like_the_string():
    from accelsim.system import as_plan
    assert as_plan({"pp": 2, "ep": 4, "microbatches": 3, "tbo": 1}) == parse_plan(
        "pp=2,ep=4,mb=3,tbo=1")


@pytest.mark.parametrize("source", [5, None, 2.5, ["h100"]])
def test_load_system_of_a_wrong_type_says_what_it_takes(source):
    with pytest.raises(ConfigError) as e:
        load_system(source)
    (p,) = e.value.problems
    assert p.key == "system" and "preset name" in p.reason and "unknown" not in p.reason


# --- budget allocations that target a system (allocate --method budget --system) -----------

@pytest.fixture
def small4(tmp_path):
    """Four toy devices of 64 KiB SRAM + 64 KiB DRAM: the toy model at 4 bits (~148 KiB)
    fits no single device but fits the four together."""
    (tmp_path / "small.yaml").write_text(TINY_HW.replace("capacity: 1 GiB",
                                                         "capacity: 64 KiB"))
    (tmp_path / "toy.yaml").write_text(TOY_WL)
    (tmp_path / "sys.yaml").write_text(yaml.safe_dump({
        "name": "small4", "device": "small.yaml", "devices_per_node": 4,
        "links": {"intra_node": {"bandwidth": "1 GB/s", "latency": "1 us"}}}))
    return tmp_path


def test_budget_allocation_targets_a_system(small4, run_cli):
    import json
    base = ["allocate", "--workload", small4 / "toy.yaml", "--method", "budget",
            "--levels", "8,4", "--latency-budget", "1 s", "--synthetic-signals", "0"]
    # one device holds less than the model at its lowest level
    rc, out, err = run_cli(*base, "--hw", small4 / "small.yaml")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    # the four devices of the system hold it: a budget allocation measured on the system
    rc, out, err = run_cli(*base, "--system", small4 / "sys.yaml", "--out",
                           small4 / "a.yaml", "--format", "json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["weight_bytes"] > 2 * 64 * 1024          # more than one device's memory
    # its latency is the system's step with that allocation (simulated independently)
    rc, out2, err = run_cli("simulate", "--system", small4 / "sys.yaml", "--workload",
                            small4 / "toy.yaml", "--alloc", small4 / "a.yaml",
                            "--packing", "dense", "--format", "json")
    assert rc == 0, err
    assert d["latency_s"] == pytest.approx(json.loads(out2)["latency_s"], rel=1e-9)
    assert d["latency_s"] <= 1.0


def test_budget_allocation_on_n_devices_under_a_plan(small4, run_cli):
    import json
    rc, out, err = run_cli("allocate", "--workload", small4 / "toy.yaml", "--method",
                           "budget", "--levels", "8,4", "--latency-budget", "1 s",
                           "--synthetic-signals", "0", "--system", small4 / "sys.yaml",
                           "--devices", "2", "--plan", "ep=2", "--format", "json")
    # two devices hold 256 KiB in all: the model fits at 4 bits, and the plan runs
    assert rc == 0, err
    assert json.loads(out)["latency_s"] > 0


@pytest.mark.parametrize("args, line", [
    (["--hw", "h100", "--system", "h100-8"], "--system: --hw and --system exclude"),
    (["--plan", "ep=2"], "--plan: --plan and --devices need --system"),
    (["--devices", "2"], "--devices: --plan and --devices need --system"),
    (["--system", "h100-8", "--plan", "tp=3"], "plan: tp=3 does not divide"),
    (["--system", "h100-8", "--devices", "9"], "devices: must be an integer in 1..8"),
])
def test_allocate_system_bad_input_is_one_line(run_cli, args, line):
    rc, out, err = run_cli("allocate", "--workload", "mixtral-8x7b", "--method", "budget",
                           "--levels", "8,4", "--latency-budget", "5 ms", *args)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and line in err, err


# --- every preset the issue names loads and cites its sources (table and JSON) --------------

@pytest.mark.parametrize("name", ["northpole-16", "northpole-rack", "h100-8", "spyre-8",
                                  "h100-4x8", "edge-tpu-16"])
def test_named_presets_show_their_sources(run_cli, name):
    import json
    rc, out, err = run_cli("system", "show", name)
    assert rc == 0, err
    cites = out.split("\nsources:\n", 1)[1].splitlines()
    assert cites and all(c.startswith("- ") for c in cites)
    rc, out, err = run_cli("system", "show", name, "--format", "json")
    d = json.loads(out)
    assert len(d["sources"]) == len(cites) >= 1 and all(s["cite"] for s in d["sources"])
    assert d["num_devices"] == d["nodes"] * d["devices_per_node"] > 1


# --- encoder-decoder models (Switch): encoder and decoder layers are not alike --------------

TOY_ENCDEC = textwrap.dedent("""\
    name: toy-encdec
    family: switch
    architecture: encoder_decoder
    hidden_size: 64
    num_layers: 4
    num_decoder_layers: 4
    vocab_size: 100
    tie_word_embeddings: true
    ffn_kind: relu
    dense_ffn_size: 128
    norm: layernorm
    attention: {kind: gqa, num_heads: 4, head_dim: 16, relative_attention_num_buckets: 32}
    moe: {num_experts: 4, top_k: 1, expert_ffn_size: 128, layer_step: 2, layer_offset: 1}
    """)


@pytest.fixture
def encdec(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_HW)
    (tmp_path / "encdec.yaml").write_text(TOY_ENCDEC)
    (tmp_path / "sys8.yaml").write_text(yaml.safe_dump({
        "name": "toy8", "device": "tiny.yaml", "devices_per_node": 8,
        "links": {"intra_node": {"bandwidth": "1 GB/s", "latency": "1 us"}}}))
    return tmp_path


def test_decoder_layers_are_not_simulated_as_encoder_layers(encdec):
    from accelsim.sim import DevicePart, simulate_parts
    model = accelsim.load_workload(encdec / "encdec.yaml")    # layers 0-3 encoder, 4-7 decoder
    g = accelsim.build_graph(model, accelsim.Scenario(phase="decode", batch=2))
    a = accelsim.BitAllocation.uniform(model, 8)
    r = accelsim.simulate(load_system(encdec / "sys8.yaml"), g, a, plan="pp=8")
    # one layer per stage; at decode the encoder runs nothing and every decoder layer runs
    hw = accelsim.load_hw(encdec / "tiny.yaml")
    for L in range(4, 8):
        (alone,) = simulate_parts(hw, g, a, [DevicePart(layers=(L, L + 1))])
        assert alone.latency_s > 0
        assert r.pipeline["compute_s"][L] == pytest.approx(alone.latency_s, rel=1e-9), L
    assert r.pipeline["compute_s"][1:4] == [0.0, 0.0, 0.0]


def test_plan_search_on_an_encoder_decoder_model(encdec, run_cli):
    # stages holding only encoder layers run nothing at decode: no infinite tokens/s
    rc, out, err = run_cli("plan", "--system", encdec / "sys8.yaml", "--workload",
                           encdec / "encdec.yaml", "--bits", "8", "--format", "json")
    assert rc == 0, err
    import json
    d = json.loads(out)
    assert d["best"]["latency_s"] > 0 and all(r["tokens_per_s"] > 0 for r in d["pareto"])


def test_sweep_budget_point_on_a_system_meets_its_budget_on_the_system(small4, run_cli):
    # the model fits no single device: a budget measured on one chip cannot be met
    import pandas as pd
    spec = {"name": "budget-on-system",
            "fixed": {"workload": str(small4 / "toy.yaml"), "system": str(small4 / "sys.yaml"),
                      "method": "budget", "levels": [8, 4], "avg_bits": 8,
                      "latency_budget": "1 s"},
            "axes": [{"grid": {"plan": ["ep=4", "ep=2"]}}]}
    (small4 / "sweep.yaml").write_text(yaml.safe_dump(spec))
    rc, out, err = run_cli("sweep", small4 / "sweep.yaml", "--out", small4 / "o.parquet")
    assert rc == 0, err
    t = pd.read_parquet(small4 / "o.parquet")
    assert t["error"].isna().all(), t["error"].tolist()
    assert (t["latency_s"] <= 1.0).all() and (t["weight_bytes"] > 2 * 64 * 1024).all()


def test_plan_keys_ignore_case_and_numbers_are_plain_digits():
    assert parse_plan("PP=2,Tp=2") == parse_plan("pp=2,tp=2")
    for bad in ("pp=2_0", "pp=1e1", "pp=٢"):
        with pytest.raises(ConfigError, match="must be a whole number"):
            parse_plan(bad)

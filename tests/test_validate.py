"""`accelsim validate`: output contract and the model-size numbers, on a reduced config."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from accelsim.report import ValidateConfig, run_validate
from accelsim.report.claims import PAPER_SIZES_GB, allocations


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report"
    cfg = ValidateConfig(quick=True, chips=("northpole", "h100"), batches=(1,))
    return run_validate(out, config=cfg)


def test_files_and_claims_contract(report):
    out = report.out_dir
    for f in ("report.md", "claims.json", "model_size.csv", "latency.csv", "accuracy.csv",
              "model_size.png", "latency_vs_bits.png", "certified_routing.csv",
              "tokens_per_s.png", "energy_per_token.png", "paper_accuracy.csv",
              "skewed_routing.csv", "model_size_accountings.csv"):
        assert (out / f).is_file(), f
    claims = json.loads((out / "claims.json").read_text())
    assert claims and all(set(c) == {"claim", "measured", "baseline", "verdict", "details"}
                          for c in claims)
    assert {c["verdict"] for c in claims} <= {"supported", "not supported", "inconclusive"}
    text = (out / "report.md").read_text()
    assert "![model_size](model_size.png)" in text
    # no temporary directory is left beside the report
    assert [p.name for p in out.parent.iterdir()] == ["report"]


def _formula_gb(bits_expert: float, attention_bits: int) -> float:
    """Mixtral-8x7B bytes from the storage rule: codes at b bits, fp16 scale + uint8 zero
    per 128 weights (1-bit: no zero), embeddings, lm_head and router in fp16, norms fp16."""
    d, f, L, E, V = 4096, 14336, 32, 8, 32000

    def mat(o, i, b):
        if b >= 16:
            return 2 * o * i
        g = o * math.ceil(i / 128)
        return math.ceil(o * i * b / 8) + 2 * g + (0 if b == 1 else g)

    attn = 2 * mat(4096, 4096, attention_bits) + 2 * mat(1024, 4096, attention_bits)
    per_expert = {b: 2 * mat(f, d, b) + mat(d, f, b) for b in (1, 2, 3, 4, 8, 16)}
    n = {2.75: {3: 7, 1: 1}, 2.5: {3: 6, 2: 0, 1: 2}, 2.125: {3: 3, 2: 3, 1: 2}}
    if bits_expert in n:
        experts = sum(c * per_expert[b] for b, c in n[bits_expert].items())
    else:
        experts = E * per_expert[int(bits_expert)]
    per_layer = attn + experts + E * d * 2 + 2 * d * 2
    return (L * per_layer + 2 * V * d * 2 + d * 2) / 1e9


@pytest.mark.parametrize("label,bits,attn", [("fp16", 16, 16), ("uniform-3", 3, 4),
                                             ("uniform-2", 2, 4), ("router-norm-2.75", 2.75, 4),
                                             ("router-norm-2.5", 2.5, 4),
                                             ("router-norm-2.125", 2.125, 4)])
def test_sizes_match_storage_formula(report, label, bits, attn):
    df = pd.read_csv(report.out_dir / "model_size.csv")
    row = df[(df.model == "mixtral-8x7b") & (df.allocation == label)].iloc[0]
    assert row.weight_gb == pytest.approx(_formula_gb(bits, attn), rel=1e-12)
    assert row.paper_gb == PAPER_SIZES_GB[label]


def test_size_claims_show_every_accounting_and_fp16_is_not_supported(report):
    claims = {c["claim"]: c for c in report.claims if "weights at" in c["claim"]}
    fp16 = claims["mixtral-8x7b weights at fp16 take 96.8 GB"]
    # 46.7e9 parameters x 2 bytes = 93.4 GB (87.0 GiB) under every accounting: 96.8 is out
    assert fp16["verdict"] == "not supported"
    assert "93.41" in fp16["details"] and "86.99" in fp16["details"]
    acc = pd.read_csv(report.out_dir / "model_size_accountings.csv").set_index("accounting")
    assert acc.loc["paper", "uniform-2"] == PAPER_SIZES_GB["uniform-2"]
    # GiB rows are the GB rows / 1.073741824
    gb = acc.loc["zero uint8, attention 4-bit, GB"]
    gib = acc.loc["zero uint8, attention 4-bit, GiB"]
    assert gib["uniform-3"] == pytest.approx(gb["uniform-3"] * 1e9 / 2**30)


def test_mixed_allocations_have_the_paper_counts():
    from accelsim.workload import load_workload
    m = load_workload("mixtral-8x7b")
    a = allocations(m, ValidateConfig())
    # worked example of the paper's rule with E = 8, levels 3/2/1 (n_low, n_mid, n_high)
    for label, want in (("router-norm-2.75", (1, 0, 7)), ("router-norm-2.5", (2, 0, 6)),
                        ("router-norm-2.125", (2, 3, 3))):
        row = a[label].expert_bits[0]
        assert ((row == 1).sum(), (row == 2).sum(), (row == 3).sum()) == want


def test_latency_rows_and_northpole_systems(report):
    df = pd.read_csv(report.out_dir / "latency.csv")
    assert set(df.chip) == {"northpole", "h100"}
    npole = df[df.chip == "northpole"].set_index("allocation")
    # NorthPole runs on the northpole-rack system (no one-giant-chip stand-in). Mixtral at
    # FP16 is ~93 GB of weights, more than 288 cards x 201 MB = 58 GB: it cannot fit
    assert 93e9 > 288 * 201.3e6
    assert not npole.loc["fp16"].fits and "exceed the weight memory of all 288 cards" in \
        npole.loc["fp16"].note
    for _label, r in npole.iterrows():
        if r.fits:   # a fitting system has at least weights / (201 MB per card) cards
            assert r.chips >= math.ceil(r.weight_bytes / 201.3e6)
        else:
            assert "card" in r.note
    claims = {c["claim"]: c for c in report.claims}
    cards = [c for k, c in claims.items() if "NorthPole cards and servers" in k][0]
    if not npole.loc["router-norm-2.5"].fits:
        assert cards["verdict"] == "inconclusive"
    h = df[(df.chip == "h100")].set_index("allocation")
    assert not h.loc["fp16"].fits            # 93.4 GB > 80 GB of HBM
    # decode at batch 1 reads at least the active weights once: latency >= bytes / bandwidth
    active_bytes = h.loc["int8"].offchip_bytes
    assert h.loc["int8"].latency_s >= active_bytes / 3.35e12 * (1 - 1e-9)


def test_cli_refuses_out_that_is_a_file(tmp_path, run_cli):
    f = tmp_path / "x"
    f.write_text("")
    rc, out, err = run_cli("validate", "--out", str(f), "--quick")
    assert rc == 2 and "--out" in err


@pytest.mark.parametrize("where, words", [("/proc/accelsim-report", "pseudo file system"),
                                          ("{tmp}/missing/report", "parent directory does not "
                                                                   "exist")])
def test_cli_refuses_out_dirs_before_any_work(tmp_path, run_cli, where, words):
    out = where.format(tmp=tmp_path)
    rc, _, err = run_cli("validate", "--out", out, "--quick")
    assert rc == 2 and err.count("\n") == 1 and words in err and out in err
    assert not any(tmp_path.iterdir())


def test_native_packing_pads_to_the_chip_widths(report):
    df = pd.read_csv(report.out_dir / "latency.csv")
    rows = df[df.allocation == "router-norm-2.5"].set_index("chip")
    # 6 experts at 3 bits and 2 at 1 bit per layer; NorthPole (2/4/8) stores them at 4 and
    # 2 bits, the H100 (4/8/16) at 4 bits each
    assert rows.loc["northpole", "stored_avg_bits"] == pytest.approx((6 * 4 + 2 * 2) / 8)
    assert rows.loc["h100", "stored_avg_bits"] == 4
    assert rows.loc["h100", "weight_bytes"] == pytest.approx(_formula_gb(4, 4) * 1e9, rel=1e-12)
    assert (df.packing == "native").all()


def _np_rows(fits):
    """Constructed NorthPole latency rows: label -> (cards, latency_s) or None (no fit)."""
    rows = []
    for label, v in fits.items():
        row = {"chip": "northpole", "batch": 1, "allocation": label, "fits": v is not None}
        if v is not None:
            row.update(chips=v[0], latency_s=v[1], note=f"northpole-rack: plan pp={v[0]},"
                       f"tp=1,ep=1,dp=1,mb=1, links charged")
        else:
            row.update(chips=np.nan, latency_s=np.nan, note="one routed expert (352 MB) ...")
        rows.append(row)
    return pd.DataFrame(rows)


def test_northpole_rules_on_constructed_systems():
    from accelsim.report.claims import _chip_count_claims, _northpole_claim
    cfg = ValidateConfig(chips=("northpole",), batches=(1,))
    df = _np_rows({"fp16": None, "int8": (240, 2e-3), "router-norm-2.5": (96, 3e-3)})
    cards = _chip_count_claims(df, cfg)[0]
    # 96 cards (6 servers) < 240 (int8) and fp16 fits no system: fewer than both
    assert cards.verdict == "supported" and cards.measured == 96
    assert "96 cards in 6 server(s)" in cards.details
    # equal device count: the mixed allocation on int8's 240 cards, 1.6x faster
    eq = {("int8", 1): {"devices": 240, "plan": "pp=240", "speedup": 1.6}}
    v = _northpole_claim(df, cfg, "int8", eq)
    assert v.verdict == "supported" and "smallest system: batch 1: 0.67x" in v.explanation
    eq = {("int8", 1): {"devices": 240, "plan": "pp=240", "speedup": 0.9}}
    assert _northpole_claim(df, cfg, "int8", eq).verdict == "not supported"
    # fp16 fits nothing: no comparison, inconclusive with the reason
    v = _northpole_claim(df, cfg, "fp16", {})
    assert v.verdict == "inconclusive" and "352 MB" in v.explanation
    df = _np_rows({"fp16": None, "int8": (240, 2e-3), "router-norm-2.5": (300, 3e-3)})
    assert _chip_count_claims(df, cfg)[0].verdict == "not supported"

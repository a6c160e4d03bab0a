"""Fit the ``efficiency`` section of a hardware preset to its calibration rows of the
measured set (``measured/measured.yaml``, ``split: calibration``).

Which values: every measured time or throughput of the preset's calibration rows
(``ttft_s``, ``tpot_s``, ``tokens_per_s``, ``tokens_per_s_per_device``); power values are not
fitted here (they calibrate the static power, docs/fidelity.md). Rows may run on one chip or
on a system (their links and plan as in ``accelsim fidelity``).

Which parameters: ``--fit`` (default: ``offchip_bandwidth,mac_rate,kernel_overhead,
step_overhead``); the others stay at their ideal values (1, 1, 0, 0). A chip without an
off-chip level has no bandwidth share to fit. These dense parameters are fitted on the
calibration rows of dense models only.

``--fit expert_mac_rate`` (after the dense fit is in the preset): the routed experts' own
share of the peak MAC rate, fitted on the preset's calibration rows of MoE models with every
other parameter held at the preset's values (grid 0.05-1.00 in steps of 0.05; docs/fidelity.md
states which MoE rows calibrate).

Method: grid search over the shares (bandwidth and MAC rate, 0.50-1.00 in steps of 0.05; at
least half of the peak MAC rate as a prior: tuned GEMM kernels reach it). For every pair, each
value's time (a latency, or 1 / a throughput) is affine in the two overheads: it is simulated
with no overheads, with 10 us per kernel and with 1 ms per step, and the overheads are then
fitted on a grid (0-15 us per kernel in 0.25 us, 0-4 ms per step in 0.1 ms) in closed form.
On one chip the time is exactly affine (every kernel adds its overhead to its phase, a static
batch is a sum of steps); on a system it is affine while the slowest stage stays the same,
so the script re-simulates the fitted section and prints both. The loss is the sum of squared
log errors ``log(predicted / measured)``. Prints the fit; copy it into the preset's
``efficiency:`` section with ``calibrated_on``.

    python benchmarks/calibrate_efficiency.py h100 a100 l40s
    python benchmarks/calibrate_efficiency.py northpole --fit kernel_overhead
    python benchmarks/calibrate_efficiency.py h100 a100 l40s --fit expert_mac_rate
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np

from accelsim import load_workload
from accelsim.fidelity import load_measured, predict_row
from accelsim.hw import load_hw
from accelsim.hw.spec import Efficiency

SHARES = np.round(np.arange(0.50, 1.0001, 0.05), 3)
KERNEL_US = np.arange(0.0, 15.01, 0.25)
STEP_MS = np.arange(0.0, 4.01, 0.1)
PARAMS = ("offchip_bandwidth", "mac_rate", "kernel_overhead", "step_overhead")
EXPERT_PARAMS = ("expert_mac_rate",)
EXPERT_SHARES = np.round(np.arange(0.05, 1.0001, 0.05), 3)
#: metrics fitted, and whether the time is the value (True) or its inverse (throughputs)
FITTED = {"ttft_s": True, "tpot_s": True, "tokens_per_s": False,
          "tokens_per_s_per_device": False}
K1, T1 = 10e-6, 1e-3


def _with(base, bw: float, mac: float, k: float = 0.0, t: float = 0.0):
    eff = Efficiency.model_validate({"offchip_bandwidth": float(bw), "mac_rate": float(mac),
                                     "kernel_overhead": f"{k * 1e6:.9g} us",
                                     "step_overhead": f"{t * 1e3:.9g} ms"})
    return base.model_copy(update={"efficiency": eff})


def _times(ms, rows, hw, cache) -> list[tuple[str, str, float, float, bool]]:
    """(row, metric, measured, predicted time, is_time) of every fitted value."""
    out = []
    for r in rows:
        v = predict_row(r, hw=hw, cache=cache, target=ms.target(r.id)).values
        for metric, meas in r.measured.items():
            if metric in FITTED and metric in v:
                direct = FITTED[metric]
                out.append((r.id, metric, float(meas),
                            float(v[metric]) if direct else 1.0 / float(v[metric]), direct))
    return out


def _is_moe(model: str, memo: dict = {}) -> bool:  # noqa: B006 (a per-run memo)
    if model not in memo:
        memo[model] = bool(load_workload(model).moe_layers)
    return memo[model]


def calibrate_experts(name: str) -> dict:
    """Fit ``expert_mac_rate`` of preset ``name`` on its calibration rows of MoE models, the
    other efficiency parameters held at the preset's values."""
    ms = load_measured()
    rows = [r for r in ms.rows if r.hardware == name and r.split == "calibration"
            and _is_moe(r.model)]
    base = load_hw(name)
    if base.efficiency is None:
        raise SystemExit(f"{name}: fit the dense efficiency parameters first")
    if not rows:
        raise SystemExit(f"{name}: no MoE calibration rows")
    best = (math.inf, None)
    for share in EXPERT_SHARES:
        eff = base.efficiency.model_copy(update={"expert_mac_rate": float(share)})
        x = _times(ms, rows, base.model_copy(update={"efficiency": eff}), {})
        loss = sum(math.log((p if d else 1.0 / p) / m) ** 2 for _, _, m, p, d in x)
        if loss < best[0]:
            check = {f"{rid} {metric}": {"measured": m, "predicted": p if d else 1.0 / p}
                     for rid, metric, m, p, d in x}
            best = (loss, float(share), check)
    return {"hardware": name, "rows": [r.id for r in rows], "fit": list(EXPERT_PARAMS),
            "loss": best[0], "expert_mac_rate": best[1], "check": best[2]}


def calibrate(name: str, fit=PARAMS) -> dict:
    if set(fit) & set(EXPERT_PARAMS):
        if set(fit) - set(EXPERT_PARAMS):
            raise SystemExit("--fit expert_mac_rate is fitted alone, after the dense fit")
        return calibrate_experts(name)
    ms = load_measured()
    rows = [r for r in ms.rows if r.hardware == name and r.split == "calibration"
            and not _is_moe(r.model)]
    base = load_hw(name)
    has_offchip = any(m.scope == "offchip" for m in base.memory)
    bws = SHARES if ("offchip_bandwidth" in fit and has_offchip) else [1.0]
    macs = SHARES if "mac_rate" in fit else [1.0]
    ks = KERNEL_US * 1e-6 if "kernel_overhead" in fit else np.zeros(1)
    ts = STEP_MS * 1e-3 if "step_overhead" in fit else np.zeros(1)
    cache: dict = {}
    best = (math.inf, None)
    for bw, mac in itertools.product(bws, macs):
        x0 = _times(ms, rows, _with(base, bw, mac), cache)
        if not x0:
            raise SystemExit(f"{name}: no calibration values to fit")
        xk = _times(ms, rows, _with(base, bw, mac, k=K1), cache) if len(ks) > 1 else x0
        xt = _times(ms, rows, _with(base, bw, mac, t=T1), cache) if len(ts) > 1 else x0
        meas = np.array([m for _, _, m, _, _ in x0])
        direct = np.array([d for *_, d in x0])
        t0 = np.array([x for _, _, _, x, _ in x0])
        dk = (np.array([x for _, _, _, x, _ in xk]) - t0) / K1
        dt = (np.array([x for _, _, _, x, _ in xt]) - t0) / T1
        K, T = np.meshgrid(ks, ts, indexing="ij")
        tt = t0[None, None, :] + K[..., None] * dk + T[..., None] * dt
        pred = np.where(direct, tt, 1.0 / tt)
        loss = (np.log(pred / meas) ** 2).sum(axis=-1)
        i, j = np.unravel_index(np.argmin(loss), loss.shape)
        if loss[i, j] < best[0]:
            best = (float(loss[i, j]), {"offchip_bandwidth": float(bw), "mac_rate": float(mac),
                                        "kernel_overhead_us": float(ks[i] * 1e6),
                                        "step_overhead_ms": float(ts[j] * 1e3)})
    fitted = best[1]
    hw = _with(base, fitted["offchip_bandwidth"], fitted["mac_rate"],
               fitted["kernel_overhead_us"] * 1e-6, fitted["step_overhead_ms"] * 1e-3)
    check = {f"{rid} {metric}": {"measured": m, "predicted": x if d else 1.0 / x}
             for rid, metric, m, x, d in _times(ms, rows, hw, {})}
    return {"hardware": name, "rows": [r.id for r in rows], "fit": list(fit),
            "loss": best[0], **fitted, "check": check}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="*", default=["h100", "a100", "l40s"])
    ap.add_argument("--fit", default=",".join(PARAMS),
                    help="comma-separated parameters to fit (the others stay ideal)")
    a = ap.parse_args(argv)
    fit = tuple(x.strip() for x in a.fit.split(",") if x.strip())
    bad = sorted(set(fit) - set(PARAMS) - set(EXPERT_PARAMS))
    if bad:
        raise SystemExit(f"--fit: unknown parameter(s) {bad}; choose from "
                         f"{PARAMS + EXPERT_PARAMS}")
    for n in a.presets:
        print(calibrate(n, fit), flush=True)


if __name__ == "__main__":
    main()

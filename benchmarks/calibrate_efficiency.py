"""Fit the ``efficiency`` section of a hardware preset to its calibration rows of the
measured set (``measured/measured.yaml``, ``split: calibration``).

Grid search: for every (offchip_bandwidth, mac_rate) pair on a grid the calibration rows are
simulated once with no fixed overheads; the kernel and step overheads are then fitted in
closed form over a grid (they add ``kernel_overhead x kernels + step_overhead`` to every
step, the kernels being the ops that run, weighted by their probability of running). The
loss is the sum of squared log errors ``log(predicted / measured)`` over the calibration
values. Prints the best values; copy them into the preset's ``efficiency:`` section.

    python benchmarks/calibrate_efficiency.py h100 a100 l40s
"""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np

from accelsim.fidelity import load_measured
from accelsim.fidelity.predict import _Steps
from accelsim.hw import load_hw
from accelsim.hw.spec import Efficiency

BW = np.round(np.arange(0.50, 1.0001, 0.05), 3)
#: prior: tuned GEMM kernels reach at least half of the peak MAC rate
MAC = np.round(np.arange(0.50, 1.0001, 0.05), 3)
KERNEL_US = np.arange(0.0, 15.01, 0.25)
STEP_MS = np.arange(0.0, 4.01, 0.1)


def _kernels(step) -> float:
    """Kernels of a step: the ops that run, weighted by their probability of running (on a
    system, those of the slowest device of every stage: what its time is made of)."""
    r = step.result
    parts = [x for _, x in getattr(r, "parts", ())] or [r]
    n = 0.0
    for x in parts:
        p = np.asarray(x.op_data["p_active"], float)
        c = np.asarray(x.op_data["cycles"], float)
        n = max(n, float(p[(p > 0) & (c > 0)].sum()))
    return n


def _terms(s: _Steps, row):
    """Per calibration metric: (measured, f(k, t) -> predicted) with k, t in seconds."""
    out = []
    if row.mode in ("static-batch", "single-stream", "first-token"):
        pre = s.step("prefill", row.batch, row.input_len)
        P, nP = pre.latency_s, _kernels(pre)
        if row.mode != "first-token":
            dec = s.step("decode", row.batch, row.input_len + row.output_len // 2)
            D, nD = dec.latency_s, _kernels(dec)
        for metric, meas in row.measured.items():
            if metric == "ttft_s":
                out.append((meas, lambda k, t, P=P, nP=nP: P + k * nP + t))
            elif metric == "tpot_s":
                out.append((meas, lambda k, t, D=D, nD=nD: D + k * nD + t))
            elif metric == "tokens_per_s" and row.mode == "static-batch":
                O, B = row.output_len, row.batch
                out.append((meas, lambda k, t, P=P, nP=nP, D=D, nD=nD, O=O, B=B:
                            B * O / (P + k * nP + t + O * (D + k * nD + t))))
    return out


def calibrate(name: str) -> dict:
    ms = load_measured()
    rows = [r for r in ms.rows if r.hardware == name and r.split == "calibration"]
    base = load_hw(name)
    best = (math.inf, None)
    cache: dict = {}
    for bw, mac in itertools.product(BW, MAC):
        eff = Efficiency.model_validate({"offchip_bandwidth": float(bw),
                                         "mac_rate": float(mac)})
        hw = base.model_copy(update={"efficiency": eff})
        terms = [t for r in rows for t in _terms(_Steps(r, False, hw, cache, ms.target(r.id)),
                                                 r)]
        for k_us, t_ms in itertools.product(KERNEL_US, STEP_MS):
            k, t = k_us * 1e-6, t_ms * 1e-3
            loss = sum(math.log(f(k, t) / m) ** 2 for m, f in terms)
            if loss < best[0]:
                best = (loss, {"offchip_bandwidth": float(bw), "mac_rate": float(mac),
                               "kernel_overhead_us": float(k_us), "step_overhead_ms":
                               float(t_ms)})
    return {"hardware": name, "rows": [r.id for r in rows], "loss": best[0], **best[1]}


if __name__ == "__main__":
    for n in sys.argv[1:] or ["h100", "a100", "l40s"]:
        print(calibrate(n), flush=True)

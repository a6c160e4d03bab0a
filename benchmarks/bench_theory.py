"""Benchmarks of the certified guarantees (issue 6): tightness and run times.

Run from the repository root::

    python benchmarks/bench_theory.py            # everything (a few minutes)
    python benchmarks/bench_theory.py --quick    # tightness and routing only

Prints markdown tables (machine, load average, CPU and wall seconds). Results are recorded by
hand in ``docs/performance.md`` (section Theory) and ``docs/theory.md``.

1. Tightness of :func:`expert_output_bound` (analytic) against the measured error, per
   expert kind and RTN bits, for a Mixtral-shaped expert at 1/8 scale (d = 512,
   ffn = 1792, group 128, 256 tokens ~ N(0, 1)); and of the hybrid bound over a ball of
   radius 1 % of ||x|| against the largest error found by 64 random perturbations (an
   estimate of the true supremum from below, so the ratio over-states the looseness).
2. :func:`expert_output_bound` on one expert at 1/4 of Mixtral-8x7B (1024 x 3584): the
   spectral norms and the per-token cost.
3. :func:`certify_routing`: Mixtral-8x7B router (8 x 4096, 4096 tokens) and DeepSeek-V3
   router (256 x 7168, 1024 tokens).
4. ``accelsim theory certify`` defaults (Mixtral-8x7B, DeepSeek-V3) and ``accelsim theory
   experiment`` defaults (synthetic, digits), in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import time

import numpy as np

from accelsim.quant import quantize_rtn
from accelsim.theory import (certify_routing, expert_error_norms, expert_output_bound,
                             measured_output_error)
from accelsim.theory.bounds import ExpertPair, pair_output_bound


def _expert(rng, d, ffn, kind):
    w = {"w1": rng.normal(0, d ** -0.5, (ffn, d)), "w2": rng.normal(0, ffn ** -0.5, (d, ffn))}
    if kind == "swiglu":
        w["w3"] = rng.normal(0, d ** -0.5, (ffn, d))
    return w


def _timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def tightness():
    rng = np.random.default_rng(0)
    d, ffn = 512, 1792
    x = rng.normal(size=(256, d))
    print("| kind | bits | analytic / measured: min | median | max | hybrid (eps = 1 % "
          "||x||) / largest found: median |")
    print("|---|---|---|---|---|---|")
    for kind in ("swiglu", "relu", "gelu"):
        w = _expert(rng, d, ffn, kind)
        for bits in (2, 3, 4, 8):
            q = {k: quantize_rtn(v, bits, group_size=128) for k, v in w.items()}
            r = expert_output_bound(w, q, x, kind) / measured_output_error(w, q, x, kind)
            pair = ExpertPair.build(w, q, kind)
            xs = x[:32]
            eps = 0.01 * np.linalg.norm(xs, axis=1)
            hb = pair_output_bound(pair, xs, eps=eps, method="hybrid")
            f = pair.forward(xs)
            found = np.zeros(len(xs))
            for _ in range(64):
                dl = rng.normal(size=xs.shape)
                dl *= (eps / np.linalg.norm(dl, axis=1))[:, None]
                found = np.maximum(found, np.linalg.norm(
                    f - pair.forward(xs + dl, quantized=True), axis=1))
            print(f"| {kind} | {bits} | {r.min():.1f} | {np.median(r):.1f} | {r.max():.1f} | "
                  f"{np.median(hb / found):.2f} |")


def expert_timing():
    rng = np.random.default_rng(1)
    w = _expert(rng, 1024, 3584, "swiglu")
    q = {k: quantize_rtn(v, 3, group_size=128) for k, v in w.items()}
    pair = ExpertPair.build(w, q, "swiglu")
    norms, c, wall = _timed(lambda: expert_error_norms(pair))
    print(f"| 6 spectral norms, one 1024 x 3584 SwiGLU expert | {c:.2f} | {wall:.2f} |")
    x = rng.normal(size=(1024, 1024))
    _, c, wall = _timed(lambda: pair_output_bound(pair, x, norms=norms))
    print(f"| analytic bound, 1024 tokens, norms given | {c:.2f} | {wall:.2f} |")
    _, c, wall = _timed(lambda: pair_output_bound(pair, x, eps=0.1, method="hybrid",
                                                  norms=norms))
    print(f"| hybrid bound, 1024 tokens, eps 0.1, norms given | {c:.2f} | {wall:.2f} |")


def routing_timing():
    rng = np.random.default_rng(2)
    for name, (E, d, T, k) in {"Mixtral-8x7B": (8, 4096, 4096, 2),
                                "DeepSeek-V3": (256, 7168, 1024, 8)}.items():
        R = rng.normal(0, d ** -0.5, (E, d))
        X = rng.normal(size=(T, d))
        cert, c, wall = _timed(lambda R=R, X=X, k=k: certify_routing(R, X, 0.05, k))
        print(f"| certify_routing {name} ({E} x {d}, {T} tokens, top-{k}); certified "
              f"{cert.mean():.2f} | {c:.2f} | {wall:.2f} |")


def cli_timing():
    from accelsim.cli import main
    runs = [["theory", "certify", "--workload", "mixtral-8x7b", "--alloc", "4"],
            ["theory", "certify", "--workload", "deepseek-v3", "--alloc", "4"],
            ["theory", "experiment"], ["theory", "experiment", "--data", "digits"]]
    for args in runs:
        with contextlib.redirect_stdout(io.StringIO()):
            rc, c, wall = _timed(lambda args=args: main(args))
        print(f"| `accelsim {' '.join(args)}` (rc {rc}) | {c:.1f} | {wall:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args().quick
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}; load average before "
          f"{os.getloadavg()[0]:.2f}\n")
    tightness()
    print("\n| case | CPU s | wall s |\n|---|---|---|")
    routing_timing()
    if not quick:
        expert_timing()
        cli_timing()
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

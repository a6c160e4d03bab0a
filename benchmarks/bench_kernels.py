"""Benchmarks of the integer kernels and quantizers (issue 4, item 9).

Run from the repository root::

    python benchmarks/bench_kernels.py            # full sizes (about 1-2 minutes, ~3 GB RAM)
    python benchmarks/bench_kernels.py --quick    # smaller sizes, a smoke test
    python benchmarks/bench_kernels.py --only gemm --only packing

Prints a markdown report: the machine, the load average before and after (the numbers are
only meaningful on an otherwise idle machine), and for each case the minimum and median
wall time over the repeats. Results are recorded by hand in ``docs/performance.md``.

Cases:

1. ``int_gemm`` vs numpy float32 BLAS (``x @ W.T``) for (64 x 4096) x (4096 -> 14336), the
   Mixtral-8x7B ``w1`` shape, at 4 and 8 bits (group 128), warm (unpacked codes cached on the
   QuantizedTensor) and cold (first call: unpacks the codes); ``bitserial_gemm`` at 4 bits.
   Throughput ratio = BLAS time / kernel time (target >= 0.5 at 4 bits), given two ways:
   best time over best time, and the median over repeats of the ratio of back-to-back runs
   (robust to load changes on a shared machine).
2. ``pack_bits`` / ``unpack_bits`` of 58.7 M codes (one Mixtral expert matrix).
3. Quantization cost: ``quantize_rtn`` of that matrix.
4. One expert forward on 64 tokens: float32 BLAS vs weight-only quantized (dequantize then
   BLAS) vs W4A8 integer path, for a Mixtral-8x7B expert (4096, 14336) and a DeepSeek-V2-Lite
   expert (2048, 1408).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numba
import numpy as np

from accelsim.kernels import bitserial_gemm, int_gemm, pack_bits, unpack_bits
from accelsim.quant import (Expert, expert_forward, quantize_activations, quantize_expert,
                            quantize_rtn)


def timeit(fn, repeats: int) -> tuple[float, float]:
    """(min, median) wall seconds of ``fn()`` over ``repeats`` calls after one warm-up."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


#: Pause between the two halves of a pair: OpenBLAS worker threads busy-wait for a while
#: after each call and would steal a core from the numba threads that follow.
_SETTLE_S = 0.25


def paired(base, fn, repeats: int):
    """Time ``base`` and ``fn`` back to back ``repeats`` times (so that a change in machine
    load hits both); return ((min, median) of fn, median of base/fn per pair)."""
    base()
    fn()
    tb, tf = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        base()
        tb.append(time.perf_counter() - t0)
        time.sleep(_SETTLE_S)
        t0 = time.perf_counter()
        fn()
        tf.append(time.perf_counter() - t0)
        time.sleep(_SETTLE_S)
    return (min(tf), statistics.median(tf)), statistics.median(b / f for b, f in zip(tb, tf))


def _ms(t):
    return f"{t * 1e3:.1f}"


def bench_gemm(T, K, N, repeats, rows):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((N, K), dtype=np.float32)
    x = rng.standard_normal((T, K), dtype=np.float32)
    blas = timeit(lambda: x @ w.T, repeats)
    macs = T * K * N
    rows.append(("numpy float32 BLAS `x @ W.T`", _ms(blas[0]), _ms(blas[1]),
                 f"{2 * macs / blas[0] / 1e9:.1f} GFLOP/s", "1.00 / 1.00"))
    xq, xs = quantize_activations(x)
    for bits in (4, 8):
        qt = quantize_rtn(w, bits, 128)
        warm, ratio = paired(lambda: x @ w.T, lambda: int_gemm(xq, xs, qt), repeats)
        rows.append((f"`int_gemm` W{bits}A8 g128, warm", _ms(warm[0]), _ms(warm[1]),
                     f"{macs / warm[0] / 1e9:.1f} GMAC/s",
                     f"{blas[0] / warm[0]:.2f} / {ratio:.2f}"))

        def cold():
            qt.clear_cache()
            int_gemm(xq, xs, qt)

        c, ratio = paired(lambda: x @ w.T, cold, max(3, repeats // 3))
        rows.append((f"`int_gemm` W{bits}A8 g128, cold (unpack + GEMM)", _ms(c[0]), _ms(c[1]),
                     f"{macs / c[0] / 1e9:.1f} GMAC/s", f"{blas[0] / c[0]:.2f} / {ratio:.2f}"))
    qt = quantize_rtn(w, 4, 128)
    bs = timeit(lambda: bitserial_gemm(xq, xs, qt), 3)
    rows.append(("`bitserial_gemm` W4A8 g128, warm", _ms(bs[0]), _ms(bs[1]),
                 f"{macs / bs[0] / 1e9:.1f} GMAC/s", f"{blas[0] / bs[0]:.2f} / -"))
    t = timeit(lambda: quantize_rtn(w, 4, 128), 1)
    rows.append(("`quantize_rtn` 4-bit g128 of W", _ms(t[0]), _ms(t[1]),
                 f"{N * K / t[0] / 1e6:.0f} M weights/s", ""))


def bench_packing(n, repeats, rows):
    rng = np.random.default_rng(1)
    for bits in (1, 2, 3, 4, 8):
        codes = rng.integers(0, 1 << bits, n, dtype=np.uint8)
        packed = pack_bits(codes, bits)
        p = timeit(lambda: pack_bits(codes, bits), repeats)
        u = timeit(lambda: unpack_bits(packed, bits, n), repeats)
        rows.append((bits, _ms(p[0]), f"{n / p[0] / 1e9:.2f}", f"{packed.nbytes / p[0] / 1e9:.2f}",
                     _ms(u[0]), f"{n / u[0] / 1e9:.2f}", f"{packed.nbytes / u[0] / 1e9:.2f}"))


def bench_expert(name, d, f, T, repeats, rows):
    rng = np.random.default_rng(2)
    e = Expert("swiglu", {"w1": rng.standard_normal((f, d), dtype=np.float32) / np.sqrt(d),
                          "w3": rng.standard_normal((f, d), dtype=np.float32) / np.sqrt(d),
                          "w2": rng.standard_normal((d, f), dtype=np.float32) / np.sqrt(f)})
    q = quantize_expert(e, 4, 128)
    x = rng.standard_normal((T, d), dtype=np.float32)
    fl = timeit(lambda: expert_forward(e, x), repeats)
    rows.append((name, "float32 (BLAS)", _ms(fl[0]), _ms(fl[1]), "1.00 / 1.00"))
    for label, fn, n in (("W4 weight-only (dequantize + BLAS)", lambda: expert_forward(q, x),
                          max(3, repeats // 3)),
                         ("W4A8 integer (`int_gemm`)", lambda: expert_forward(q, x, act_bits=8),
                          repeats)):
        t, ratio = paired(lambda: expert_forward(e, x), fn, n)
        rows.append((name, label, _ms(t[0]), _ms(t[1]), f"{fl[0] / t[0]:.2f} / {ratio:.2f}"))
    rows.append((name, "bytes: float32 / W4 g128", f"{e.nbytes / 2**20:.1f} MiB",
                 f"{q.nbytes / 2**20:.1f} MiB", ""))


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", choices=("gemm", "packing", "expert"), action="append",
                    help="run only these sections (repeatable)")
    args = ap.parse_args(argv)
    r = 3 if args.quick else args.repeats
    T, K, N = (16, 1024, 2048) if args.quick else (64, 4096, 14336)
    load0 = os.getloadavg()
    lines = ["## Environment", "",
             f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads, "
             f"layer {numba.config.THREADING_LAYER}); numpy {np.__version__}",
             f"- load average before: {load0[0]:.2f}"]
    only = set(args.only or ("gemm", "packing", "expert"))
    gemm_rows, pack_rows, exp_rows = [], [], []
    if "gemm" in only:
        bench_gemm(T, K, N, r, gemm_rows)
    if "packing" in only:
        bench_packing(N * K, r, pack_rows)
    if "expert" in only:
        bench_expert("DeepSeek-V2-Lite expert (2048, 1408)", 2048, 1408, 64, r, exp_rows)
        if not args.quick:
            bench_expert("Mixtral-8x7B expert (4096, 14336)", 4096, 14336, 64,
                         max(3, r // 3), exp_rows)
    lines.append(f"- load average after: {os.getloadavg()[0]:.2f}")
    if gemm_rows:
        lines += ["", f"## GEMM ({T} x {K}) x ({K} -> {N})", "",
                  table(["kernel", "min ms", "median ms", "throughput",
                         "vs BLAS: min/min / paired median"], gemm_rows)]
    if pack_rows:
        lines += ["", f"## Packing ({N * K / 1e6:.1f} M codes)", "",
                  table(["bits", "pack ms", "pack Gcodes/s", "pack GB/s (packed)", "unpack ms",
                         "unpack Gcodes/s", "unpack GB/s (packed)"], pack_rows)]
    if exp_rows:
        lines += ["", "## Expert forward, 64 tokens", "",
                  table(["expert", "path", "min ms", "median ms",
                         "speed vs float: min/min / paired median"], exp_rows)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

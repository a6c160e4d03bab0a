"""Benchmarks of the simulator (issue 3, item 12).

Run from the repository root::

    python benchmarks/bench_sim.py            # every case (about a minute on an idle machine)
    python benchmarks/bench_sim.py --quick    # fewer repeats and shorter loops

Prints a markdown report: the machine, the load average before and after (the numbers are
only meaningful on an otherwise idle machine), and for each case the minimum and median wall
time over the repeats. Results are recorded by hand in ``docs/performance.md``.

Cases:

1. One Mixtral-8x7B decode step (32 layers, batch 16, context 512) through ``simulate()``
   after JIT warm-up, on several presets; uniform allocations, and a mixed-bit allocation with
   Zipf routing (every expert of every layer different: no two GEMMs alike). Target: <= 10 ms.
2. One GEMM design point through ``simulate_gemm()`` (Mixtral ``w1``: 64 x 4096 x 14336 on
   gemmini, and on h100's 132 cores). Target: <= 100 us.
3. A 1,000-point loop: 1,000 distinct GEMM points (random shapes and bits) on gemmini, and
   1,000 Mixtral-8x7B decode steps with random per-expert allocations on h100.
4. The tile pipeline alone: one Mixtral expert GEMM on a 16 x 16 array with 16 x 16 tiles
   (229,376 tiles), closed-form steady state against the full tile-by-tile run.
5. Cold start: first ``simulate()`` in this process (numba loads its on-disk cache).
6. Feasibility without simulating: ``fits()`` against ``simulate()`` for Mixtral-8x7B int8
   on 318 (does not fit) and 319 NorthPole chips (``accelsim validate``'s chip-group search).
7. Device parts (``simulate_parts``, :func:`parts_cases`): one DeepSeek-V3 decode step
   (batch 32, context 1024) on 32 devices with expert parallelism -- 32 parts, all 61
   layers, tp=1, 8 of the 256 routed experts per MoE layer each, attention replicated --
   with mixed 2/3/4-bit experts (router-norm-like: a third of each layer's experts at each
   width) and with uniform 4-bit experts (parts equal up to which experts they hold). Target:
   <= 50 ms per call. ``--parts`` runs only this case. Wall time and, because the machine is
   shared, the process CPU time too.
8. The tile engine (:func:`engine_cases`, ``--engine`` runs only this case), in CPU time
   (``time.process_time``): ``simulate_gemm(64, 4096, 14336)`` on h100 (w4a16) and gemmini
   (w8a8), 200 calls, and the engine call alone of those points (``gemm._point``); the one
   ``engine.run_pairs`` call of a DeepSeek-V3 decode step (batch 32, context 1024, Zipf(1.2)
   routing) on the ``h100-4x8`` system with ``plan="ep=32"`` (its inputs captured from one
   ``simulate`` call), 20 calls. To compare checkouts, run this script with
   ``PYTHONPATH=<checkout>``: it imports accelsim from there.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from _timing import cpu_timed, timed


def row(case: str, tmin: float, tmed: float, unit: str = "ms", note: str = "") -> str:
    f = 1e3 if unit == "ms" else 1e6 if unit == "us" else 1.0
    return f"| {case} | {tmin * f:.3g} | {tmed * f:.3g} | {unit} | {note} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", action="store_true", help="only the device-parts case (7)")
    ap.add_argument("--engine", action="store_true", help="only the tile-engine case (8)")
    args = ap.parse_args()
    reps = 5 if args.quick else 30
    if args.engine:
        n = 50 if args.quick else 200
        _report(os.getloadavg(), engine_cases(n), n)
        return
    if args.parts:
        _report(os.getloadavg(), parts_cases(5 if args.quick else 10), 5 if args.quick else 10)
        return
    loop = 100 if args.quick else 1000
    load0 = os.getloadavg()

    t0 = time.perf_counter()
    import accelsim
    from accelsim.sim import engine as E
    from accelsim.sim import simulate, simulate_gemm
    from accelsim.workload import Zipf
    t_import = time.perf_counter() - t0

    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=16, context=512))
    gz = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=16, context=512,
                                                   routing=Zipf(1.2), seed=1))
    rng = np.random.default_rng(0)
    mixed = accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 3, 4], size=(32, 8)))

    lines = []
    hw = accelsim.load_hw("h100")
    t = time.perf_counter()
    simulate(hw, g, accelsim.BitAllocation.uniform(m, 4))
    lines.append(row("cold: first simulate() in the process (numba cache load, lowering)",
                     time.perf_counter() - t, time.perf_counter() - t, "ms",
                     f"import accelsim {t_import * 1e3:.0f} ms"))

    # 1. Mixtral-8x7B decode step
    for name, bits in (("gemmini", 2), ("h100", 4), ("spyre", 4), ("rapid", 2)):
        hw = accelsim.load_hw(name)
        a = accelsim.BitAllocation.uniform(m, bits)
        simulate(hw, g, a)
        r, tmin, tmed = timed(lambda hw=hw, a=a: simulate(hw, g, a), reps)
        lines.append(row(f"Mixtral-8x7B decode b16, {name} ({hw.cores.count} cores), "
                         f"uniform {bits}-bit", tmin, tmed, "ms",
                         f"{r.latency_s * 1e3:.3g} ms simulated, {r.bound}"))
    for name in ("h100", "spyre"):
        hw = accelsim.load_hw(name)
        simulate(hw, gz, mixed)
        r, tmin, tmed = timed(lambda hw=hw: simulate(hw, gz, mixed), reps)
        lines.append(row(f"Mixtral-8x7B decode b16, {name}, mixed 2/3/4-bit, zipf 1.2",
                         tmin, tmed, "ms", f"{r.latency_s * 1e3:.3g} ms simulated"))

    # 2. one GEMM design point
    for name in ("gemmini", "h100"):
        hw = accelsim.load_hw(name)
        simulate_gemm(hw, 64, 4096, 14336, w_bits=4)
        r, tmin, tmed = timed(lambda hw=hw: simulate_gemm(hw, 64, 4096, 14336, w_bits=4),
                              reps * 20)
        lines.append(row(f"simulate_gemm 64 x 4096 x 14336, 4-bit, {name}", tmin, tmed, "us",
                         f"{r.cycles:.4g} cycles simulated"))

    # 3. 1,000-point loops
    hw = accelsim.load_hw("gemmini")
    pts = [(float(rng.integers(1, 2048)), int(rng.integers(64, 16384)),
            int(rng.integers(64, 16384)), int(rng.choice([2, 4, 8]))) for _ in range(loop)]
    t = time.perf_counter()
    for (mm, kk, nn, b) in pts:
        simulate_gemm(hw, mm, kk, nn, w_bits=b)
    dt = time.perf_counter() - t
    lines.append(row(f"{loop} distinct GEMM points (random shapes, 2/4/8-bit), gemmini", dt,
                     dt, "s", f"{dt / loop * 1e6:.0f} us per point"))
    hw = accelsim.load_hw("h100")
    allocs = [accelsim.BitAllocation.uniform(m, 4).with_expert_bits(
        rng.choice([2, 3, 4, 8], size=(32, 8))) for _ in range(loop)]
    t = time.perf_counter()
    for a in allocs:
        simulate(hw, g, a)
    dt = time.perf_counter() - t
    lines.append(row(f"{loop} Mixtral-8x7B decode steps, random per-expert bits, h100", dt,
                     dt, "s", f"{dt / loop * 1e3:.2f} ms per step"))

    # 4. tile pipeline alone
    pargs = (E.WS, 4.0, 4096, 14336, 4.0, 16.0, 16.0, 16, 16, 1.0, 0.5, 1.0, 1.0,
             120.0, 1 / 16, 0.0, 0.0, 20.0, 1 / 16, False)
    E.pipeline(*pargs, False)
    E.pipeline(*pargs, True)
    rc, tmin, tmed = timed(lambda: E.pipeline(*pargs, False), reps * 10)
    lines.append(row("tile pipeline, Mixtral expert on 16x16, 229,376 tiles, closed form",
                     tmin, tmed, "us", f"{rc[5]} steps simulated"))
    rf, tmin, tmed = timed(lambda: E.pipeline(*pargs, True), 3)
    lines.append(row("the same, full tile-by-tile run", tmin, tmed, "ms",
                     f"{rf[5]} steps; same cycles: {rf[0] == rc[0]}"))

    # 6. feasibility without simulating, on one very large chip (a stress case for the
    # single-chip simulator: many cores, one NoC)
    from accelsim.errors import DoesNotFitError
    from accelsim.report.claims import ValidateConfig, allocations
    from accelsim.sim import fits
    g1 = accelsim.build_graph(m, accelsim.Scenario(batch=1, context=512))
    a8 = allocations(m, ValidateConfig())["int8"]
    for chips in (318, 319):
        hw = _northpole_as_one_chip(chips)
        ok, tmin, tmed = timed(lambda hw=hw: fits(hw, g1, a8), reps)
        lines.append(row(f"fits(): Mixtral-8x7B int8 on {chips} NorthPole chips", tmin, tmed,
                         "ms", f"fits: {ok}"))

        def sim(hw=hw):
            try:
                return simulate(hw, g1, a8).latency_s
            except DoesNotFitError:
                return None
        r, tmin, tmed = timed(sim, 3)
        lines.append(row(f"simulate(): the same ({chips} chips)", tmin, tmed, "ms",
                         "DoesNotFitError" if r is None else f"{r * 1e3:.4g} ms simulated"))

    lines += parts_cases(max(reps // 3, 5))
    _report(load0, lines, reps)


def _northpole_as_one_chip(chips: int):
    """``chips`` NorthPole chips as one imaginary chip (``256 x chips`` cores, the
    framebuffers added up, card-to-card links free): not a system model (accelsim.system
    models NorthPole cards and their links), only a large single-chip case to time."""
    from accelsim.hw import hw_from_dict
    from accelsim.presets import resolve
    from accelsim.config import read_mapping
    from accelsim.sweep.overrides import apply_overrides
    from accelsim.units import parse_quantity
    raw = read_mapping(resolve("northpole", "hw"))
    fb = [m for m in raw["memory"] if m["scope"] == "chip"][0]
    cap = parse_quantity(fb["capacity"], "size")
    over = {"cores.count": 256 * chips, "noc.dims": None,
            f"memory[name={fb['name']}].capacity": f"{cap * chips:.0f} B",
            "name": f"northpole-x{chips}"}
    return hw_from_dict(apply_overrides(raw, over))


def _report(load0, lines: list[str], reps: int) -> None:
    load1 = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f}; min and median of "
          f"{reps} runs unless noted\n")
    print("| case | min | median | unit | note |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))


def parts_cases(reps: int) -> list[str]:
    """Case 7: ``simulate_parts`` for a DeepSeek-V3 decode step on 32 expert-parallel
    devices (h100 and spyre chips), mixed and uniform expert bits."""
    import accelsim
    from accelsim.sim import DevicePart, simulate_parts
    m = accelsim.load_workload("deepseek-v3")
    t = time.perf_counter()
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=32, context=1024))
    t_graph = time.perf_counter() - t
    R, E = m.num_moe_layers, m.moe.num_experts
    rng = np.random.default_rng(0)
    # router-norm-like: in every layer a random third of the experts at 2, 3 and 4 bits
    bits = np.stack([rng.permutation(np.resize([2, 3, 4], E)) for _ in range(R)])
    allocs = {"mixed 2/3/4-bit": accelsim.BitAllocation.uniform(m, 4).with_expert_bits(bits),
              "uniform 4-bit": accelsim.BitAllocation.uniform(m, 4)}
    parts = []
    for d in range(32):
        share = np.zeros((R, E))
        share[:, d * 8:(d + 1) * 8] = 1.0
        parts.append(DevicePart((0, m.total_layers), 1, share))
    lines = []
    for name in ("h100", "spyre"):
        hw = accelsim.load_hw(name)
        for label, a in allocs.items():
            rs = simulate_parts(hw, g, a, parts)       # warm-up (lowering, numba)
            cpu = []

            def call(hw=hw, a=a, cpu=cpu):
                c = time.process_time()
                out = simulate_parts(hw, g, a, parts)
                cpu.append(time.process_time() - c)
                return out
            rs, tmin, tmed = timed(call, reps)
            lines.append(row(
                f"simulate_parts: DeepSeek-V3 decode b32 on 32 {name} (ep=32), {label}",
                tmin, tmed, "ms", f"CPU min {min(cpu) * 1e3:.0f} ms; slowest part "
                f"{max(r.latency_s for r in rs) * 1e3:.3g} ms simulated; graph built once "
                f"in {t_graph:.1f} s"))
    return lines


def engine_cases(reps: int) -> list[str]:
    """Case 8: the tile engine in CPU time: the GEMM design point on h100 (w4a16) and
    gemmini (w8a8) through ``simulate_gemm`` and its engine call alone, and the
    ``engine.run_pairs`` call of a DeepSeek-V3 Zipf(1.2) decode step on 32 H100s."""
    import accelsim
    from accelsim.sim import engine as E
    from accelsim.sim import gemm as G
    from accelsim.sim import simulate_gemm
    from accelsim.system import load_system
    from accelsim.workload import Zipf
    lines = []
    for name, wb, ab in (("h100", 4, 16), ("gemmini", 8, 8)):
        hw = accelsim.load_hw(name)
        calls = []
        entry = "_point_f" if hasattr(G, "_point_f") else "_point"   # older checkouts
        orig = getattr(G, entry)

        def spy(*a, orig=orig, calls=calls):
            calls.append(a)
            return orig(*a)
        setattr(G, entry, spy)
        try:
            simulate_gemm(hw, 64, 4096, 14336, w_bits=wb, a_bits=ab)
        finally:
            setattr(G, entry, orig)
        r, tmin, tmed = cpu_timed(lambda hw=hw, wb=wb, ab=ab: simulate_gemm(
            hw, 64, 4096, 14336, w_bits=wb, a_bits=ab), reps)
        lines.append(row(f"simulate_gemm 64 x 4096 x 14336, w{wb}a{ab}, {name}", tmin, tmed,
                         "us", f"CPU time; {r.cycles:.6g} cycles simulated"))
        if calls:
            _, tmin, tmed = cpu_timed(lambda a=calls[0], o=orig: o(*a), reps)
            lines.append(row(f"its engine call alone (gemm.{entry}), {name}", tmin, tmed,
                             "us", "CPU time"))
    ds = accelsim.load_workload("deepseek-v3")
    g = accelsim.build_graph(ds, accelsim.Scenario(phase="decode", batch=32, context=1024,
                                                   routing=Zipf(1.2)))
    a4 = accelsim.BitAllocation.uniform(ds, 4)
    sys32 = load_system("h100-4x8")
    calls = []
    orig = E.run_pairs

    def spy_rp(*a):
        calls.append(a)
        return orig(*a)
    E.run_pairs = spy_rp
    try:
        accelsim.simulate(sys32, g, a4, plan="ep=32")
    finally:
        E.run_pairs = orig
    big = max(calls, key=lambda a: len(a[1]))
    E.run_pairs(*big)
    _, tmin, tmed = cpu_timed(lambda: E.run_pairs(*big), 20)
    lines.append(row(f"engine.run_pairs of a DeepSeek-V3 Zipf(1.2) decode step on h100-4x8, "
                     f"ep=32 ({len(big[1])} rows)", tmin, tmed, "ms",
                     f"CPU time, 20 calls; {tmin / len(big[1]) * 1e6:.1f} us per row"))
    return lines


if __name__ == "__main__":
    main()

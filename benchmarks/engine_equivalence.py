"""Capture real tile-engine calls and check that a changed engine returns the same bits.

``python benchmarks/engine_equivalence.py capture /tmp/engine_calls.npz`` runs a set of
simulations (DeepSeek-V3 decode on the ``h100-4x8`` system with uniform and Zipf(1.2)
routing, Mixtral-8x7B decode and prefill steps on several presets, smaller models on the
other presets, ``simulate_gemm`` on random shapes and bit widths on every preset, with and
without ``full_pipeline``) with :func:`accelsim.sim.engine.run_pairs` and
:func:`accelsim.sim.gemm._point` wrapped, and saves every call's inputs and outputs.

``python benchmarks/engine_equivalence.py check /tmp/engine_calls.npz`` reruns the engine
(``run_pairs``, ``gemm._point`` and ``engine.pair_packed`` on the same inputs) and compares
every output with :func:`numpy.array_equal` (bit-identical floats; NaN never occurs).
Exit status 1 on any difference. ``--time`` also reports the CPU time of the replay per
call group.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

# argument kinds: a = array, i = int, f = float, b = bool
_KIND = {int: "i", float: "f", bool: "b"}


def _pack(store: dict, prefix: str, args, outs) -> None:
    kinds = []
    for j, x in enumerate(args):
        if isinstance(x, np.ndarray):
            kinds.append("a")
            store[f"{prefix}_in{j}"] = x.copy()
        else:
            if isinstance(x, np.bool_):
                x = bool(x)
            elif isinstance(x, np.integer):
                x = int(x)
            elif isinstance(x, np.floating):
                x = float(x)
            kinds.append(_KIND[type(x)])
            store[f"{prefix}_in{j}"] = np.array(x)
    store[f"{prefix}_kinds"] = np.array("".join(kinds))
    for j, y in enumerate(outs):
        store[f"{prefix}_out{j}"] = np.asarray(y).copy()
    store[f"{prefix}_nout"] = np.array(len(outs))


def _unpack(z, prefix: str):
    kinds = str(z[f"{prefix}_kinds"])
    args = []
    for j, k in enumerate(kinds):
        v = z[f"{prefix}_in{j}"]
        args.append(v if k == "a" else {"i": int, "f": float, "b": bool}[k](v))
    outs = [z[f"{prefix}_out{j}"] for j in range(int(z[f"{prefix}_nout"]))]
    return args, outs


def _cases():
    """The simulations whose engine calls are captured (name, thunk)."""
    import accelsim
    from accelsim.sim import simulate, simulate_gemm
    from accelsim.system import load_system
    from accelsim.workload import Zipf

    out = []
    ds = accelsim.load_workload("deepseek-v3")
    a4 = accelsim.BitAllocation.uniform(ds, 4)
    sys32 = load_system("h100-4x8")
    for label, routing in (("uniform", None), ("zipf", Zipf(1.2))):
        kw = {} if routing is None else {"routing": routing}
        g = accelsim.build_graph(ds, accelsim.Scenario(phase="decode", batch=32,
                                                       context=1024, **kw))
        out.append((f"deepseek-v3 h100-4x8 ep=32 {label}",
                    lambda g=g: accelsim.simulate(sys32, g, a4, plan="ep=32")))
    bits = np.random.default_rng(0).choice([2, 3, 4], size=(ds.num_moe_layers,
                                                             ds.num_experts))
    gz = accelsim.build_graph(ds, accelsim.Scenario(phase="decode", batch=32, context=1024))
    out.append(("deepseek-v3 h100-4x8 ep=32 mixed bits",
                lambda: accelsim.simulate(sys32, gz, a4.with_expert_bits(bits), plan="ep=32")))
    mx = accelsim.load_workload("mixtral-8x7b")
    small = accelsim.load_workload("olmoe-1b-7b")
    tiny = accelsim.load_workload("llm-3b-proxy")
    scen = {"decode": accelsim.Scenario(phase="decode", batch=16, context=512),
            "decode-zipf": accelsim.Scenario(phase="decode", batch=16, context=512,
                                             routing=Zipf(1.2), seed=1),
            "prefill": accelsim.Scenario(phase="prefill", batch=1, context=512)}
    for name in ("h100", "a100", "l40s", "spyre", "gemmini", "northpole", "rapid",
                 "h200", "tpu-v4i", "edge-tpu", "ethos-u65", "stripes", "loom", "bitfusion"):
        hw = accelsim.load_hw(name)
        for model in (mx, small, tiny):
            for bits_ in (4, 8):
                a = accelsim.BitAllocation.uniform(model, bits_)
                for sname, sc in scen.items():
                    g = accelsim.build_graph(model, sc)
                    out.append((f"{model.name} {sname} {name} w{bits_}",
                                lambda hw=hw, g=g, a=a: _sim_or_offchip(simulate, hw, g, a)))
        a = accelsim.BitAllocation.uniform(tiny, 8)
        g = accelsim.build_graph(tiny, scen["prefill"])
        for df in ("weight_stationary", "output_stationary"):
            out.append((f"{tiny.name} prefill {name} {df}",
                        lambda hw=hw, g=g, a=a, df=df: _sim_or_offchip(simulate, hw, g, a,
                                                                       dataflow=df)))
    for sysname, plan in (("northpole-16", None), ("spyre-8", None), ("l40s-8", "ep=8"),
                          ("a100-8", "tp=8")):
        s_ = load_system(sysname)
        a = accelsim.BitAllocation.uniform(mx, 4)
        for sname in ("decode-zipf", "prefill"):
            g = accelsim.build_graph(mx, scen[sname])
            out.append((f"mixtral {sname} {sysname} {plan}",
                        lambda s_=s_, g=g, a=a, plan=plan: accelsim.simulate(
                            s_, g, a, **({} if plan is None else {"plan": plan}))))
    rng = np.random.default_rng(7)
    for name in ("h100", "a100", "l40s", "spyre", "gemmini", "northpole", "rapid", "h200",
                 "tpu-v4i", "edge-tpu", "ethos-u65", "stripes", "loom", "bitfusion"):
        hw = accelsim.load_hw(name)
        pts = [(64.0, 4096, 14336, 4, None), (64.0, 4096, 14336, 8, 8)]
        for _ in range(12):
            pts.append((float(rng.integers(1, 2048)), int(rng.integers(16, 16384)),
                        int(rng.integers(16, 16384)), int(rng.choice([2, 3, 4, 8])),
                        [None, 8, 16][int(rng.integers(3))]))
        for i, (m, k, n, wb, ab) in enumerate(pts):
            if i % 5 == 4:
                out.append((f"gemm {name} {m:g}x{k}x{n} w{wb} a{ab} offchip ws",
                            lambda hw=hw, m=m, k=k, n=n, wb=wb, ab=ab: simulate_gemm(
                                hw, m, k, n, w_bits=wb, a_bits=ab, residency="offchip",
                                dataflow="weight_stationary")))
            out.append((f"gemm {name} {m:g}x{k}x{n} w{wb} a{ab}",
                        lambda hw=hw, m=m, k=k, n=n, wb=wb, ab=ab, i=i: simulate_gemm(
                            hw, m, k, n, w_bits=wb, a_bits=ab, full_pipeline=(i % 7 == 3))))
    return out


def _sim_or_offchip(simulate, hw, g, a, **kw):
    """``simulate`` with the default residency, or with the weights off chip when they do
    not fit on it."""
    from accelsim.errors import DoesNotFitError
    try:
        return simulate(hw, g, a, **kw)
    except DoesNotFitError:
        return simulate(hw, g, a, residency="offchip", **kw)


def capture(path: str) -> None:
    from accelsim.errors import AccelsimError
    from accelsim.sim import engine as E
    from accelsim.sim import gemm as G

    store: dict = {}
    counts = {"rp": 0, "pt": 0}
    case = [""]
    orig_rp, orig_pt = E.run_pairs, G._point

    def rp(*args):
        r = orig_rp(*args)
        _pack(store, f"rp{counts['rp']}", args, r)
        store[f"rp{counts['rp']}_case"] = np.array(case[0])
        counts["rp"] += 1
        return r

    def pt(*args):
        r = orig_pt(*args)
        _pack(store, f"pt{counts['pt']}", args, r)
        p, io, flc, cap, _, rx = args
        _pack(store, f"pp{counts['pt']}", (p, io, flc, cap, rx), E.pair_packed(p, io, flc,
                                                                              cap, rx))
        counts["pt"] += 1
        return r

    orig_pf = getattr(G, "_point_f", None)

    def pf(f, nl):
        """The packed point (gemm._point_f), stored as _point's arguments."""
        c = 45 + 2 * nl
        return pt(f[:23], f[23:35].reshape(2, 6), f[35:45].reshape(2, 5),
                  f[45:c].reshape(2, nl), f[c:c + 8], f[c + 8:].reshape(2, E.NRX))

    E.run_pairs, G._point = rp, pt
    if orig_pf is not None:
        G._point_f = pf
    failed = []
    try:
        for name, fn in _cases():
            case[0] = name
            try:
                fn()
            except AccelsimError as e:
                failed.append(f"{name}: {type(e).__name__}")
    finally:
        E.run_pairs, G._point = orig_rp, orig_pt
        if orig_pf is not None:
            G._point_f = orig_pf
    store["counts"] = np.array(json.dumps(counts))
    np.savez_compressed(path, **store)
    rows = sum(len(store[f"rp{i}_in1"]) for i in range(counts["rp"]))
    print(f"captured {counts['rp']} run_pairs calls ({rows} rows) and {counts['pt']} "
          f"gemm._point calls into {path}; {len(failed)} cases raised: {failed}")


def _replay(z, prefix: str, fn, label: str, rows: bool = False) -> tuple[float, int]:
    """Rerun the captured call ``prefix`` through ``fn``: (CPU seconds, outputs that
    differ), each difference printed (``rows``: which rows of a batched output)."""
    args, outs = _unpack(z, prefix)
    t0 = time.process_time()
    r = fn(*args)
    dt = time.process_time() - t0
    bad = 0
    for j, (x, y) in enumerate(zip(r, outs)):
        if not np.array_equal(np.asarray(x), y):
            bad += 1
            if rows:
                which = np.flatnonzero([not np.array_equal(np.asarray(x)[q], y[q])
                                        for q in range(len(y))])
                print(f"{label}: output {j} differs in rows {which[:10]}")
            else:
                print(f"{label}: output {j} differs: {x} != {y}")
    return dt, bad


def check(path: str, timing: bool) -> int:
    from accelsim.sim import engine as E
    from accelsim.sim import gemm as G

    z = np.load(path)
    counts = json.loads(str(z["counts"]))
    bad = 0
    t = {"run_pairs": 0.0, "_point": 0.0, "pair_packed": 0.0}
    calls = [(f"rp{i}", E.run_pairs, "run_pairs", i, True) for i in range(counts["rp"])]
    for i in range(counts["pt"]):
        calls += [(f"pt{i}", G._point, "_point", i, False),
                  (f"pp{i}", E.pair_packed, "pair_packed", i, False)]
    for prefix, fn, name, i, rows in calls:
        dt, b = _replay(z, prefix, fn, f"{name} call {i}", rows)
        t[name] += dt
        bad += b
    print(f"checked {counts['rp']} run_pairs and {counts['pt']} gemm._point / pair_packed "
          f"calls: {bad} differences")
    if timing:
        print(f"CPU: run_pairs {t['run_pairs'] * 1e3:.1f} ms, _point {t['_point'] * 1e3:.1f} "
              f"ms, pair_packed {t['pair_packed'] * 1e3:.1f} ms")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("capture", "check"))
    ap.add_argument("path")
    ap.add_argument("--time", action="store_true")
    args = ap.parse_args()
    if args.mode == "capture":
        capture(args.path)
    else:
        sys.exit(check(args.path, args.time))


if __name__ == "__main__":
    main()

"""Time the simulator of several checkouts back to back (before/after comparisons).

Usage, from the repository root with the venv active::

    git worktree add /tmp/before <commit>
    python benchmarks/compare_checkouts.py /tmp/before .

Each checkout runs in its own Python process (its own numba cache in its ``__pycache__``;
the first run of a fresh worktree compiles, and the warm-up runs absorb it). Prints, per
checkout, the min / median of 40 Mixtral-8x7B decode steps (batch 16, context 512) on
gemmini (2-bit), h100 (4-bit), spyre (4-bit) and rapid (2-bit), and the min of 600
``simulate_gemm(64, 4096, 14336, w_bits=4)`` points on h100. The VM's speed drifts between
runs minutes apart: run two rounds (``--rounds 2``) and compare the minima.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _timing import timed


def measure(root: str) -> str:
    sys.path.insert(0, root)
    import accelsim
    from accelsim.sim import simulate, simulate_gemm

    m = accelsim.load_workload("mixtral-8x7b")
    g = accelsim.build_graph(m, accelsim.Scenario(phase="decode", batch=16, context=512))
    out = []
    for name, bits in (("gemmini", 2), ("h100", 4), ("spyre", 4), ("rapid", 2)):
        hw = accelsim.load_hw(name)
        alloc = accelsim.BitAllocation.uniform(m, bits)
        timed(lambda: simulate(hw, g, alloc), 3)            # warm-up
        _, tmin, tmed = timed(lambda: simulate(hw, g, alloc), 40)
        out.append(f"{name} {tmin * 1e3:.2f} / {tmed * 1e3:.2f} ms")
    hw = accelsim.load_hw("h100")
    point = lambda: simulate_gemm(hw, 64, 4096, 14336, w_bits=4)  # noqa: E731
    timed(point, 50)
    out.append(f"gemm h100 {timed(point, 600)[1] * 1e6:.0f} us")
    return f"{accelsim.__file__.rsplit('/accelsim/', 1)[0]}: " + " | ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="*", help="checkout directories")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(measure(args.one), flush=True)
        return
    for _ in range(args.rounds):
        for root in args.roots:
            subprocess.run([sys.executable, __file__, "--one", root], check=True)


if __name__ == "__main__":
    main()

"""Off-chip bytes, cycles and the int8 -> int4 gain of single GEMMs whose K splits into
several tiles (issue 13, item 6: activations were re-read for every N block).

Prints a markdown table: per preset and shape, the off-chip bytes and cycles at int8 and at
int4 (weights streamed from off chip, ``residency="offchip"``), the bytes a GEMM needs at
least (weights + activations + outputs once) and the int8 / int4 cycle ratio. Run it on two
checkouts to compare (a separate numba cache per checkout keeps compiled code apart)::

    PYTHONPATH=$PWD python benchmarks/gemm_reuse.py
    NUMBA_CACHE_DIR=/tmp/nb-old PYTHONPATH=/path/to/old python benchmarks/gemm_reuse.py
"""

from __future__ import annotations

import argparse
import copy

from accelsim.config import read_mapping
from accelsim.hw import hw_from_dict, load_hw
from accelsim.presets import resolve
from accelsim.sim import simulate_gemm

SHAPES = ((16, 4096, 14336), (16, 14336, 4096), (64, 4096, 14336), (1, 4096, 14336))
PRESETS = ("gemmini", "gemmini@2", "bitfusion", "rapid", "spyre", "h100")


def _hw(name: str):
    """A preset, or ``preset@B`` for the preset with a B bytes/cycle off-chip read port."""
    if "@" not in name:
        return load_hw(name)
    base, bpc = name.split("@")
    d = copy.deepcopy(dict(read_mapping(resolve(base, "hw"))))
    lv = next(m for m in d["memory"] if m["scope"] == "offchip")
    lv["read_bandwidth"] = f"{bpc} B/cycle"
    d["name"] = name
    return hw_from_dict(d)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    args = ap.parse_args(argv)
    print("| hardware | M x K x N | int8 off-chip MB (min) | int8 Mcycles | int4 off-chip MB "
          "(min) | int4 Mcycles | int8/int4 |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets.split(","):
        hw = _hw(name)
        a_bits = hw.cores.mac_array.default_activation_bits
        for m, k, n in SHAPES:
            row = []
            cyc = {}
            for bits in (8, 4):
                r = simulate_gemm(hw, m, k, n, w_bits=bits, residency="offchip")
                need = r.weight_bytes + (m * k + m * n) * a_bits / 8
                row += [f"{r.offchip_bytes / 1e6:.1f} ({need / 1e6:.1f})",
                        f"{r.cycles / 1e6:.3f}"]
                cyc[bits] = r.cycles
            print(f"| {name} | {m}x{k}x{n} | " + " | ".join(row)
                  + f" | {cyc[8] / cyc[4]:.2f} |")


if __name__ == "__main__":
    main()

"""Energy: MACs x e(bits, kind) + bytes x e(level) + vector ops + NoC + static power x time.

MAC energy starts from Horowitz (ISSCC 2014, 45 nm): an int8 multiply 0.2 pJ and an int32
add 0.1 pJ, times the accelerator's ``process_factor`` (or the YAML's ``mac_energy_8b``, split
2:1 between multiplier and adder). For operand widths ``w``, ``a`` (as the array computes
them) the multiplier part scales with the product of the widths and the adder part linearly::

    e_par(w, a) = e_mult8 * (w * a) / 64 + e_add8 * (w + a) / 16

- ``fixed``: narrower operands are unpacked to the native width ``n``; wider ones take passes:
  ``ceil(w/n) * ceil(a/n) * e_par(n, n)``;
- ``bit_parallel``: widths rounded up to powers of two (at least 2 bits, as Bit Fusion's
  BitBricks and the halving rule do): ``e_par(pow2(w), pow2(a))``;
- ``bit_serial``: the same bit products, but one shift-add per serial cycle:
  ``e_mult8 * w * a / 64 + e_add8 * (w + a) / 16 * cycles_per_mac``.

A vector-unit operation defaults to the mean of Horowitz's fp16 add (0.4 pJ) and multiply
(1.1 pJ), times ``process_factor``. Memory energy is bytes read times ``read_energy`` plus
bytes written times ``write_energy`` at every level; the NoC costs bytes x hops x
``energy_per_byte_per_hop``; static power is charged for the whole step.

Examples
--------
>>> from accelsim.hw import load_hw
>>> hw = load_hw("gemmini")
>>> round(mac_energy(hw, 8, 8) / hw.energy.mac_8b, 9)
1.0
>>> round(mac_energy(hw, 4, 8) / hw.energy.mac_8b, 9)   # fixed int8: unpacked, no saving
1.0
"""

from __future__ import annotations

import math

import numpy as np

from ..hw.spec import HOROWITZ_INT8_MULT_J, HOROWITZ_INT32_ADD_J

__all__ = ["mac_energy", "mac_energy_table", "vector_op_energy", "HOROWITZ_FP16_OP_J"]

HOROWITZ_FP16_OP_J = 0.5 * (0.4e-12 + 1.1e-12)


def _parts(hw) -> tuple[float, float]:
    e = hw.energy
    if e.mac_energy_8b_j is not None:
        total = e.mac_energy_8b_j
        ref = HOROWITZ_INT8_MULT_J + HOROWITZ_INT32_ADD_J
        return total * HOROWITZ_INT8_MULT_J / ref, total * HOROWITZ_INT32_ADD_J / ref
    return HOROWITZ_INT8_MULT_J * e.process_factor, HOROWITZ_INT32_ADD_J * e.process_factor


def _pow2(bits: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(bits, 1))))


def mac_energy(hw, w_bits: int, a_bits: int) -> float:
    """Energy in joules of one MAC at these operand bits on ``hw`` (see module doc)."""
    ma = hw.cores.mac_array
    ar = ma.arithmetic
    mult8, add8 = _parts(hw)
    w = ma.compute_bits(int(w_bits), ma.weight_bits)
    a = ma.compute_bits(int(a_bits), ma.activation_bits)

    def par(x: float, y: float) -> float:
        return mult8 * x * y / 64.0 + add8 * (x + y) / 16.0

    if ar.kind == "fixed":
        n = ar.native_bits
        return math.ceil(w / n) * math.ceil(a / n) * par(n, n)
    if ar.kind == "bit_parallel":
        return par(_pow2(w), _pow2(a))
    return mult8 * w * a / 64.0 + add8 * (w + a) / 16.0 * ar.cycles_per_mac(w, a)


def mac_energy_table(hw) -> np.ndarray:
    """:func:`mac_energy` for w, a in 0..16, indexed by bits (row/column 0 unused)."""
    t = np.zeros((17, 17))
    for w in range(1, 17):
        for a in range(1, 17):
            t[w, a] = mac_energy(hw, w, a)
    return t


def vector_op_energy(hw) -> float:
    """Joules per vector-unit operation."""
    e = hw.energy
    return e.vector_op_energy_j if e.vector_op_energy_j is not None else (
        HOROWITZ_FP16_OP_J * e.process_factor)

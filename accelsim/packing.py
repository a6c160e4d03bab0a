"""How an allocation's weights are stored on a given chip: ``dense`` or ``native`` packing.

``dense``
    every code packed back to back at its own width (a 3-bit expert takes 3 bits per
    weight), as :class:`~accelsim.precision.WeightFormat` counts it;
``native``
    every quantized width rounded up to the smallest width the chip's MAC array computes
    on (``mac_array.weight_bits``): on a 2/4/8-bit array a 3-bit expert is stored as 4-bit
    codes and a 1-bit expert as 2-bit codes; widths above the widest supported one, 16-bit
    floats and pruned (0-bit) experts stay as they are.

``native`` is what the chip can compute on without unpacking in software, so it is the
default of ``accelsim simulate``, sweeps and ``accelsim validate``; ``dense`` is the
storage-only view (the model's size on disk).

Examples
--------
>>> import numpy as np
>>> from accelsim.precision import BitAllocation
>>> a = BitAllocation("m", np.array([[3, 3, 1, 2]]), defaults={"attention": 4})
>>> packed(a, (2, 4, 8)).expert_bits.tolist()
[[4, 4, 2, 2]]
>>> unsupported_widths(a, (2, 4, 8))
[1, 3]
"""

from __future__ import annotations

from typing import Iterable, Literal

import numpy as np

from .errors import ConfigError
from .precision import BitAllocation

__all__ = ["PACKINGS", "padded_width", "packed", "unsupported_widths", "packing_warning",
           "check_packing"]

PACKINGS: tuple[str, ...] = ("dense", "native")
Packing = Literal["dense", "native"]


def check_packing(packing: str, key: str = "--packing") -> str:
    """``packing`` itself, or a ConfigError naming ``key``."""
    if packing not in PACKINGS:
        raise ConfigError.single(f"must be one of {', '.join(PACKINGS)}", key=key,
                                 value=packing)
    return packing


def padded_width(bits: int, widths: Iterable[int]) -> int:
    """The width ``bits`` is stored at under native packing.

    >>> [padded_width(b, (2, 4, 8)) for b in (0, 1, 2, 3, 5, 8, 12, 16)]
    [0, 2, 2, 4, 8, 8, 12, 16]
    """
    b = int(bits)
    if b <= 0 or b >= 16:
        return b
    fits = [int(w) for w in sorted(widths) if int(w) >= b]
    return fits[0] if fits else b


def unsupported_widths(alloc: BitAllocation, widths: Iterable[int]) -> list[int]:
    """Quantized widths (1..15) the allocation uses that the chip does not compute on."""
    ws = {int(w) for w in widths}
    used = {int(b) for b in np.unique(alloc.expert_bits)} | {int(v) for v in
                                                              alloc.defaults.values()}
    return sorted(b for b in used if 0 < b < 16 and b not in ws)


def packed(alloc: BitAllocation, widths: Iterable[int],
           packing: str = "native") -> BitAllocation:
    """The allocation as stored on a chip computing at ``widths`` (module docstring).

    ``dense`` returns ``alloc`` itself. ``native`` returns a copy whose expert and role
    bits are the padded widths; ``meta['packing']`` and ``meta['padded_from']`` (the
    average expert bits before padding) record it."""
    check_packing(packing, "packing")
    ws = tuple(int(w) for w in widths)
    if packing == "dense" or not unsupported_widths(alloc, ws):
        return alloc
    pad = np.vectorize(lambda b: padded_width(int(b), ws), otypes=[np.int64])
    bits = pad(alloc.expert_bits) if alloc.expert_bits.size else alloc.expert_bits
    defaults = {k: padded_width(v, ws) for k, v in alloc.defaults.items()}
    meta = dict(alloc.meta, packing="native",
                padded_from=float(alloc.average_expert_bits()))
    return alloc.with_expert_bits(bits, defaults=defaults, meta=meta)


def packing_warning(alloc: BitAllocation, widths: Iterable[int], chip: str,
                    packing: str) -> str | None:
    """A one-line warning when ``alloc`` uses widths the chip does not compute on, saying
    what the chosen packing does about it (None when every width is supported)."""
    bad = unsupported_widths(alloc, widths)
    if not bad:
        return None
    ws = sorted(int(w) for w in widths)
    what = ("stored padded (" + ", ".join(f"{b}->{padded_width(b, ws)}" for b in bad) + ")"
            if packing == "native" else
            "stored densely (as if the chip unpacked them for free); use --packing native "
            "for what the chip computes on")
    return (f"{chip} computes on {'/'.join(map(str, ws))}-bit weights; the allocation's "
            f"{'/'.join(map(str, bad))}-bit weights are {what}")

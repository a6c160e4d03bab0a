"""`QuantizedTensor`: a group-quantized weight matrix in its exact storage format.

Storage (the contract shared with :meth:`accelsim.precision.WeightFormat.storage_bytes`):

* ``packed``: ONE flat dense ``uint8`` stream of the ``out * in`` codes in row-major order,
  ``bits`` bits each (bit order: :mod:`accelsim.kernels.packing`), not padded per row:
  ``ceil(out * in * bits / 8)`` bytes;
* ``scales``: ``float16`` ``(out, n_groups)``;
* ``zeros``: ``uint8`` ``(out, n_groups)`` integer zero points, or ``None`` when symmetric
  or 1-bit.

``n_groups = ceil(in / group_size)`` (the last group may be shorter), or 1 when
``group_size is None``. ``nbytes`` is the sum of the three arrays' bytes.

Decoding (``q`` the code of ``w[n, k]``, ``g = k // group_size``, ``s = scales[n, g]``):

=========================  ==========================  =========================
format                     ``w`` is                    codes
=========================  ==========================  =========================
asymmetric, 2..8 bits      ``s * (q - zeros[n, g])``   ``0 .. 2**bits - 1``
symmetric, 2..8 bits       ``s * (q - 2**(bits-1))``   ``0 .. 2**bits - 1``
1 bit (sign binarisation)  ``s * (2q - 1) = +-s``      ``0`` (-s) or ``1`` (+s)
=========================  ==========================  =========================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accelsim.errors import ConfigError, Problem
from accelsim.kernels import GemmOperands, check_bits, dequantize, packed_nbytes, unpack_bits

__all__ = ["QuantizedTensor", "n_groups_for"]


def n_groups_for(in_features: int, group_size: int | None) -> int:
    """Number of groups per row: ``ceil(in_features / group_size)``, or 1 for ``None``.

    >>> n_groups_for(300, 128), n_groups_for(300, None)
    (3, 1)
    """
    if group_size is None:
        return 1
    return -(-int(in_features) // int(group_size))


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """A weight matrix ``(out_features, in_features)`` quantized per row and column group.

    Build one with :func:`accelsim.quant.quantize_rtn` or :func:`accelsim.quant.gptq`; the
    constructor only checks that the arrays are consistent (format: module docstring).

    Attributes
    ----------
    packed : numpy.ndarray
        ``uint8``, one flat dense stream of all codes, row-major.
    scales : numpy.ndarray
        ``float16`` ``(out_features, n_groups)``.
    zeros : numpy.ndarray or None
        ``uint8`` ``(out_features, n_groups)``; ``None`` when symmetric or 1-bit.
    bits : int
        Bits per code, 1..8.
    group_size : int or None
        Columns per group (``None``: one group per row).
    shape : tuple of int
        ``(out_features, in_features)``.

    Examples
    --------
    >>> from accelsim.quant import quantize_rtn
    >>> w = np.arange(-8, 8, dtype=np.float32).reshape(2, 8)
    >>> qt = quantize_rtn(w, 4, group_size=4)
    >>> qt.packed.size, qt.scales.shape, qt.zeros.shape, qt.nbytes   # 16*4/8 + 4*2 + 4*1
    (8, (2, 2), (2, 2), 20)
    >>> bool(np.abs(qt.dequantize() - w).max() <= qt.scales.max() / 2)
    True
    """

    packed: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray | None
    bits: int
    group_size: int | None
    shape: tuple[int, int]
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        problems = []
        bits = check_bits(self.bits)
        shape = tuple(int(s) for s in np.asarray(self.shape).reshape(-1))
        if len(shape) != 2 or min(shape) < 1:
            raise ConfigError.single("must be (out_features, in_features), both >= 1",
                                     key="shape", value=self.shape)
        gs = self.group_size
        if gs is not None and (isinstance(gs, (bool, np.bool_))
                               or not isinstance(gs, (int, np.integer)) or gs < 1):
            raise ConfigError.single("must be a positive integer or None", key="group_size",
                                     value=gs)
        gs = None if gs is None else int(gs)
        out, inf = shape
        ng = n_groups_for(inf, gs)
        packed = np.asarray(self.packed)
        if packed.dtype != np.uint8 or packed.ndim != 1 \
                or packed.size != packed_nbytes(out * inf, bits):
            problems.append(Problem(
                f"must be a flat uint8 array of {packed_nbytes(out * inf, bits)} bytes",
                key="packed", value=f"{packed.dtype} {packed.shape}"))
        scales = np.asarray(self.scales)
        if scales.dtype != np.float16 or scales.shape != (out, ng):
            problems.append(Problem(f"must be float16 of shape {(out, ng)}", key="scales",
                                    value=f"{scales.dtype} {scales.shape}"))
        zeros = self.zeros
        if zeros is not None:
            zeros = np.asarray(zeros)
            if bits == 1:
                problems.append(Problem("must be None for 1-bit sign codes", key="zeros",
                                        value=f"{zeros.dtype} {zeros.shape}"))
            elif zeros.dtype != np.uint8 or zeros.shape != (out, ng):
                problems.append(Problem(f"must be None or uint8 of shape {(out, ng)}",
                                        key="zeros", value=f"{zeros.dtype} {zeros.shape}"))
            elif zeros.size and int(zeros.max()) >= 1 << bits:
                problems.append(Problem(f"zero points must be < 2**bits = {1 << bits}",
                                        key="zeros", value=int(zeros.max())))
        if problems:
            raise ConfigError(problems)
        for name, value in (("packed", packed), ("scales", scales), ("zeros", zeros),
                            ("bits", bits), ("group_size", gs), ("shape", shape)):
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ sizes
    @property
    def n_groups(self) -> int:
        """Groups per row."""
        return n_groups_for(self.shape[1], self.group_size)

    @property
    def effective_group_size(self) -> int:
        """Columns per group (``in_features`` when ``group_size`` is None)."""
        return self.shape[1] if self.group_size is None else self.group_size

    @property
    def symmetric(self) -> bool:
        """True when there are no stored zero points (symmetric or 1-bit)."""
        return self.zeros is None

    @property
    def nbytes(self) -> int:
        """Bytes of ``packed`` + ``scales`` + ``zeros`` (caches are not counted)."""
        z = 0 if self.zeros is None else self.zeros.nbytes
        return int(self.packed.nbytes + self.scales.nbytes + z)

    # ------------------------------------------------------------------ decoding
    def zero_points(self) -> np.ndarray:
        """Effective integer zero point per group as int32 (implicit ones filled in).

        1-bit tensors have no zero point in the ``s * (q - z)`` sense; this returns 0 for them.
        """
        if self.zeros is not None:
            return self.zeros.astype(np.int32)
        fill = 0 if self.bits == 1 else 1 << (self.bits - 1)
        return np.full(self.scales.shape, fill, dtype=np.int32)

    def codes(self) -> np.ndarray:
        """The unpacked codes, ``uint8`` ``(out_features, in_features)`` (cached, read-only).

        The cache is a compute aid for the kernels; it is not part of the storage and not
        counted in :attr:`nbytes`. :meth:`clear_cache` drops it.
        """
        c = self._cache.get("codes")
        if c is None:
            c = unpack_bits(self.packed, self.bits, self.shape[0] * self.shape[1])
            c = c.reshape(self.shape)
            c.setflags(write=False)
            self._cache["codes"] = c
        return c

    def clear_cache(self) -> None:
        """Free the unpacked codes and GEMM operands cached by :meth:`codes`."""
        self._cache.clear()

    def dequantize(self) -> np.ndarray:
        """The represented weights as float32 ``(out_features, in_features)`` (numba kernel
        :func:`accelsim.kernels.dequantize`; not cached).

        Examples
        --------
        >>> from accelsim.quant import quantize_rtn
        >>> quantize_rtn(np.array([[1.0, -3.0, 2.0, -2.0]]), 1).dequantize()
        array([[ 2., -2.,  2., -2.]], dtype=float32)
        """
        return dequantize(self.gemm_operands())

    def gemm_operands(self) -> GemmOperands:
        """Integer operands for :func:`accelsim.kernels.int_gemm` (cached)."""
        ops = self._cache.get("ops")
        if ops is None:
            one_bit = self.bits == 1
            zeros = np.ones(self.scales.shape, np.int32) if one_bit else self.zero_points()
            ops = GemmOperands(codes=self.codes(),
                               scales=np.ascontiguousarray(self.scales, dtype=np.float32),
                               zeros=np.ascontiguousarray(zeros),
                               group_size=self.effective_group_size,
                               weight_mult=2 if one_bit else 1, bits=self.bits)
            self._cache["ops"] = ops
        return ops

    def __repr__(self) -> str:
        kind = "sign" if self.bits == 1 else ("symmetric" if self.zeros is None else "asymmetric")
        return (f"QuantizedTensor(shape={self.shape}, bits={self.bits}, "
                f"group_size={self.group_size}, {kind}, nbytes={self.nbytes})")

"""Numba integer kernels: dense bit packing, integer GEMM and bit-serial GEMM.

Every kernel has a numpy reference in :mod:`accelsim.kernels.reference`. Nothing is compiled
at import; numba compiles on first call and caches to disk (``cache=True``).

Examples
--------
>>> import numpy as np
>>> unpack_bits(pack_bits(np.arange(8), 3), 3, 8)
array([0, 1, 2, 3, 4, 5, 6, 7], dtype=uint8)
"""

from accelsim.kernels.gemm import GemmOperands, bitserial_gemm, group_row_sums, int_gemm
from accelsim.kernels.packing import check_bits, pack_bits, packed_nbytes, unpack_bits
from accelsim.kernels.reference import (bitserial_gemm_reference, int_gemm_reference,
                                        pack_bits_reference, unpack_bits_reference)

__all__ = [
    "pack_bits",
    "unpack_bits",
    "packed_nbytes",
    "check_bits",
    "int_gemm",
    "bitserial_gemm",
    "GemmOperands",
    "group_row_sums",
    "pack_bits_reference",
    "unpack_bits_reference",
    "int_gemm_reference",
    "bitserial_gemm_reference",
]

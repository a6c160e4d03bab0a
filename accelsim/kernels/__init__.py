"""Numba integer kernels: dense bit packing, integer GEMM, bit-serial GEMM, dequantization.

Every kernel has a numpy reference (:mod:`accelsim.kernels.reference`,
:func:`dequantize_reference`). Nothing is compiled at import; numba compiles on first call
and caches to disk (``cache=True``). Large calls run on all numba threads; small ones on one
thread (thread start-up would cost more than the work).

Examples
--------
>>> import numpy as np
>>> unpack_bits(pack_bits(np.arange(8), 3), 3, 8)
array([0, 1, 2, 3, 4, 5, 6, 7], dtype=uint8)
"""

from accelsim.kernels.dequant import dequantize, dequantize_reference
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
    "dequantize",
    "dequantize_reference",
    "bitserial_gemm",
    "GemmOperands",
    "group_row_sums",
    "pack_bits_reference",
    "unpack_bits_reference",
    "int_gemm_reference",
    "bitserial_gemm_reference",
]

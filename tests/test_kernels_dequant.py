"""Dequantization kernel: bit-exact against its numpy reference and the storage formula."""

import numpy as np
import pytest

from accelsim.kernels import GemmOperands, dequantize, dequantize_reference
from accelsim.kernels.dequant import PARALLEL_MIN_ELEMENTS
from accelsim.quant import quantize_rtn


@pytest.mark.parametrize("bits,symmetric,group_size", [
    (1, False, 16), (2, False, 7), (3, True, None), (4, False, 128), (8, True, 5),
])
def test_numba_matches_reference(bits, symmetric, group_size):
    rng = np.random.default_rng(bits)
    for shape in [(3, 37), (1, 1), (257, 1031)]:       # the last one runs on several threads
        w = rng.standard_normal(shape).astype(np.float32)
        ops = quantize_rtn(w, bits, group_size, symmetric).gemm_operands()
        got = dequantize(ops)
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_array_equal(got, dequantize_reference(ops))
    assert 257 * 1031 >= PARALLEL_MIN_ELEMENTS


def test_formula_by_hand():
    codes = np.array([[0, 1, 2, 3, 3], [1, 0, 1, 1, 0]], np.uint8)
    scales = np.array([[0.5, 2.0, 1.0], [1.0, 3.0, 0.25]], np.float32)
    zeros = np.array([[1, 2, 0], [1, 1, 1]], np.int32)
    asym = GemmOperands(codes, scales, zeros, 2, 1, 2)
    np.testing.assert_array_equal(dequantize(asym), [[-0.5, 0.0, 0.0, 2.0, 3.0],
                                                     [0.0, -1.0, 0.0, 0.0, -0.25]])
    sign = GemmOperands(codes[1:], scales[1:], np.ones((1, 3), np.int32), 2, 2, 1)
    np.testing.assert_array_equal(dequantize(sign), [[1.0, -1.0, 3.0, 3.0, -0.25]])

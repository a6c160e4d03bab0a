"""Integer and bit-serial GEMM: bit-exact against the numpy references and each other, and
close to the float product of the dequantized operands."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.errors import ConfigError
from accelsim.kernels.gemm import PARALLEL_MIN_MACS
from accelsim.kernels import (GemmOperands, bitserial_gemm, bitserial_gemm_reference,
                              group_row_sums, int_gemm, int_gemm_reference)
from accelsim.quant import quantize_activations, quantize_rtn

# (tokens, out, in, group_size): remainders in every blocked dimension (4 tokens x 2 rows)
SHAPES = [(9, 7, 37, 8), (4, 2, 16, 16), (1, 1, 5, None), (6, 11, 70, 32), (13, 4, 24, 5)]
FORMATS = [(b, s) for b in range(1, 9) for s in (False, True) if not (b == 1 and s)]


def _case(t, n, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((t, k)).astype(np.float32) * rng.uniform(0.1, 3, (t, 1))
    return w, x.astype(np.float32)


@pytest.mark.parametrize("bits,symmetric", FORMATS)
def test_int_and_bitserial_are_bit_exact(bits, symmetric):
    for t, n, k, gs in SHAPES:
        w, x = _case(t, n, k, seed=bits * 7 + n)
        qt = quantize_rtn(w, bits, gs, symmetric)
        xq, xs = quantize_activations(x)
        y = int_gemm(xq, xs, qt)
        assert y.dtype == np.float32 and y.shape == (t, n)
        np.testing.assert_array_equal(y, int_gemm_reference(xq, xs, qt))
        np.testing.assert_array_equal(bitserial_gemm(xq, xs, qt), y)
        np.testing.assert_array_equal(bitserial_gemm_reference(xq, xs, qt), y)


@pytest.mark.parametrize("bits,symmetric,group_size", [(4, False, 64), (3, True, None),
                                                        (1, False, 100)])
def test_parallel_path_is_bit_exact(bits, symmetric, group_size):
    t, n, k = 17, 131, 520              # odd rows, tokens not a multiple of 4, partial groups
    assert t * n * k >= PARALLEL_MIN_MACS
    w, x = _case(t, n, k, seed=bits)
    qt = quantize_rtn(w, bits, group_size, symmetric)
    xq, xs = quantize_activations(x)
    y = int_gemm(xq, xs, qt)
    np.testing.assert_array_equal(y, int_gemm_reference(xq, xs, qt))
    np.testing.assert_array_equal(bitserial_gemm(xq, xs, qt), y)


@pytest.mark.parametrize("bits,symmetric", FORMATS)
def test_matches_float_product_of_dequantized_operands(bits, symmetric):
    w, x = _case(10, 9, 40, seed=bits)
    qt = quantize_rtn(w, bits, 16, symmetric)
    xq, xs = quantize_activations(x)
    expected = (xq.astype(np.float64) * xs[:, None]) @ qt.dequantize().astype(np.float64).T
    y = int_gemm(xq, xs, qt)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_integer_accumulation_is_exact_at_the_extremes():
    # all codes at their maximum and activations at -128/127: the per-group integer
    # 127*255*group is exact in int32 and so is the result (scales are powers of two).
    k, gs = 256, 128
    codes = np.full((3, k), 255, np.uint8)
    ops = GemmOperands(codes, np.full((3, 2), 0.5, np.float32), np.zeros((3, 2), np.int32),
                       gs, 1, 8)
    xq = np.full((5, k), -128, np.int8)
    xq[1] = 127
    y = int_gemm(xq, np.ones(5, np.float32), ops)
    expected = np.where(np.arange(5)[:, None] == 1, 127, -128) * 255.0 * k * 0.5
    np.testing.assert_array_equal(y, np.broadcast_to(expected, (5, 3)).astype(np.float32))


def test_zero_point_row_sum_trick():
    # w = s * (q - z): the kernel's result must equal x . (q - z) * s computed directly.
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 16, (4, 12)).astype(np.uint8)
    zeros = rng.integers(0, 16, (4, 3)).astype(np.int32)
    scales = np.array([[1, 2, 4]] * 4, np.float32)
    ops = GemmOperands(codes, scales, zeros, 4, 1, 4)
    xq = rng.integers(-127, 128, (3, 12)).astype(np.int8)
    w = (codes.astype(np.int64) - np.repeat(zeros, 4, axis=1)) * np.repeat(scales, 4, axis=1)
    expected = xq.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(int_gemm(xq, np.ones(3, np.float32), ops), expected)


def test_one_bit_sign_codes():
    w = np.array([[1.0, -1.0, 3.0, -3.0], [-2.0, -2.0, 2.0, 2.0]], np.float32)
    qt = quantize_rtn(w, 1, group_size=2)    # +-mean|w| per group of 2
    xq = np.array([[1, 2, 3, 4]], np.int8)
    y = int_gemm(xq, np.ones(1, np.float32), qt)
    # row 0 -> [1, -1, 3, -3]: 1 - 2 + 9 - 12 = -4; row 1 -> [-2, -2, 2, 2]: -2 - 4 + 6 + 8 = 8
    np.testing.assert_array_equal(y, [[-4.0, 8.0]])


def test_group_row_sums():
    xq = np.array([[1, -2, 3, 4, -5], [127, 127, -128, 0, 1]], np.int8)
    np.testing.assert_array_equal(group_row_sums(xq, 2), [[-1, 7, -5], [254, -128, 1]])


def test_empty_token_batch():
    qt = quantize_rtn(np.ones((3, 8), np.float32), 4, 4)
    y = int_gemm(np.zeros((0, 8), np.int8), np.zeros(0, np.float32), qt)
    assert y.shape == (0, 3)


def test_input_validation():
    qt = quantize_rtn(np.ones((3, 8), np.float32), 4, 4)
    with pytest.raises(ConfigError, match="int8"):
        int_gemm(np.zeros((2, 8), np.int16), np.ones(2, np.float32), qt)
    with pytest.raises(ConfigError, match="in_features=8"):
        int_gemm(np.zeros((2, 7), np.int8), np.ones(2, np.float32), qt)
    with pytest.raises(ConfigError, match="one scale per token"):
        int_gemm(np.zeros((2, 8), np.int8), np.ones(3, np.float32), qt)
    with pytest.raises(ConfigError, match="QuantizedTensor"):
        bitserial_gemm(np.zeros((2, 8), np.int8), np.ones(2, np.float32), np.ones((3, 8)))


@pytest.mark.parametrize("bits,mult,ok,too_big", [(8, 1, 32_896, 32_897),
                                                   (1, 2, 5_592_405, 5_592_406)])
def test_group_too_large_for_int32_is_refused(bits, mult, ok, too_big):
    # |d| <= 128 * group * max(2 * (2^bits - 1), 3) must stay below 2^31
    assert 128 * ok * max(2 * (2**bits - 1), 3) < 2**31 <= 128 * too_big * max(2 * (2**bits - 1), 3)
    for group, fails in ((ok, False), (too_big, True)):
        ops = GemmOperands(np.zeros((1, group), np.uint8), np.ones((1, 1), np.float32),
                           np.zeros((1, 1), np.int32), group, mult, bits)
        xq, xs = np.zeros((1, group), np.int8), np.ones(1, np.float32)
        if fails:
            with pytest.raises(ConfigError, match="overflow"):
                int_gemm(xq, xs, ops)
        else:
            assert int_gemm(xq, xs, ops).shape == (1, 1)


@settings(max_examples=40, deadline=None)
@given(t=st.integers(0, 9), n=st.integers(1, 7), k=st.integers(1, 40),
       bits=st.integers(1, 8), symmetric=st.booleans(),
       group_size=st.one_of(st.none(), st.integers(1, 48)), seed=st.integers(0, 2**16))
def test_property_kernels_agree_with_reference(t, n, k, bits, symmetric, group_size, seed):
    w, x = _case(t, n, k, seed)
    qt = quantize_rtn(w, bits, group_size, symmetric)
    xq, xs = quantize_activations(x) if t else (np.zeros((0, k), np.int8),
                                                np.zeros(0, np.float32))
    y = int_gemm(xq, xs, qt)
    assert y.shape == (t, n)
    np.testing.assert_array_equal(y, int_gemm_reference(xq, xs, qt))
    np.testing.assert_array_equal(bitserial_gemm(xq, xs, qt), y)


def test_operand_validation_and_dtype_normalisation():
    codes = np.array([[1, 2, 3]], np.uint8)
    xq = np.array([[1, -1, 2]], np.int8)
    good = GemmOperands(codes, np.ones((1, 2), np.float64), np.zeros((1, 2), np.int64), 2, 1, 2)
    # float64 scales / int64 zeros are converted: 1 - 2 + 6 = 5
    np.testing.assert_array_equal(int_gemm(xq, np.ones(1, np.float32), good), [[5.0]])
    with pytest.raises(ConfigError, match="shape"):
        int_gemm(xq, np.ones(1), good._replace(scales=np.ones((1, 3))))
    with pytest.raises(ConfigError, match="uint8"):
        int_gemm(xq, np.ones(1), good._replace(codes=codes.astype(np.int16)))

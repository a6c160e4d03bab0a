"""RTN weight quantization, QuantizedTensor format and activation quantization."""

import math

import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.kernels import pack_bits, unpack_bits
from accelsim.quant import QuantizedTensor, quantize_activations, quantize_rtn

FORMATS = [(b, s) for b in range(2, 9) for s in (False, True)]


def _per_element(per_group, group_size, in_features):
    gs = in_features if group_size is None else group_size
    return np.repeat(np.asarray(per_group, np.float64), gs, axis=1)[:, :in_features]


@pytest.mark.parametrize("bits,symmetric", FORMATS)
def test_error_at_most_half_a_step(bits, symmetric):
    rng = np.random.default_rng(bits)
    w = (rng.standard_normal((6, 150)) * rng.uniform(0.01, 5, (6, 1))).astype(np.float32)
    w[0, :10] += 4.0                    # an all-positive stretch
    for group_size in (128, 7, None):
        qt = quantize_rtn(w, bits, group_size, symmetric)
        s = _per_element(qt.scales.astype(np.float64), group_size, 150)
        err = np.abs(qt.dequantize().astype(np.float64) - w)
        assert np.all(err <= s / 2 * (1 + 1e-6) + 1e-12), group_size


@pytest.mark.parametrize("bits,symmetric", FORMATS)
def test_codes_decode_by_the_documented_formula(bits, symmetric):
    rng = np.random.default_rng(10 + bits)
    w = rng.standard_normal((3, 20)).astype(np.float32)
    qt = quantize_rtn(w, bits, 8, symmetric)
    q = unpack_bits(qt.packed, bits, 60).reshape(3, 20).astype(np.float64)
    assert q.max() < 2**bits
    z = (np.full((3, 3), 2 ** (bits - 1)) if symmetric else qt.zeros).astype(np.float64)
    expected = (q - _per_element(z, 8, 20)) * _per_element(qt.scales, 8, 20)
    np.testing.assert_array_equal(qt.dequantize(), expected.astype(np.float32))


def test_asymmetric_scale_and_zero_formula():
    # range widened to contain 0: lo = min(w, 0), hi = max(w, 0); s = (hi-lo)/(2^b-1)
    w = np.array([[-1.0, 0.0, 2.0, 0.5], [1.0, 2.0, 3.0, 4.0]], np.float32)
    qt = quantize_rtn(w, 2, group_size=None)
    # 4/3 lies between the float16 values 1.3330078125 and 1.333984375: rounded up
    np.testing.assert_array_equal(qt.scales, np.array([[1.0], [1.333984375]], np.float16))
    np.testing.assert_array_equal(qt.zeros, [[1], [0]])
    np.testing.assert_array_equal(qt.codes()[0], [0, 1, 3, 1])   # 0.5 -> rint(0.5)=0, +1


def test_scale_is_rounded_up_to_float16():
    w = np.array([[0.0, 0.1001]], np.float32)
    qt = quantize_rtn(w, 2, None)
    exact = 0.1001 / 3
    assert float(qt.scales[0, 0]) >= exact
    assert float(np.nextafter(qt.scales[0, 0], np.float16(0))) < exact


def test_symmetric_formula():
    w = np.array([[-3.0, 1.0, 2.0, 0.0]], np.float32)
    qt = quantize_rtn(w, 3, None, symmetric=True)     # s = 3 / (2^2 - 1) = 1
    assert qt.zeros is None
    assert float(qt.scales[0, 0]) == 1.0
    np.testing.assert_array_equal(qt.codes(), [[1, 5, 6, 4]])   # q + 4
    np.testing.assert_array_equal(qt.dequantize(), w)


def test_one_bit_sign_binarisation():
    w = np.array([[1.0, -3.0, 0.0, -0.5, 4.0, 2.0]], np.float32)
    for symmetric in (False, True):
        qt = quantize_rtn(w, 1, group_size=3, symmetric=symmetric)
        assert qt.zeros is None
        np.testing.assert_array_equal(qt.scales, np.float16([[4 / 3, 6.5 / 3]]))
        m = qt.scales.astype(np.float32)
        np.testing.assert_array_equal(qt.dequantize(),
                                      [[m[0, 0], -m[0, 0], m[0, 0], -m[0, 1], m[0, 1], m[0, 1]]])


def test_last_group_shorter_and_group_none():
    w = np.random.default_rng(0).standard_normal((4, 300)).astype(np.float32)
    qt = quantize_rtn(w, 4, 128)
    assert qt.scales.shape == (4, 3) and qt.zeros.shape == (4, 3)
    assert qt.n_groups == 3 and qt.group_size == 128
    # the last group is computed from columns 256..299 only
    tail = quantize_rtn(w[:, 256:], 4, None)
    np.testing.assert_array_equal(qt.scales[:, 2:], tail.scales)
    np.testing.assert_array_equal(qt.codes()[:, 256:], tail.codes())
    one = quantize_rtn(w, 4, None)
    assert one.scales.shape == (4, 1) and one.group_size is None and one.n_groups == 1


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("symmetric", [False, True])
def test_storage_layout_and_nbytes(bits, symmetric):
    out, inf, gs = 5, 37, 16
    w = np.random.default_rng(bits).standard_normal((out, inf)).astype(np.float32)
    qt = quantize_rtn(w, bits, gs, symmetric)
    ng = math.ceil(inf / gs)
    assert qt.packed.dtype == np.uint8 and qt.packed.shape == (math.ceil(out * inf * bits / 8),)
    assert qt.scales.dtype == np.float16 and qt.scales.shape == (out, ng)
    has_zeros = not symmetric and bits > 1
    if has_zeros:
        assert qt.zeros.dtype == np.uint8 and qt.zeros.shape == (out, ng)
    else:
        assert qt.zeros is None
    expected = math.ceil(out * inf * bits / 8) + out * ng * 2 + (out * ng if has_zeros else 0)
    assert qt.nbytes == expected
    # one flat row-major stream, not padded per row
    np.testing.assert_array_equal(qt.packed, pack_bits(qt.codes().reshape(-1), bits))
    assert qt.bits == bits and qt.shape == (out, inf)


def test_all_zero_and_tiny_groups():
    w = np.zeros((2, 8), np.float32)
    w[1, 4:] = 1e-9                      # below float16's smallest subnormal scale
    for bits, sym in [(4, False), (4, True), (1, False)]:
        qt = quantize_rtn(w, bits, 4, sym)
        assert np.all(np.isfinite(qt.dequantize()))
        np.testing.assert_array_equal(qt.dequantize()[0], 0.0)
        assert np.abs(qt.dequantize() - w).max() <= 6e-8


def test_codes_cache_is_read_only_and_clearable():
    qt = quantize_rtn(np.ones((2, 4), np.float32), 3, 2)
    c = qt.codes()
    assert qt.codes() is c and not c.flags.writeable
    qt.clear_cache()
    assert qt.codes() is not c


def test_constructor_validation():
    good = quantize_rtn(np.ones((2, 4), np.float32), 4, 2)
    with pytest.raises(ConfigError) as exc:
        QuantizedTensor(good.packed[:-1], good.scales.astype(np.float32), good.zeros, 4, 2, (2, 4))
    keys = {p.key for p in exc.value.problems}
    assert keys == {"packed", "scales"}
    with pytest.raises(ConfigError, match="zeros"):
        QuantizedTensor(np.zeros(1, np.uint8), np.ones((2, 2), np.float16),
                        np.zeros((2, 2), np.uint8), 1, 2, (2, 4))
    with pytest.raises(ConfigError, match="shape"):
        QuantizedTensor(good.packed, good.scales, good.zeros, 4, 2, (8,))
    with pytest.raises(ConfigError, match="zero points"):
        QuantizedTensor(good.packed, good.scales, np.full((2, 2), 16, np.uint8), 4, 2, (2, 4))


@pytest.mark.parametrize("kwargs,key", [
    (dict(w=np.ones(4), bits=4), "w"),
    (dict(w=np.ones((2, 0)), bits=4), "w"),
    (dict(w=np.array([[1.0, np.nan]]), bits=4), "w"),
    (dict(w=np.ones((2, 2)), bits=0), "bits"),
    (dict(w=np.ones((2, 2)), bits=16), "bits"),
    (dict(w=np.ones((2, 2)), bits=4, group_size=0), "group_size"),
    (dict(w=np.ones((2, 2)), bits=4, group_size=2.5), "group_size"),
    (dict(w=np.full((1, 2), 1e6), bits=2), "w"),     # scale beyond float16
])
def test_quantize_rtn_errors(kwargs, key):
    with pytest.raises(ConfigError) as exc:
        quantize_rtn(**kwargs)
    assert exc.value.key == key


# ----------------------------------------------------------------------------- activations

@pytest.mark.parametrize("bits", range(2, 9))
def test_activation_quantization(bits):
    rng = np.random.default_rng(bits)
    x = rng.standard_normal((7, 33)) * rng.uniform(0.01, 10, (7, 1))
    q, s = quantize_activations(x, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (7,)
    np.testing.assert_allclose(s, np.abs(x).max(axis=1) / qmax, rtol=1e-6)
    assert np.abs(q).max() <= qmax and (np.abs(q).max(axis=1) == qmax).all()
    err = np.abs(q * s[:, None].astype(np.float64) - x)
    assert np.all(err <= s[:, None] / 2 * (1 + 1e-6))


def test_activation_zero_row_and_errors():
    q, s = quantize_activations(np.zeros((2, 3)))
    np.testing.assert_array_equal(q, 0)
    np.testing.assert_array_equal(s, 1.0)
    for bad in (1, 9, 8.0):
        with pytest.raises(ConfigError, match="bits"):
            quantize_activations(np.ones((2, 2)), bad)
    with pytest.raises(ConfigError, match="x"):
        quantize_activations(np.ones(3))
    with pytest.raises(ConfigError, match="finite"):
        quantize_activations(np.array([[np.inf]]))

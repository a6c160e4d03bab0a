"""Dense bit packing: round trips, sizes, the documented bit order, numba vs numpy reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.errors import ConfigError
from accelsim.kernels.packing import PARALLEL_MIN_CODES
from accelsim.kernels import (pack_bits, pack_bits_reference, packed_nbytes, unpack_bits,
                              unpack_bits_reference)

SIZES = [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099]


@pytest.mark.parametrize("bits", range(1, 9))
def test_round_trip_and_length(bits):
    for n in SIZES:
        codes = np.random.default_rng(bits * 1000 + n).integers(0, 1 << bits, n)
        packed = pack_bits(codes, bits)
        assert packed.dtype == np.uint8
        assert packed.shape == (-(-n * bits // 8),), n
        np.testing.assert_array_equal(unpack_bits(packed, bits, n), codes)


@pytest.mark.parametrize("bits", range(1, 9))
def test_numba_matches_numpy_reference(bits):
    # 777 codes run on one thread; PARALLEL_MIN_CODES + 3 (a partial last chunk) on several
    for n in (777, PARALLEL_MIN_CODES + 3):
        codes = np.random.default_rng(bits).integers(0, 1 << bits, n)
        packed = pack_bits(codes, bits)
        np.testing.assert_array_equal(packed, pack_bits_reference(codes, bits))
        np.testing.assert_array_equal(unpack_bits(packed, bits, n),
                                      unpack_bits_reference(packed, bits, n))
        np.testing.assert_array_equal(unpack_bits(packed, bits, n), codes)


@pytest.mark.parametrize("bits", range(1, 9))
def test_documented_bit_order(bits):
    # code i occupies stream bits [i*bits, (i+1)*bits), LSB first; stream bit p is bit p % 8
    # of byte p // 8: the stream read as one little-endian integer is sum(code_i << i*bits).
    codes = np.random.default_rng(100 + bits).integers(0, 1 << bits, 21)
    value = sum(int(c) << (i * bits) for i, c in enumerate(codes))
    nbytes = -(-21 * bits // 8)
    expected = np.frombuffer(value.to_bytes(nbytes, "little"), dtype=np.uint8)
    np.testing.assert_array_equal(pack_bits(codes, bits), expected)


def test_known_small_example():
    # 5 | 0<<3 | 7<<6 | 1<<9 = 965 = 0x03C5
    np.testing.assert_array_equal(pack_bits([5, 0, 7, 1], 3), [0xC5, 0x03])
    np.testing.assert_array_equal(pack_bits([1, 0, 1, 1, 0, 0, 0, 1, 1], 1), [0b10001101, 1])
    np.testing.assert_array_equal(pack_bits([0xA, 0x3], 4), [0x3A])


def test_multidimensional_codes_are_flattened_in_c_order():
    codes = np.arange(12).reshape(3, 4) % 8
    np.testing.assert_array_equal(pack_bits(codes, 3), pack_bits(codes.reshape(-1), 3))


def test_unpack_ignores_trailing_bytes():
    packed = np.concatenate([pack_bits([3, 1, 2], 2), np.array([255, 255], np.uint8)])
    np.testing.assert_array_equal(unpack_bits(packed, 2, 3), [3, 1, 2])


def test_packed_nbytes_formula():
    for n in SIZES:
        for b in range(1, 9):
            assert packed_nbytes(n, b) == (n * b + 7) // 8


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), data=st.data())
def test_round_trip_property(bits, data):
    codes = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=70))
    arr = np.array(codes, dtype=np.int64)
    packed = pack_bits(arr, bits)
    assert packed.size == (len(codes) * bits + 7) // 8
    np.testing.assert_array_equal(unpack_bits(packed, bits, len(codes)), arr)
    np.testing.assert_array_equal(packed, pack_bits_reference(arr, bits))


@pytest.mark.parametrize("bits", [0, 9, -1, 2.0, True, "4"])
def test_bad_bits(bits):
    with pytest.raises(ConfigError, match="bits"):
        pack_bits([0, 1], bits)
    with pytest.raises(ConfigError, match="bits"):
        unpack_bits(np.zeros(4, np.uint8), bits, 2)


@pytest.mark.parametrize("codes,bits", [([4], 2), ([-1], 3), ([256], 8), ([0, 2], 1)])
def test_code_out_of_range(codes, bits):
    with pytest.raises(ConfigError, match="codes must lie in"):
        pack_bits(codes, bits)


def test_non_integer_codes():
    with pytest.raises(ConfigError, match="integer codes"):
        pack_bits(np.array([0.5, 1.0]), 2)


def test_unpack_errors():
    with pytest.raises(ConfigError, match="too short"):
        unpack_bits(np.zeros(2, np.uint8), 3, 6)      # needs 3 bytes
    with pytest.raises(ConfigError, match="uint8"):
        unpack_bits(np.zeros(4, np.int32), 3, 2)
    with pytest.raises(ConfigError, match="count"):
        unpack_bits(np.zeros(4, np.uint8), 3, -1)

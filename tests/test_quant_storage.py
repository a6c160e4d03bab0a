"""Simulator storage bytes of a WeightFormat == QuantizedTensor.nbytes (issue 4, item 8)."""

import math

import numpy as np
import pytest

from accelsim.precision import WeightFormat
from accelsim.quant import gptq, quantize_rtn

SHAPES = [(1, 1), (3, 5), (7, 130), (16, 256), (5, 1000), (33, 127)]
GROUPS = [128, 64, 7, 1, None]


def _formula(out, inf, bits, group_size, symmetric):
    """The storage contract written out independently of both implementations."""
    ng = 1 if group_size is None else math.ceil(inf / group_size)
    codes = math.ceil(out * inf * bits / 8)
    scales = out * ng * 2
    zeros = 0 if (symmetric or bits == 1) else out * ng
    return codes + scales + zeros


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_nbytes_equals_weightformat_storage_bytes(bits, symmetric):
    rng = np.random.default_rng(bits)
    for group_size in GROUPS:
        fmt = WeightFormat(bits, group_size=group_size, symmetric=symmetric)
        for out, inf in SHAPES:
            qt = quantize_rtn(rng.standard_normal((out, inf)), bits, group_size, symmetric)
            expected = _formula(out, inf, bits, group_size, symmetric)
            assert qt.nbytes == fmt.storage_bytes(out, inf) == expected, (group_size, out, inf)


@pytest.mark.parametrize("bits,symmetric", [(3, False), (4, True), (1, False)])
def test_gptq_nbytes_equals_weightformat_storage_bytes(bits, symmetric):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((9, 40))
    x = rng.standard_normal((64, 40))
    qt = gptq(w, x.T @ x, bits, 16, symmetric=symmetric)
    assert qt.nbytes == WeightFormat(bits, group_size=16, symmetric=symmetric).storage_bytes(9, 40)


def test_mixtral_expert_matrix_bytes():
    # (14336 x 4096) at 4 bits, groups of 128, asymmetric: computed without allocating it
    fmt = WeightFormat(4, group_size=128)
    assert fmt.storage_bytes(14336, 4096) == 14336 * 4096 // 2 + 14336 * 32 * 3

"""Dense and native weight packing (accelsim/packing.py)."""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.packing import packed, packing_warning, padded_width, unsupported_widths
from accelsim.precision import BitAllocation


def _alloc():
    return BitAllocation("m", np.array([[3, 3, 1, 2], [5, 2, 3, 1]]),
                         defaults={"attention": 4, "router": 16})


def test_native_pads_each_width_to_the_next_supported_one():
    a = packed(_alloc(), (2, 4, 8))
    assert a.expert_bits.tolist() == [[4, 4, 2, 2], [8, 2, 4, 2]]
    assert a.defaults["attention"] == 4 and a.defaults["router"] == 16
    assert a.meta["packing"] == "native"
    assert a.meta["padded_from"] == pytest.approx(_alloc().average_expert_bits())
    # an 8-bit-only array: every quantized width becomes 8, attention too
    b = packed(_alloc(), (8,))
    assert set(np.unique(b.expert_bits)) == {8} and b.defaults["attention"] == 8


def test_dense_and_fully_supported_allocations_are_unchanged():
    a = _alloc()
    assert packed(a, (2, 4, 8), "dense") is a
    assert packed(a, range(1, 17)) is a


def test_widths_above_the_widest_supported_stay():
    assert padded_width(12, (2, 4, 8)) == 12
    assert padded_width(16, (2, 4, 8)) == 16


def test_unsupported_widths_and_warning():
    assert unsupported_widths(_alloc(), (2, 4, 8)) == [1, 3, 5]
    w = packing_warning(_alloc(), (2, 4, 8), "northpole", "native")
    assert "1->2" in w and "3->4" in w and "northpole" in w
    assert "--packing native" in packing_warning(_alloc(), (2, 4, 8), "northpole", "dense")
    assert packing_warning(_alloc(), range(1, 17), "loom", "native") is None


def test_unknown_packing_is_a_config_error():
    with pytest.raises(ConfigError):
        packed(_alloc(), (4,), "pow3")


def test_native_bytes_equal_the_padded_storage_formula():
    from accelsim.workload import load_workload
    m = load_workload("mixtral-8x7b")
    bits = np.full((m.num_moe_layers, m.moe.num_experts), 3)
    a = BitAllocation.uniform(m, 3, others=4).with_expert_bits(bits)
    # 3-bit codes in 4-bit containers: per expert matrix o*i/2 bytes of codes, plus an fp16
    # scale and a uint8 zero per 128 weights; every expert matrix is 14336 x 4096 or its
    # transpose (4096 / 128 = 32 and 14336 / 128 = 112 groups per row)
    d, f = 4096, 14336
    per_matrix_native = d * f // 2 + 3 * f * (d // 128)
    per_matrix_w2 = d * f // 2 + 3 * d * (f // 128)
    gain = (a.weight_bytes(m) - packed(a, (2, 4, 8)).weight_bytes(m))
    dense_codes = 3 * d * f // 8
    expected = -m.num_moe_layers * m.moe.num_experts * (
        2 * (per_matrix_native - (dense_codes + 3 * f * (d // 128)))
        + (per_matrix_w2 - (dense_codes + 3 * d * (f // 128))))
    assert gain == expected

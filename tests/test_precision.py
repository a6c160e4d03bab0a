"""WeightFormat storage and BitAllocation: expected values from the storage formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accelsim.errors import ConfigError
from accelsim.precision import BitAllocation, WeightFormat
from accelsim.workload import load_workload


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("group", [None, 32, 128, 100])
@pytest.mark.parametrize("symmetric", [False, True])
def test_storage_formula(bits, group, symmetric):
    out_f, in_f = 48, 300
    f = WeightFormat(bits, group_size=group, symmetric=symmetric)
    if bits == 16:
        expected = out_f * in_f * 2
    else:
        groups_per_row = 1 if group is None else -(-in_f // group)
        codes = -(-(out_f * in_f * bits) // 8)
        scales = out_f * groups_per_row * 2
        zeros = 0 if (symmetric or bits == 1) else out_f * groups_per_row
        expected = codes + scales + zeros
    assert f.storage_bytes(out_f, in_f) == expected


def test_pow2_packing_rounds_container():
    assert WeightFormat(3, group_size=None, symmetric=True, packing="pow2").storage_bytes(
        8, 64) == 8 * 64 * 4 // 8 + 8 * 2
    assert WeightFormat(3, group_size=None, symmetric=True).storage_bytes(8, 64) == \
        8 * 64 * 3 // 8 + 8 * 2


def test_bits_per_weight_overhead():
    # 4-bit, group 128, fp16 scale + uint8 zero: 4 + 24/128 bits per weight
    assert WeightFormat(4, 128).bits_per_weight(4096, 4096) == pytest.approx(4 + 24 / 128)


@pytest.mark.parametrize("bad", [0, 17, -1, 2.5, "4"])
def test_weight_format_rejects_bad_bits(bad):
    with pytest.raises(ConfigError):
        WeightFormat(bad)


@pytest.fixture(scope="module")
def mixtral():
    return load_workload("mixtral-8x7b")


def test_uniform_allocation_bytes_mixtral(mixtral):
    d, f, L, E, V = 4096, 14336, 32, 8, 32000
    a = BitAllocation.uniform(mixtral, 4)
    w4 = WeightFormat(4)
    attn = 2 * w4.storage_bytes(4096, 4096) + 2 * w4.storage_bytes(1024, 4096)
    expert = 2 * w4.storage_bytes(f, d) + w4.storage_bytes(d, f)
    router = E * d * 2
    norms = 2 * d * 2
    per_layer = attn + E * expert + router + norms
    expected = L * per_layer + 2 * V * d * 2 + d * 2
    assert a.weight_bytes(mixtral) == expected
    assert a.average_expert_bits() == 4.0


def test_mixed_expert_bits_bytes_mixtral(mixtral):
    # every expert at its own bits: the closed form of the uniform case, expert by expert
    bits = np.random.default_rng(4).choice([1, 2, 3, 4, 8, 16], size=(32, 8))
    a = BitAllocation.uniform(mixtral, 4).with_expert_bits(bits)
    d, f, V = 4096, 14336, 32000

    def expert(b):
        w = WeightFormat(int(b))
        return 2 * w.storage_bytes(f, d) + w.storage_bytes(d, f)

    w4 = WeightFormat(4)
    attn = 2 * w4.storage_bytes(4096, 4096) + 2 * w4.storage_bytes(1024, 4096)
    fixed = 32 * (attn + 8 * d * 2 + 2 * d * 2) + 2 * V * d * 2 + d * 2
    assert a.weight_bytes(mixtral) == fixed + sum(expert(b) for b in bits.ravel())


def test_fp16_bytes_are_two_per_parameter(mixtral):
    a = BitAllocation.uniform(mixtral, 16)
    assert a.weight_bytes(mixtral) == 2 * mixtral.param_counts()["total_params"]


def test_mixed_allocation_average_and_histogram(mixtral):
    bits = np.tile(np.array([3, 3, 3, 2, 2, 2, 1, 1]), (32, 1))
    a = BitAllocation("mixtral-8x7b", bits)
    assert a.average_expert_bits() == pytest.approx(17 / 8)
    assert a.histogram() == {1: [2] * 32, 2: [3] * 32, 3: [3] * 32}
    t = mixtral.tensor("L5.E6.w2")
    assert a.bits_for(mixtral, t) == 1
    assert a.tensor_bytes(mixtral, t) == WeightFormat(1).storage_bytes(4096, 14336)


def test_allocation_is_frozen(mixtral):
    a = BitAllocation.uniform(mixtral, 4)
    with pytest.raises(ValueError):
        a.expert_bits[0, 0] = 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_roundtrip(tmp_path, mixtral, suffix):
    rng = np.random.default_rng(0)
    bits = rng.integers(1, 5, size=(32, 8))
    a = BitAllocation("mixtral-8x7b", bits, defaults={"attention": 4}, activation_bits=8,
                      kv_bits=8, group_size=64, method="test", meta={"seed": 0})
    p = tmp_path / f"alloc{suffix}"
    a.save(p, mixtral)
    b = BitAllocation.load(p, mixtral)
    assert np.array_equal(b.expert_bits, bits)
    assert b.defaults["attention"] == 4 and b.defaults["router"] == 16
    assert (b.activation_bits, b.kv_bits, b.group_size, b.method) == (8, 8, 64, "test")
    assert b.weight_bytes(mixtral) == a.weight_bytes(mixtral)


def test_load_rejects_wrong_shape(tmp_path, mixtral):
    p = tmp_path / "a.yaml"
    BitAllocation("mixtral-8x7b", np.full((4, 8), 3)).save(p)
    with pytest.raises(ConfigError) as e:
        BitAllocation.load(p, mixtral)
    assert "expert_bits" in str(e.value) and "32 rows" in str(e.value)


def test_load_rejects_wrong_model_and_bits(tmp_path, mixtral):
    p = tmp_path / "a.yaml"
    p.write_text("model: other\nexpert_bits: [[3, 33]]\n")
    with pytest.raises(ConfigError) as e:
        BitAllocation.load(p, mixtral)
    assert "expert_bits[0][1]" in str(e.value) and "must be <= 16" in str(e.value)


def test_unknown_role_rejected():
    with pytest.raises(ConfigError):
        BitAllocation("m", np.ones((1, 2)), defaults={"atention": 4})


def test_kv_bytes_formula(mixtral):
    # GQA: 2 (K and V) x kv_heads x head_dim x bits / 8
    assert mixtral.kv_bytes_per_token_per_layer(16) == 2 * 8 * 128 * 2
    assert math.isclose(mixtral.kv_bytes_per_token_per_layer(4), 2 * 8 * 128 / 2)

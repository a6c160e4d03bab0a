"""Checkpoint reading: every family's real tensor names, bf16, shards, laziness, errors.

The tests write their own small checkpoints: F32/F16 with ``safetensors.numpy.save_file``, BF16
with a hand-written file following the safetensors format (8-byte little-endian header length,
JSON header, raw little-endian data), independently of the reader under test.
"""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

import accelsim.quant.checkpoint as ckmod
from accelsim.errors import CheckpointError, ConfigError
from accelsim.quant import Expert, FAMILIES, moe_forward, open_checkpoint

D, F, E = 8, 6, 4

SWIGLU_HF = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
# family -> (router name, expert name template (e, proj), projection map, shared template)
NAMES = {
    "mixtral": ("model.layers.{i}.block_sparse_moe.gate.weight",
                "model.layers.{i}.block_sparse_moe.experts.{e}.{p}.weight",
                {"w1": "w1", "w3": "w3", "w2": "w2"}, None),
    "qwen2_moe": ("model.layers.{i}.mlp.gate.weight", "model.layers.{i}.mlp.experts.{e}.{p}.weight",
                  SWIGLU_HF, "model.layers.{i}.mlp.shared_expert.{p}.weight"),
    "olmoe": ("model.layers.{i}.mlp.gate.weight", "model.layers.{i}.mlp.experts.{e}.{p}.weight",
              SWIGLU_HF, None),
    "deepseek_v2": ("model.layers.{i}.mlp.gate.weight",
                    "model.layers.{i}.mlp.experts.{e}.{p}.weight", SWIGLU_HF,
                    "model.layers.{i}.mlp.shared_experts.{p}.weight"),
    "deepseek_v3": ("model.layers.{i}.mlp.gate.weight",
                    "model.layers.{i}.mlp.experts.{e}.{p}.weight", SWIGLU_HF,
                    "model.layers.{i}.mlp.shared_experts.{p}.weight"),
}


def _value(layer, e, canon, shape):
    """Distinct, exactly representable (even in bf16) values for each tensor."""
    base = {"w1": 1, "w3": 2, "w2": 3, "wi": 1, "wo": 3, "router": 4, "shared": 5}[canon]
    return (np.arange(np.prod(shape)).reshape(shape) % 7 - 3 + 8 * base + 64 * layer + e) / 4


def _decoder_tensors(family, layers=(1, 3), dtype=np.float32, dense_layers=(0,)):
    router, expert, proj, shared = NAMES[family]
    t = {}
    for i in layers:
        t[router.format(i=i)] = _value(i, 0, "router", (E, D)).astype(dtype)
        for e in range(E):
            for c, p in proj.items():
                shape = (D, F) if c == "w2" else (F, D)
                t[expert.format(i=i, e=e, p=p)] = _value(i, e, c, shape).astype(dtype)
        if shared:
            for c, p in proj.items():
                shape = (D, 2 * F) if c == "w2" else (2 * F, D)
                t[shared.format(i=i, p=p)] = _value(i, 9, "shared", shape).astype(dtype)
    for i in dense_layers:     # a dense FFN layer (DeepSeek's first layers): no router
        t[f"model.layers.{i}.mlp.gate_proj.weight"] = np.ones((F, D), dtype)
    t["model.embed_tokens.weight"] = np.ones((10, D), dtype)
    return t


def _switch_tensors():
    t = {}
    for stack, sub, blocks in (("encoder", 1, (1, 3)), ("decoder", 2, (1,))):
        for i in blocks:
            pre = f"{stack}.block.{i}.layer.{sub}.mlp"
            layer = i + (100 if stack == "decoder" else 0)
            t[f"{pre}.router.classifier.weight"] = _value(layer, 0, "router", (E, D)).astype(
                np.float32)
            for e in range(E):
                t[f"{pre}.experts.expert_{e}.wi.weight"] = _value(layer, e, "wi", (F, D)).astype(
                    np.float32)
                t[f"{pre}.experts.expert_{e}.wo.weight"] = _value(layer, e, "wo", (D, F)).astype(
                    np.float32)
        t[f"{stack}.block.0.layer.{sub}.DenseReluDense.wi.weight"] = np.ones((F, D), np.float32)
    return t


def write_bf16_safetensors(path, tensors):
    """Hand-written safetensors file with BF16 tensors (truncated float32 bits)."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        bits = (np.ascontiguousarray(arr, np.float32).view(np.uint32) >> 16).astype("<u2")
        data = bits.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


@pytest.mark.parametrize("family", sorted(NAMES))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_decoder_families(tmp_path, family, dtype):
    path = tmp_path / "model.safetensors"
    save_file(_decoder_tensors(family, dtype=dtype), str(path))
    ck = open_checkpoint(path, family)
    assert ck.moe_layers() == [1, 3]
    assert ck.num_experts(3) == E and ck.ffn_kind == "swiglu"
    r = ck.router(3)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r, _value(3, 0, "router", (E, D)))
    ex = ck.expert(1, 2)
    assert list(ex) == ["w1", "w3", "w2"]
    for c in ex:
        shape = (D, F) if c == "w2" else (F, D)
        np.testing.assert_array_equal(ex[c], _value(1, 2, c, shape))
    shared = ck.shared_expert(1)
    if NAMES[family][3] is None:
        assert shared is None
    else:
        assert shared["w2"].shape == (D, 2 * F) and shared["w1"].shape == (2 * F, D)


def test_switch_encoder_and_decoder(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_switch_tensors(), str(path))
    ck = open_checkpoint(path, "switch")
    assert ck.moe_layers() == ["encoder.1", "encoder.3", "decoder.1"]
    assert ck.ffn_kind == "relu"
    ex = ck.expert("decoder.1", 3)
    assert list(ex) == ["wi", "wo"]
    np.testing.assert_array_equal(ex["wo"], _value(101, 3, "wo", (D, F)))
    np.testing.assert_array_equal(ck.router("encoder.3"), _value(3, 0, "router", (E, D)))
    assert ck.shared_expert("encoder.1") is None


def test_bf16_is_converted_exactly(tmp_path):
    tensors = _decoder_tensors("mixtral", layers=(0,), dense_layers=())
    # add values whose low mantissa bits are lost in bf16: the reader must truncate like bf16
    name = "model.layers.0.block_sparse_moe.experts.1.w2.weight"
    tensors[name] = (tensors[name] + np.float32(1e-5)).astype(np.float32)
    path = tmp_path / "bf16.safetensors"
    write_bf16_safetensors(path, tensors)
    ck = open_checkpoint(path, "mixtral")
    expected = ((tensors[name].view(np.uint32) >> 16) << 16).view(np.float32)
    got = ck.expert(0, 1)["w2"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ck.router(0), _value(0, 0, "router", (E, D)))   # exact in bf16


def test_sharded_with_index_directory_and_file_list(tmp_path):
    t = _decoder_tensors("olmoe", layers=(0, 1, 2), dense_layers=())
    names = sorted(t)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for fname, keys in shards.items():
        save_file({k: t[k] for k in keys}, str(tmp_path / fname))
    index = {"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    for src in (tmp_path, tmp_path / "model.safetensors.index.json",
                [tmp_path / f for f in shards]):
        ck = open_checkpoint(src, "olmoe")
        assert ck.moe_layers() == [0, 1, 2]
        np.testing.assert_array_equal(ck.expert(2, 3)["w3"], _value(2, 3, "w3", (F, D)))


def test_directory_without_index(tmp_path):
    t = _decoder_tensors("mixtral", layers=(0,), dense_layers=())
    keys = sorted(t)
    save_file({k: t[k] for k in keys[:5]}, str(tmp_path / "a.safetensors"))
    save_file({k: t[k] for k in keys[5:]}, str(tmp_path / "b.safetensors"))
    assert open_checkpoint(tmp_path, "mixtral").num_experts(0) == E


def test_reads_one_tensor_at_a_time(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_file(_decoder_tensors("mixtral"), str(path))
    reads = []
    real = ckmod._read
    monkeypatch.setattr(ckmod, "_read", lambda name, info: reads.append(name) or real(name, info))
    ck = open_checkpoint(path, "mixtral")
    assert reads == []                       # opening reads headers only
    ck.num_experts(1)
    assert reads == []
    ck.router(1)
    assert reads == ["model.layers.1.block_sparse_moe.gate.weight"]
    ck.expert(3, 0)
    assert len(reads) == 4 and all(".experts.0." in n for n in reads[1:])


def test_loaded_layer_runs(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_decoder_tensors("qwen2_moe"), str(path))
    ck = open_checkpoint(path, "qwen2_moe")
    layer = ck.moe_layer(1, top_k=2, normalize_topk=False)
    assert layer.n_experts == E and len(layer.shared_experts) == 1
    assert isinstance(ck.load_expert(1, 0), Expert)
    x = np.random.default_rng(0).standard_normal((3, D)) * 0.01
    assert moe_forward(layer, x).y.shape == (3, D)


# ----------------------------------------------------------------------------- errors

def _problem(exc_info):
    p = exc_info.value.problems[0]
    return p.file, p.key, p.reason


def test_missing_expert_tensor(tmp_path):
    t = _decoder_tensors("mixtral", layers=(0,), dense_layers=())
    missing = "model.layers.0.block_sparse_moe.experts.2.w3.weight"
    del t[missing]
    path = tmp_path / "m.safetensors"
    save_file(t, str(path))
    ck = open_checkpoint(path, "mixtral")
    ck.expert(0, 1)
    with pytest.raises(CheckpointError) as exc:
        ck.expert(0, 2)
    file, key, reason = _problem(exc)
    assert file == str(path) and key == missing and "missing tensor" in reason
    assert str(path) in str(exc.value) and missing in str(exc.value)


def test_wrong_shape(tmp_path):
    t = _decoder_tensors("deepseek_v3", layers=(0,), dense_layers=())
    bad = "model.layers.0.mlp.experts.1.down_proj.weight"
    t[bad] = np.ones((F, D), np.float32)          # transposed
    path = tmp_path / "m.safetensors"
    save_file(t, str(path))
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(path, "deepseek_v3").expert(0, 1)
    file, key, reason = _problem(exc)
    assert file == str(path) and key == bad and "wrong shape" in reason
    assert exc.value.problems[0].value == (F, D)


def test_wrong_dtype(tmp_path):
    t = _decoder_tensors("olmoe", layers=(0,), dense_layers=())
    bad = "model.layers.0.mlp.experts.0.gate_proj.weight"
    t[bad] = np.ones((F, D), np.int8)
    path = tmp_path / "m.safetensors"
    save_file(t, str(path))
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(path, "olmoe").expert(0, 0)
    file, key, reason = _problem(exc)
    assert (file, key) == (str(path), bad) and "dtype" in reason
    assert exc.value.problems[0].value == "I8"


def test_router_not_2d(tmp_path):
    t = _decoder_tensors("mixtral", layers=(0,), dense_layers=())
    t["model.layers.0.block_sparse_moe.gate.weight"] = np.ones(E * D, np.float32)
    path = tmp_path / "m.safetensors"
    save_file(t, str(path))
    with pytest.raises(CheckpointError, match="2-D"):
        open_checkpoint(path, "mixtral").num_experts(0)


def test_wrong_family_unknown_family_and_bad_indices(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_decoder_tensors("mixtral", layers=(0,)), str(path))
    with pytest.raises(CheckpointError, match="wrong family"):
        open_checkpoint(path, "switch")
    with pytest.raises(ConfigError, match="did you mean 'mixtral'"):
        open_checkpoint(path, "mixtrall")
    ck = open_checkpoint(path, "mixtral")
    with pytest.raises(ConfigError) as exc:
        ck.router(5)
    assert exc.value.key == "layer"
    with pytest.raises(ConfigError) as exc:
        ck.expert(0, E)
    assert exc.value.key == "e"


def test_file_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        open_checkpoint(tmp_path / "nope.safetensors", "mixtral")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 20)
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(junk, "mixtral")
    assert exc.value.file == str(junk)
    t = _decoder_tensors("mixtral", layers=(0,), dense_layers=())
    save_file(t, str(tmp_path / "a.safetensors"))
    save_file({"model.embed_tokens.weight": np.ones(2, np.float32)},
              str(tmp_path / "b.safetensors"))
    with pytest.raises(CheckpointError, match="also present"):
        open_checkpoint([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], "mixtral")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no .safetensors"):
        open_checkpoint(empty, "mixtral")


def test_truncated_file(tmp_path):
    path = tmp_path / "t.safetensors"
    write_bf16_safetensors(path, _decoder_tensors("mixtral", layers=(0,), dense_layers=()))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(path, "mixtral")
    file, key, reason = _problem(exc)
    assert file == str(path) and key == "model.embed_tokens.weight" and "truncated" in reason


def test_every_family_is_tested():
    assert set(FAMILIES) == set(NAMES) | {"switch"}

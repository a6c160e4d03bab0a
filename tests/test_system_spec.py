"""System YAMLs: presets load and cite sources; bad input is one line per problem; the
collective costs equal closed forms derived by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.config import read_mapping
from accelsim.errors import ConfigError
from accelsim.hw import load_hw
from accelsim.presets import list_presets
from accelsim.system import System, load_system, system_from_dict, system_schema
from accelsim.system import collectives as C
from accelsim.system.spec import Link

REQUIRED = {"northpole-16", "northpole-rack", "h100-8", "spyre-8", "h100-4x8"}


def test_required_presets_and_an_edge_system():
    names = set(list_presets("system"))
    assert REQUIRED <= names
    assert any(load_system(n).hw.name in ("edge-tpu", "ethos-u65", "gemmini")
               for n in names - REQUIRED)


@pytest.mark.parametrize("name", sorted(list_presets("system")))
def test_presets_load_cite_and_validate_against_the_schema(name):
    import jsonschema
    data = read_mapping(list_presets("system")[name])
    s = load_system(name)
    assert s.num_devices == data.get("devices_per_node", 1) * data.get("nodes", 1)
    assert s.sources, "every preset cites its sources"
    assert s.uncertain, "every preset marks its estimates"
    jsonschema.validate(data, system_schema())


def test_published_link_figures():
    # NVLink 4: 900 GB/s bidirectional per GPU -> 450 GB/s per direction
    assert load_system("h100-8").links.intra_node.bandwidth_bytes_per_s == 450e9
    s = load_system("h100-4x8")
    assert (s.num_devices, s.nodes) == (32, 4)
    assert s.links.inter_node.bandwidth_bytes_per_s == 400e9 / 8     # NDR 400 Gb/s
    rack = load_system("northpole-rack")
    assert rack.num_devices == 288 and rack.links.inter_node.bandwidth_bytes_per_s == 25e9
    # PCIe Gen5 x16: 32 GT/s x 16 x 128/130 / 8 = 63.0 GB/s
    assert load_system("spyre-8").links.intra_node.bandwidth_bytes_per_s == pytest.approx(
        32e9 * 16 * 128 / 130 / 8, rel=1e-3)


def test_a_chip_is_a_system_of_one():
    s = load_system("h100")
    assert s.num_devices == 1 and s.hw == load_hw("h100")
    assert System.single(load_hw("gemmini")).num_devices == 1
    assert load_system(load_hw("spyre")).hw.name == "spyre"


def test_first_n_devices():
    s = load_system("h100-4x8").first(12)
    assert s.num_devices == 12 and s.nodes == 2
    with pytest.raises(ConfigError, match="devices: must be an integer in 1..32"):
        load_system("h100-4x8").first(33)


def _base(**extra):
    d = {"name": "t", "device": "gemmini", "devices_per_node": 4,
         "links": {"intra_node": {"bandwidth": "10 GB/s", "latency": "1 us"}}}
    d.update(extra)
    return d


def _problems(data, file="sys.yaml"):
    with pytest.raises(ConfigError) as e:
        system_from_dict(data, file=file)
    return [str(p) for p in e.value.problems]


def test_unknown_keys_with_did_you_mean():
    d = _base()
    d["links"]["intra_node"]["bandwith"] = "1 GB/s"
    lines = _problems(d)
    assert "sys.yaml: links.intra_node.bandwith: unknown key (did you mean 'bandwidth'?)" in lines


def test_quantities_need_units_and_ranges():
    d = _base()
    d["links"]["intra_node"]["bandwidth"] = "-3 GB/s"
    d["links"]["intra_node"]["latency"] = "5"
    d["links"]["intra_node"]["topology"] = "torus"
    lines = _problems(d)
    assert len(lines) == 3
    assert all(line.startswith("sys.yaml: links.intra_node.") for line in lines)
    assert any("topology: must be one of" in line for line in lines)


def test_host_power_is_a_power_per_node():
    from accelsim.system import load_system
    assert system_from_dict(_base(host_power="1.5 kW")).host_power_w == 1500.0
    assert system_from_dict(_base()).host_power_w == 0.0        # not counted by default
    assert load_system("h100-8").first(1).host_power_w == 4600.0   # kept by first()
    for bad in ("-5 W", "5 GB", "lots"):
        lines = _problems(_base(host_power=bad))
        assert len(lines) == 1 and lines[0].startswith("sys.yaml: host_power: ")


def test_missing_links_and_bad_devices():
    assert _problems({"name": "t", "device": "gemmini", "nodes": 2}) == [
        "sys.yaml: links.inter_node: nodes: 2 needs this link level"]
    lines = _problems(_base(device="gemmnii"))
    assert len(lines) == 1 and lines[0].startswith("sys.yaml: device: unknown accelerator "
                                                   "preset 'gemmnii' (did you mean 'gemmini'?)")
    inline = read_mapping(list_presets("hw")["gemmini"])
    inline["clokc"] = inline.pop("clock")
    lines = _problems(_base(device=inline))
    assert "sys.yaml: device.clokc: unknown key (did you mean 'clock'?)" in lines
    assert _problems(_base(uncertain=["links.intra_node.nope"])) == [
        "sys.yaml: uncertain[0]: names no key of this file (got 'links.intra_node.nope')"]


def test_inline_device_and_relative_path(tmp_path):
    inline = read_mapping(list_presets("hw")["gemmini"])
    assert system_from_dict(_base(device=inline)).hw == load_hw("gemmini")
    (tmp_path / "chip.yaml").write_text(list_presets("hw")["gemmini"].read_text())
    f = tmp_path / "sys.yaml"
    import yaml
    f.write_text(yaml.safe_dump(_base(device="chip.yaml")))
    assert load_system(str(f)).hw == load_hw("gemmini")


def test_cli_system(run_cli, tmp_path):
    rc, out, err = run_cli("system", "list", "--format", "json")
    assert rc == 0 and REQUIRED <= {r["name"] for r in json.loads(out)}
    rc, out, err = run_cli("system", "show", "h100-4x8", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["num_devices"] == 32
    assert d["links"]["inter_node"]["bandwidth_bytes_per_s"] == 50e9
    rc, out, err = run_cli("system", "show", "northpole-rack")
    assert rc == 0 and "200 GbE" in out and "inter_node" in out
    rc, out, err = run_cli("system", "schema")
    assert rc == 0 and json.loads(out)["title"] == "accelsim system"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndevice: gemmini\nnodse: 2\n")
    rc, out, err = run_cli("system", "show", str(bad))
    assert rc == 2 and out == ""
    assert err.strip() == (f"accelsim: error: {bad}: nodse: unknown key (did you mean "
                           "'nodes'?)")


# ----------------------------------------------------------------------------- collectives
# 4 devices, B = 1 GB per device, 100 GB/s per direction, 1 us per message.

B = 1e9
BW = 100e9
A = 1e-6


def _link(topology, bw=BW, a=A, e=0.0, per="device"):
    return Link.make(bw, a, e, topology, per)


def test_ring_collectives_by_hand():
    ring = _link("ring", e=1e-11)
    # all-reduce: 2(n-1) = 6 messages; each device sends 2 x 3/4 x 1 GB = 1.5 GB
    c = C.flat_cost("all_reduce", 4, B, ring)
    assert c.time_s == pytest.approx(6e-6 + 1.5e9 / 100e9)
    assert c.bytes == pytest.approx(4 * 1.5e9)
    assert c.energy_j == pytest.approx(6e9 * 1e-11)
    rs = C.flat_cost("reduce_scatter", 4, B, ring)
    ag = C.flat_cost("all_gather", 4, B, ring)
    assert rs.time_s == pytest.approx(3e-6 + 0.75e9 / 100e9) == ag.time_s
    assert (rs + ag).time_s == pytest.approx(c.time_s)
    # chain embeds the ring (bidirectional links)
    assert C.flat_cost("all_reduce", 4, B, _link("chain")).time_s == pytest.approx(c.time_s)


def test_switch_collectives_by_hand():
    sw = _link("switch")
    # recursive halving/doubling: 2 log2(4) = 4 messages, same 1.5 GB per device
    assert C.flat_cost("all_reduce", 4, B, sw).time_s == pytest.approx(4e-6 + 0.015)
    assert C.flat_cost("reduce_scatter", 4, B, sw).time_s == pytest.approx(2e-6 + 0.0075)
    # all-to-all: each device sends 3 x 0.25 GB through its port, one message step
    a2a = C.flat_cost("all_to_all", 4, B, sw)
    assert a2a.time_s == pytest.approx(1e-6 + 0.75e9 / 100e9)
    assert a2a.bytes == pytest.approx(4 * 0.75e9)
    assert C.flat_cost("all_reduce", 1, B, sw).time_s == 0.0
    assert C.flat_cost("p2p", 2, B, sw).time_s == pytest.approx(
        1e-6 + 0.01)


def test_alltoall_on_ring_and_chain_by_hand():
    # ring of 4, 0.25 GB to each other device: distances 1, 2 (split), 3 = 1 back;
    # each directed link carries 0.25 + 0.25/2 + 0.25/2 ... = sum_d min(d, 4-d) B/(2n) = 0.5 GB
    r = C.flat_cost("all_to_all", 4, B, _link("ring"))
    assert r.time_s == pytest.approx(3e-6 + 0.5e9 / 100e9)
    assert r.bytes == pytest.approx(4 * (1 + 2 + 1) * 0.25e9)   # hop-bytes
    # chain of 4: the middle link carries 2 x 2 pairs x 0.25 GB = 1 GB per direction
    ch = C.flat_cost("all_to_all", 4, B, _link("chain"))
    assert ch.time_s == pytest.approx(3e-6 + 1e9 / 100e9)


def _two_by_two(per="device"):
    from accelsim.system.spec import Links
    return System(name="2x2", hw=load_hw("gemmini"), devices_per_node=2, nodes=2,
                  links=Links(intra_node=_link("switch"),
                              inter_node=_link("switch", bw=10e9, a=5e-6, per=per)))


def test_hierarchical_all_reduce_by_hand():
    s = _two_by_two()
    c = C.all_reduce(s, range(4), B)
    # reduce-scatter in a node (m=2): 1 us + 0.5 GB / 100 GB/s; all-reduce of 0.5 GB across
    # k=2 nodes: 2 x 5 us + 2 x 1/2 x 0.5 GB / 10 GB/s; all-gather in the node as the RS
    rs = 1e-6 + 0.5e9 / 100e9
    across = 10e-6 + 0.5e9 / 10e9
    assert c.time_s == pytest.approx(2 * rs + across)
    assert c.bytes_by_level["inter_node"] == pytest.approx(2 * (2 * 1 * 0.5e9))
    assert c.bytes_by_level["intra_node"] == pytest.approx(2 * 2 * (2 * 0.5 * 1e9))
    # a node port shared by the node's 2 devices halves the bandwidth each sees
    s2 = _two_by_two(per="node")
    assert C.all_reduce(s2, range(4), B).time_s == pytest.approx(
        2 * rs + 10e-6 + 0.5e9 / 5e9)
    # p2p: inside a node the fast link, across nodes the slow one
    assert C.point_to_point(s, 0, 1, B).time_s == pytest.approx(1e-6 + 0.01)
    assert C.point_to_point(s, 1, 2, B).time_s == pytest.approx(5e-6 + 0.1)
    # all-to-all with a traffic matrix: device 0 sends 1 GB to 1 (same node) and 1 GB to 2
    m = np.zeros((4, 4))
    m[0, 1] = m[0, 2] = 1e9
    a2a = C.all_to_all(s, range(4), m)
    assert a2a.bytes_by_level == pytest.approx({"intra_node": 1e9, "inter_node": 1e9})
    assert a2a.time_s == pytest.approx(max(1e-6 + 0.01, 5e-6 + 0.1))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 16), st.floats(1.0, 1e12))
def test_collective_bytes_equal_the_closed_forms(n, nbytes):
    ring, sw = _link("ring"), _link("switch")
    # ring / switch all-reduce: every device sends 2 (n-1)/n B
    for link in (ring, sw):
        assert C.flat_cost("all_reduce", n, nbytes, link).bytes == pytest.approx(
            2 * (n - 1) * nbytes)
        assert C.flat_cost("reduce_scatter", n, nbytes, link).bytes == pytest.approx(
            (n - 1) * nbytes)
    # uniform all-to-all: B/n to every other device
    m = np.full((n, n), nbytes / n)
    np.fill_diagonal(m, 0.0)
    load, hops = C.alltoall_link_load(m, "switch")
    assert load == pytest.approx((n - 1) / n * nbytes) and hops == pytest.approx(
        (n - 1) * nbytes)
    load, hops = C.alltoall_link_load(m, "ring")
    assert load == pytest.approx(sum(min(d, n - d) for d in range(1, n)) * nbytes / (2 * n))
    assert hops == pytest.approx(n * sum(min(d, n - d) for d in range(1, n)) * nbytes / n)
    load, _ = C.alltoall_link_load(m, "chain")
    assert load == pytest.approx((n // 2) * ((n + 1) // 2) * nbytes / n)

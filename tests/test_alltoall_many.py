"""``all_to_all_many`` (a stack of all-to-all exchanges costed at once) against the
one-matrix ``all_to_all`` it stands for, on random traffic over every link kind."""

import numpy as np
import pytest

from accelsim.system import collectives as C
from accelsim.system.spec import Link, Links, System
from accelsim.system import load_system


def _same(a: C.Cost, b: C.Cost, rel: float = 1e-12) -> None:
    assert a.time_s == pytest.approx(b.time_s, rel=rel, abs=0)
    assert a.energy_j == pytest.approx(b.energy_j, rel=rel, abs=0)
    assert set(a.bytes_by_level) == set(b.bytes_by_level)
    assert set(a.time_by_level) == set(b.time_by_level)
    for k in a.bytes_by_level:
        assert a.bytes_by_level[k] == pytest.approx(b.bytes_by_level[k], rel=rel, abs=0)
        assert a.time_by_level[k] == pytest.approx(b.time_by_level[k], rel=rel, abs=0)


def _system(intra: str, inter: str, per: str, nodes: int = 3, dpn: int = 4) -> System:
    base = load_system("h100-4x8")
    links = Links.model_construct(
        intra_node=Link.make(300e9, 2e-6, 40e-12, topology=intra),
        inter_node=Link.make(50e9, 5e-6, 100e-12, topology=inter, per=per))
    return System(name="t", hw=base.hw, devices_per_node=dpn, nodes=nodes, links=links)


@pytest.mark.parametrize("intra,inter,per", [
    ("switch", "switch", "device"), ("ring", "chain", "node"), ("chain", "ring", "device"),
    ("fully_connected", "switch", "node"), ("ring", "ring", "node")])
def test_many_equals_one_by_one(intra, inter, per):
    rng = np.random.default_rng(7)
    system = _system(intra, inter, per)
    for devs in ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 2, 5, 9, 10], [4, 5, 6, 7]):
        n = len(devs)
        ms = rng.random((6, n, n)) * 1e6
        ms[1] = 0.0                                   # nothing to send
        ms[2][rng.random((n, n)) < 0.6] = 0.0         # sparse traffic
        ms[3] = np.diag(np.arange(n) + 1.0)           # only the (ignored) diagonal
        many = C.all_to_all_many(system, devs, ms)
        assert len(many) == len(ms)
        for m, c in zip(ms, many):
            _same(c, C.all_to_all(system, devs, m))
        # transposed views (as the system layer passes the return trip)
        for m, c in zip(ms, C.all_to_all_many(system, devs, ms.transpose(0, 2, 1))):
            _same(c, C.all_to_all(system, devs, m.T))


def test_uniform_switch_closed_form():
    # 4 devices on one switch, 3 bytes to each other device: port load 9 bytes
    system = _system("switch", "switch", "device", nodes=1, dpn=4)
    m = np.full((4, 4), 3.0)
    (c,) = C.all_to_all_many(system, [0, 1, 2, 3], m[None])
    link = system.link("intra_node")
    assert c.time_s == pytest.approx(link.latency_s + 9.0 / link.bandwidth_bytes_per_s)
    assert c.bytes_by_level == {"intra_node": pytest.approx(36.0)}


def test_one_device_and_empty():
    system = _system("switch", "switch", "device")
    assert C.all_to_all_many(system, [3], np.ones((2, 1, 1))) == [C.Cost(), C.Cost()]
    assert C.all_to_all_many(system, [0, 1], np.zeros((0, 2, 2))) == []

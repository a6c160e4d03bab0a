"""``place_experts``' compiled LPT loop places like the heap-based loop it replaced.

The reference below is the previous implementation (a heap of devices by load in the layer,
bytes used and index; the first device popped where the expert fits with the reserve for the
layers still to place, else any device it fits by the same order): the same shares, bytes,
loads and errors on random layers, tight capacities (the reserve dropped) and impossible
ones.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from accelsim.errors import DoesNotFitError
from accelsim.system.placement import place_experts


def _reference(nbytes, load, ep, cap):
    R, E = nbytes.shape
    share = np.zeros((ep, R, E))
    used = np.zeros(ep)
    layer_load = np.zeros((ep, R))
    tol = 1e-9 * max(1.0, float(cap.max(initial=1.0)))
    after = np.concatenate([np.cumsum(nbytes.sum(axis=1)[::-1])[::-1][1:], [0.0]]) / ep
    for r in range(R):
        reserve = float(after[r])
        order = np.lexsort((np.arange(E), -nbytes[r], -load[r]))
        L = layer_load[:, r]
        heap = [(0.0, float(used[d]), d) for d in range(ep)]
        heapq.heapify(heap)
        for e in order:
            b = float(nbytes[r, e])
            popped, d = [], None
            while heap:
                item = heapq.heappop(heap)
                if used[item[2]] + b + reserve <= cap[item[2]] + tol:
                    d = item[2]
                    break
                popped.append(item)
            for item in popped:
                heapq.heappush(heap, item)
            if d is None:
                ok = used + b <= cap + tol
                if not ok.any():
                    raise DoesNotFitError(f"expert {e} of MoE layer {r}")
                cand = np.flatnonzero(ok)
                d = int(cand[np.lexsort((cand, used[cand], L[cand]))[0]])
                heap = [x for x in heap if x[2] != d]
                heapq.heapify(heap)
            share[d, r, e] = 1.0
            used[d] += b
            L[d] += load[r, e]
            heapq.heappush(heap, (float(L[d]), float(used[d]), d))
    return share, used, layer_load


@pytest.mark.parametrize("seed", range(12))
def test_lpt_equals_heap_reference(seed):
    rng = np.random.default_rng(seed)
    R, E, ep = int(rng.integers(1, 6)), int(rng.integers(2, 40)), int(rng.integers(1, 9))
    # bytes from a few widths (ties), loads Zipf-like with ties, capacities from loose to
    # tight (tight ones drop the reserve or do not fit at all)
    nbytes = rng.choice([2.0, 3.0, 4.0, 8.0], size=(R, E)) * 1e6
    load = np.round(rng.zipf(1.5, size=(R, E)).astype(float) / 3.0, 1)
    total = nbytes.sum()
    cap = total / ep * rng.uniform(0.9, 1.6, size=ep)
    try:
        share, used, layer_load = _reference(nbytes, load, ep, cap)
    except DoesNotFitError as e:
        with pytest.raises(DoesNotFitError, match=str(e).split(" of MoE")[0] + " of MoE "):
            place_experts(nbytes, load, ep, cap)
        return
    p = place_experts(nbytes, load, ep, cap)
    assert np.array_equal(p.share, share)
    assert np.array_equal(p.memory, used)
    assert np.array_equal(p.layer_load, layer_load)


def test_lpt_reserve_dropped_and_no_room():
    """Hand case: two devices of 10 B, a layer of experts 6, 6, 4 B (loads 3, 2, 1) and a
    second layer of 4 B: the reserve (2 B each) leaves room for one 6 B expert per device
    (0 and 1), the 4 B expert fits on neither with the reserve and goes to the device with
    the lower load (1: load 2); then the second layer's 4 B expert fits only device 0."""
    nbytes = np.array([[6.0, 6.0, 4.0], [4.0, 0.0, 0.0]])
    load = np.array([[3.0, 2.0, 1.0], [1.0, 0.0, 0.0]])
    p = place_experts(nbytes, load, 2, np.array([10.0, 10.0]))
    assert p.share[:, 0, :].tolist() == [[1, 0, 0], [0, 1, 1]]
    assert p.share[0, 1, 0] == 1.0 and p.memory.tolist() == [10.0, 10.0]
    with pytest.raises(DoesNotFitError, match="expert 0 of MoE layer 1"):
        place_experts(np.array([[6.0, 6.0, 4.0], [5.0, 0.0, 0.0]]), load, 2,
                      np.array([10.0, 10.0]))

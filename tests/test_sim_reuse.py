"""Operand reuse across the tile loops: an operand whose tiles of one pass fit its double
buffer (or, for activations, the staging space) is read from off chip once, and one that does
not fit is re-read once per pass of the loop around it. Expected bytes and cycles are the
formulas: weights ``K N wB`` once, activations ``M K aB`` once (or times the re-read count
derived by hand from the capacities), outputs ``M N aB``; cycles bounded by those bytes over
the DRAM bandwidth and by the scratchpad's operand feed (issue 13, item 6)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from accelsim.config import read_mapping
from accelsim.hw import hw_from_dict
from accelsim.sim import engine as E
from accelsim.sim import simulate_gemm

ROOT = Path(__file__).resolve().parents[1]


def _fetched(df, M, K, N, Mt, Kt, Nt, keep=False, wB=1.0, aB=1.0):
    """(weight bytes, activation bytes) the pipeline fetched, DRAM-like DMA on every
    operand."""
    r = E.pipeline(df, float(M), K, N, float(Mt), float(Kt), float(Nt), 16, 16, 1.0, wB, aB,
                   1.0, 120.0, 1 / 16, 120.0, 1 / 16, 120.0, 1 / 16, False, False, 0.0, 0.0,
                   True, keep)
    return r[2], r[3]


def test_two_k_tiles_sit_in_the_double_buffer():
    # output-stationary (m, n, k), one m block, K in two tiles: the activation tiles
    # alternate k0, k1, k0, k1 ... in the two slots of their double buffer: read once
    M, K, N = 16, 4096, 256
    assert _fetched(E.OS, M, K, N, 16, 2048, 16) == (K * N, M * K)
    # weight-stationary (n, m, k) with three m blocks and K in two tiles: each weight tile
    # pair stays for all three m blocks; the activations (6 tiles a pass) are re-read for
    # every one of the 256 / 16 = 16 n blocks
    assert _fetched(E.WS, 48, K, N, 16, 2048, 16) == (K * N, 16 * 48 * K)


def test_more_k_tiles_than_slots_are_re_read_unless_kept():
    M, K, N = 16, 4096, 256
    # four K tiles in two slots: the activation block is re-read for each of the 16 n blocks
    assert _fetched(E.OS, M, K, N, 16, 1024, 16) == (K * N, 16 * M * K)
    # kept whole (M x K bytes of staging): read once
    assert _fetched(E.OS, M, K, N, 16, 1024, 16, keep=True) == (K * N, M * K)
    assert E.keep_bytes(E.OS, M, K, N, 16, 1024, 16, 1.0) == M * K
    # weight-stationary, three K tiles: weights re-read for each of the 2 m blocks;
    # activations (all 2 x 3 tiles) re-read for each of the 16 n blocks unless kept
    assert _fetched(E.WS, 32, 3072, N, 16, 1024, 16) == (2 * 3072 * N, 16 * 32 * 3072)
    assert _fetched(E.WS, 32, 3072, N, 16, 1024, 16, keep=True) == (2 * 3072 * N, 32 * 3072)
    # nothing to gain (one n block, or a pass that already fits two slots): no extra room
    assert E.keep_bytes(E.OS, M, K, 16, 16, 1024, 16, 1.0) == 0.0
    assert E.keep_bytes(E.WS, 16, K, N, 16, 2048, 16, 1.0) == 0.0


def _gemmini(scratchpad_kib=None, dram_bpc=None):
    d = copy.deepcopy(dict(read_mapping(ROOT / "hwconfigs" / "gemmini.yaml")))
    lv = {m["name"]: m for m in d["memory"]}
    if scratchpad_kib is not None:
        lv["scratchpad"]["capacity"] = f"{scratchpad_kib} KiB"
    if dram_bpc is not None:
        lv["dram"]["read_bandwidth"] = f"{dram_bpc} B/cycle"
    d["name"] = f"gemmini-sp{scratchpad_kib}-dram{dram_bpc}"
    return hw_from_dict(d)


def _weight_bytes(K, N, bits):
    """``bits``-bit weights in the default storage format: per group of 128 weights a
    16-bit scale and an 8-bit zero point, 3 B."""
    return K * N * (bits / 8 + 3 / 128)


M, K, N = 16, 4096, 14336      # the issue's shape: Mixtral w1 / w3, 16 tokens


@pytest.mark.parametrize("bits", [8, 4])
def test_gemmini_issue_case_reads_weights_and_activations_once(bits):
    r = simulate_gemm("gemmini", M, K, N, w_bits=bits, residency="offchip")
    wbytes = _weight_bytes(K, N, bits)
    assert r.weight_bytes == pytest.approx(wbytes, rel=1e-12)
    # was 119,046,144 B at int8: the 58.7 MB of activations re-read for all 896 n blocks
    assert r.offchip_bytes == pytest.approx(wbytes + M * K + M * N, rel=1e-12)
    # two bounds at 16 B/cycle: the DRAM stream, and the scratchpad (one 16-byte row a cycle)
    # feeding the array every weight once and the activations once per 16-column fold
    dram = r.offchip_bytes / 16
    feed = (wbytes + M * K * (N // 16)) / 16
    assert feed > dram
    assert feed <= r.cycles <= feed * 1.001      # was 7.98 M cycles at int8


def _dma_bound(r, m, k, n, total, bpc):
    """Cycles of the one DMA channel of a DRAM-bound GEMM with one m block, every operand
    once: each transfer costs 20 cycles of setup + 100 of latency, and the bytes go at
    ``bpc``; transfers are the weight tiles (n blocks x K tiles), the activation tiles (K
    tiles, once) and one output store per n block. The last tile's compute comes after:
    the scratchpad (16 B/cycle) feeds its weights once and its activations once per 16-column
    fold of the array."""
    mt, kt, nt = r.op_data["tiles"][0]
    assert mt == m
    nk, nn = -(-k // kt), -(-n // nt)
    dma = (nn * nk + nk + nn) * 120 + total / bpc
    last = (kt * nt * r.weight_bytes / (k * n) + m * kt * -(-nt // 16)) / 16
    return dma, dma + last


def test_gemmini_dram_bound_case_streams_weights_once():
    # at 2 B/cycle the DRAM decides: weights + activations + outputs once over 2 B/cycle
    # (59.8 M cycles before the fix, when the activations were read 896 times)
    hw = _gemmini(dram_bpc=2)
    r = simulate_gemm(hw, M, K, N, w_bits=8, residency="offchip")
    total = _weight_bytes(K, N, 8) + M * K + M * N
    assert r.offchip_bytes == pytest.approx(total, rel=1e-12)
    lo, hi = _dma_bound(r, M, K, N, total, 2)
    assert total / 2 < lo <= r.cycles <= hi


def test_activations_that_do_not_fit_are_re_read_per_n_block():
    # 16 KiB of scratchpad, all of it for tiles: the 64 KiB activation block of a
    # 16 x 4096 x 256 GEMM cannot be kept, and no K = 4096 tile fits (2 x 16 x 4096 B of
    # activations alone are 128 KiB), so K splits and the activations are read once per n
    # block, N / Nt times, whatever Nt the menu (which has Kt < K with Nt > 16) picks
    hw = _gemmini(scratchpad_kib=16)
    k, n = 4096, 256
    r = simulate_gemm(hw, M, k, n, w_bits=8, residency="offchip", staging_fraction=1.0)
    mt, kt, nt = r.op_data["tiles"][0]
    assert mt == M and kt < k and nt < n
    # the tile's double buffers fit: 2 Kt Nt wB of weights + 2 M Kt of activations
    assert 2 * kt * nt * _weight_bytes(1, 1, 8) + 2 * M * kt <= 16 * 1024
    assert r.offchip_bytes == pytest.approx(_weight_bytes(k, n, 8) + (n // nt) * M * k
                                            + M * n, rel=1e-12)


def test_activations_kept_in_the_staging_space_are_read_once():
    # 96 KiB for tiles: K must split (two 4096-deep tiles of weights and activations need
    # 2 x (67 + 64) KiB) but the 64 KiB activation block fits beside a double-buffered
    # weight tile (e.g. 512 x 16, 2 x 8.2 KiB): kept, read once. At 2 B/cycle re-reading it for
    # 16 n blocks would cost 16 x 64 KiB / 2 = 524 k cycles more than the weights' 537 k
    hw = _gemmini(scratchpad_kib=96, dram_bpc=2)
    k, n = 4096, 256
    r = simulate_gemm(hw, M, k, n, w_bits=8, residency="offchip", staging_fraction=1.0)
    total = _weight_bytes(k, n, 8) + M * k + M * n
    assert r.op_data["tiles"][0][1] < k
    assert r.offchip_bytes == pytest.approx(total, rel=1e-12)
    lo, hi = _dma_bound(r, M, k, n, total, 2)
    assert lo <= r.cycles <= hi

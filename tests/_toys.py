"""Toy inputs shared by the tests: a one-core accelerator with an SRAM and a DRAM, and a
two-layer MoE model with four experts (both valid; tests derive bad ones from them)."""

import textwrap

TINY_HW = textwrap.dedent("""\
    name: tiny
    clock: 500 MHz
    cores:
      count: 1
      mac_array:
        rows: 8
        cols: 8
        arithmetic: {kind: fixed, native_bits: 8}
    memory:
      - name: sram
        scope: core
        capacity: 64 KiB
        read_bandwidth: 32 B/cycle
        read_energy: 1 pJ/B
      - name: dram
        scope: offchip
        capacity: 1 GiB
        read_bandwidth: 4 GB/s
        read_energy: 160 pJ/B
    """)

TOY_WL = textwrap.dedent("""\
    name: toy-moe
    hidden_size: 64
    num_layers: 2
    vocab_size: 100
    attention: {num_heads: 4}
    moe: {num_experts: 4, top_k: 2, expert_ffn_size: 128}
    """)

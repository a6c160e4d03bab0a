"""What every key of the accelerator YAML means, where its schema has no ``description``.

Shared by :func:`accelsim.hw.hw_schema` (editors show these) and the generated reference
(:mod:`accelsim.hw.docgen`); a key missing here is an error there, so a new key cannot go
undocumented.
"""

from __future__ import annotations

__all__ = ["MEANINGS"]

#: Meaning of every key whose schema has no ``description``, by (class, YAML key).
MEANINGS: dict[tuple[str, str], str] = {
    ("Accelerator", "name"): "identifier; for a preset, equal to the file name",
    ("Accelerator", "description"): "one line shown by `accelsim hw list`",
    ("Accelerator", "kind"): "`gpu`: cores are SMs; `reference`: a well-known design kept "
                             "for comparison",
    ("Accelerator", "clock"): "clock of the MAC arrays; also converts every per-cycle unit in "
                              "the file (`B/cycle`, `cycles`)",
    ("Accelerator", "cores"): "the cores, all identical",
    ("Accelerator", "memory"): "memory levels, innermost first: all `core` levels, then "
                               "`chip`, then at most one `offchip`; at least one holds weights",
    ("Accelerator", "dma"): "DMA engines that move tiles between levels",
    ("Accelerator", "noc"): "network on chip; required when `cores.count` > 1",
    ("Accelerator", "energy"): "MAC energy, static power and rated power",
    ("Accelerator", "efficiency"): "achievable shares of the peaks and fixed overheads, "
                                   "calibrated on the measured set; none = the ideal roofline",
    ("Accelerator", "sources"): "citations for the numbers of the file",
    ("Accelerator", "uncertain"): "key paths of this file whose values are estimates "
                                  "(`memory[1].read_bandwidth`); each must name a key present",
    ("Accelerator", "notes"): "stated assumptions",
    ("Cores", "count"): "identical cores on the chip",
    ("Cores", "mac_array"): "the MAC array of every core",
    ("Cores", "vector_unit"): "SIMD unit for softmax, norms, activations, router and top-k",
    ("MacArray", "rows"): "processing elements along the reduction (K) dimension of a GEMM",
    ("MacArray", "cols"): "processing elements along the output (N) dimension of a GEMM",
    ("MacArray", "arithmetic"): "how throughput depends on operand precision; the `kind` key "
                                "selects one of the sections below",
    ("MacArray", "weight_bits"): "weight widths the array computes at; narrower weights are "
                                 "rounded up to the smallest listed width that holds them",
    ("MacArray", "activation_bits"): "activation widths the array computes at (rounded up "
                                     "like `weight_bits`)",
    ("MacArray", "default_activation_bits"): "activation width when an allocation sets none; "
                                             "must be in `activation_bits`",
    ("MacArray", "dataflows"): "dataflows the mapper may choose from",
    ("MacArray", "accumulator_bits"): "width of partial sums",
    ("MacArray", "fill"): "when the array pays its systolic fill: `per_fold` (SCALE-Sim: "
                          "every fold loads its weights and fills and drains), `overlapped` "
                          "(weights double-buffered in the PEs: the next fold's weights shift "
                          "in while the current one computes; fill and drain once per tile), "
                          "`none` (a vector-matrix engine without a systolic fill)",
    ("BitSerial", "kind"): "selects this arithmetic",
    ("BitSerial", "serial_operand"): "the operand streamed bit by bit",
    ("BitSerial", "bits_per_cycle"): "bits of the serial operand(s) consumed per cycle",
    ("BitSerial", "parallel_bits"): "width of the parallel operand handled in one pass",
    ("BitParallel", "kind"): "selects this arithmetic",
    ("BitParallel", "rule"): "how throughput grows as precision shrinks",
    ("BitParallel", "native_bits"): "width at which a PE does one MAC per cycle (`halving`)",
    ("BitParallel", "min_bits"): "narrowest width that still speeds up (`halving`); must be "
                                 "<= `native_bits`",
    ("BitParallel", "operands"): "which widths set the rate: `both` = max(weight, activation) "
                                 "bits, `weight` = weight bits",
    ("BitParallel", "table"): "precision in bits -> MACs per PE per cycle; required for "
                              "`rule: table`",
    ("Fixed", "kind"): "selects this arithmetic",
    ("Fixed", "native_bits"): "the one width the PEs compute at; narrower operands are "
                              "unpacked to it, wider ones take several passes",
    ("VectorUnit", "lanes"): "SIMD lanes per core",
    ("VectorUnit", "ops_per_lane_per_cycle"): "element operations per lane per cycle",
    ("MemoryLevel", "name"): "level name, unique in the file",
    ("MemoryLevel", "scope"): "`core`: one instance per core (capacity and bandwidth per "
                              "core); `chip`: shared; `offchip`: DRAM, HBM, LPDDR or a host link",
    ("MemoryLevel", "capacity"): "bytes (per core for `scope: core`)",
    ("MemoryLevel", "read_bandwidth"): "read bandwidth (per core for `scope: core`)",
    ("MemoryLevel", "write_bandwidth"): "write bandwidth; none = `read_bandwidth`",
    ("MemoryLevel", "latency"): "access latency",
    ("MemoryLevel", "read_energy"): "energy per byte read",
    ("MemoryLevel", "write_energy"): "energy per byte written; none = `read_energy`",
    ("MemoryLevel", "holds"): "kinds of data the residency planner may place in the level",
    ("MemoryLevel", "ports"): "`offchip` only: separate ports or channels, each serving some "
                              "kinds of data at its own bandwidth (every kind the level holds "
                              "by exactly one); none = one stream shared by all, at the "
                              "level's bandwidth",
    ("MemoryLevel", "reuse"): "`cache`: hardware-managed (a GPU's L2): the residency "
                              "planner places nothing in it, and it serves the re-reads of "
                              "GEMM operands that live further out (chip tiles); `scratchpad`: "
                              "software-managed, weights, KV cache and activations are placed "
                              "in it; `chip` scope only for `cache`; none = `cache` for the "
                              "`chip` levels of `kind: gpu`, else `scratchpad`",
    ("Port", "name"): "port name, unique in the level",
    ("Port", "read_bandwidth"): "read bandwidth of the port; transfers on different ports "
                                "overlap, on one port they queue",
    ("Port", "write_bandwidth"): "write bandwidth of the port; none = its `read_bandwidth`",
    ("Port", "serves"): "kinds of data (`weights`, `activations`, `outputs`, `kv`) moved "
                        "through this port",
    ("Dma", "setup"): "fixed cost to start one transfer",
    ("Dma", "channels"): "transfers in flight at once",
    ("Noc", "topology"): "shape of the network, for hop counts",
    ("Noc", "dims"): "mesh sides (`[16, 16]`) or ring length (`[32]`)",
    ("Noc", "link_bandwidth"): "bandwidth of one link, per direction",
    ("Noc", "hop_latency"): "latency per hop",
    ("Noc", "energy_per_byte_per_hop"): "energy per byte per hop",
    ("EnergyModel", "process_factor"): "scales Horowitz's 45 nm MAC energies to the chip's "
                                       "process",
    ("EnergyModel", "mac_energy_8b"): "energy of one 8x8-bit MAC; none = Horowitz's 0.2 pJ "
                                      "multiply + 0.1 pJ add, times `process_factor`",
    ("EnergyModel", "vector_op_energy"): "energy of one vector-unit operation; none = the "
                                         "simulator's default",
    ("EnergyModel", "static_power"): "power drawn for the whole run time (idle power: from a "
                                     "measured idle or a published figure)",
    ("EnergyModel", "rated_power"): "rated power or TDP; a step whose average power exceeds "
                                    "it gets a warning; none = not checked",
    ("Efficiency", "offchip_bandwidth"): "share of the off-chip level's peak read and write "
                                         "bandwidth that streams achieve",
    ("Efficiency", "mac_rate"): "share of the peak MAC rate that GEMMs achieve",
    ("Efficiency", "attention_mac_rate"): "share of the peak MAC rate that attention "
                                          "achieves; none = `mac_rate`",
    ("Efficiency", "expert_mac_rate"): "share of the peak MAC rate that the routed experts' "
                                       "GEMMs (grouped MoE kernels) achieve; none = "
                                       "`mac_rate`",
    ("Efficiency", "kernel_overhead"): "fixed time per op that runs (one kernel: launch and "
                                       "synchronisation), added to its phase",
    ("Efficiency", "step_overhead"): "fixed host time per simulated step (scheduling, "
                                     "sampling, framework)",
    ("Efficiency", "calibrated_on"): "ids of the measured-set rows the values were fitted to",
    ("Source", "id"): "short name the file's comments refer to",
    ("Source", "cite"): "the citation",
    ("Source", "url"): "where to read it",
}

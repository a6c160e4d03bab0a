"""Accelerator specification: the schema of ``hwconfigs/*.yaml`` as frozen pydantic models.

YAML keys name quantities without units and take strings with units (``capacity: 224 MiB``);
the validated objects hold base units in fields that say so (``capacity_bytes``). The
reference for every key is ``docs/hwconfig.md``; ``accelsim hw schema`` prints the JSON
Schema generated from these classes.

Examples
--------
>>> from accelsim.hw import load_hw
>>> hw = load_hw("gemmini")
>>> hw.cores.mac_array.rows, hw.cores.mac_array.cols
(16, 16)
>>> hw.peak_macs_per_s(8) == 16 * 16 * hw.clock_hz
True
"""

from __future__ import annotations

import math
import weakref
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from ..config import Bounded, Quantity, Spec

__all__ = [
    "BitSerial", "BitParallel", "Fixed", "Arithmetic", "MacArray", "VectorUnit", "Cores",
    "MemoryLevel", "Port", "Dma", "Noc", "EnergyModel", "Efficiency", "Source", "Accelerator",
    "SCOPES",
]

Bits = Bounded(int, 1, 16)
SCOPES = ("core", "chip", "offchip")
Holds = Literal["weights", "activations", "outputs", "kv"]

# Horowitz, ISSCC 2014, 45 nm 0.9 V (../shared/reference/hardware.md).
HOROWITZ_INT8_MULT_J = 0.2e-12
HOROWITZ_INT32_ADD_J = 0.1e-12


_IDEAL: dict = {}   # id(accelerator) -> (weakref, the same without its efficiency model)


def _pow2_ceil(bits: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(bits, 1))))


class BitSerial(Spec):
    """One operand is streamed ``bits_per_cycle`` bits at a time (Stripes, Loom, BISMO, UNPU).

    A processing element finishes one MAC every ``ceil(p_s / bits_per_cycle)`` cycles, with
    ``p_s`` the serial operand's bits; with ``serial_operand: both`` it takes
    ``ceil(p_w / b) * ceil(p_a / b)`` cycles (Loom, BISMO). The parallel operand may be at
    most ``parallel_bits`` wide.
    """

    kind: Literal["bit_serial"]
    serial_operand: Literal["weight", "activation", "both"] = "weight"
    bits_per_cycle: Bounded(int, 1, 16) = 1
    parallel_bits: Bits = 16

    def cycles_per_mac(self, w_bits: int, a_bits: int) -> float:
        b = self.bits_per_cycle
        passes = 1
        if self.serial_operand == "weight":
            passes = math.ceil(a_bits / self.parallel_bits)
            return math.ceil(w_bits / b) * passes
        if self.serial_operand == "activation":
            passes = math.ceil(w_bits / self.parallel_bits)
            return math.ceil(a_bits / b) * passes
        return math.ceil(w_bits / b) * math.ceil(a_bits / b)


class BitParallel(Spec):
    """Fused or multi-precision units whose throughput grows as precision shrinks.

    ``rule: halving`` (NorthPole, RaPiD): MACs per PE per cycle double each time the operand
    precision (``operands: both`` -> max(p_w, p_a); ``weight`` -> p_w) halves below
    ``native_bits``, down to ``min_bits``; precisions round up to powers of two; wider than
    native takes ``ceil(p / native_bits)`` passes per wide operand.
    ``rule: fusion`` (Bit Fusion): relative to 8x8, speed = (8/max(p_a,2)) * (8/max(p_w,2))
    with precisions rounded up to powers of two (16-bit operands are 2x slower each).
    ``rule: table``: ``table`` maps precision (as for ``halving``) to MACs per PE per cycle;
    precisions between entries round up to the next entry.
    """

    kind: Literal["bit_parallel"]
    rule: Literal["halving", "fusion", "table"] = "halving"
    native_bits: Bits = 8
    min_bits: Bits = 2
    operands: Literal["both", "weight"] = "both"
    table: dict[Bits, Bounded(float, 1e-6, 1e6)] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.rule == "table" and not self.table:
            raise ValueError("rule 'table' needs a non-empty 'table' of bits -> MACs per cycle")
        if self.min_bits > self.native_bits:
            raise ValueError("min_bits must be <= native_bits")
        return self

    def cycles_per_mac(self, w_bits: int, a_bits: int) -> float:
        if self.rule == "fusion":
            pw, pa = _pow2_ceil(max(w_bits, 2)), _pow2_ceil(max(a_bits, 2))
            return 1.0 / ((8.0 / pa) * (8.0 / pw))
        p = max(w_bits, a_bits) if self.operands == "both" else w_bits
        if self.rule == "table":
            assert self.table is not None
            keys = sorted(self.table)
            fits = [k for k in keys if k >= p]
            if fits:
                return 1.0 / self.table[fits[0]]
            top = keys[-1]
            return math.ceil(p / top) / self.table[top]
        wide = 1
        if self.operands == "weight" and a_bits > self.native_bits:
            wide = math.ceil(a_bits / self.native_bits)
        if p > self.native_bits:
            return wide * math.ceil(p / self.native_bits) * (
                math.ceil(min(w_bits, a_bits) / self.native_bits) if self.operands == "both"
                else 1)
        eff = max(self.min_bits, _pow2_ceil(p))
        return wide * eff / self.native_bits


class Fixed(Spec):
    """Native width only: narrower operands are unpacked to ``native_bits`` (memory gains only);
    wider ones take ``ceil(p / native_bits)`` passes per operand."""

    kind: Literal["fixed"]
    native_bits: Bits = 8

    def cycles_per_mac(self, w_bits: int, a_bits: int) -> float:
        n = self.native_bits
        return float(math.ceil(w_bits / n) * math.ceil(a_bits / n))


Arithmetic = Annotated[Union[BitSerial, BitParallel, Fixed], Field(discriminator="kind")]


class MacArray(Spec):
    """A rows x cols array of processing elements in every core."""

    rows: Bounded(int, 1, 65536)
    cols: Bounded(int, 1, 65536)
    arithmetic: Arithmetic
    weight_bits: list[Bits] = Field(default_factory=lambda: [8], min_length=1)
    activation_bits: list[Bits] = Field(default_factory=lambda: [8], min_length=1)
    default_activation_bits: Bits = 8
    dataflows: list[Literal["weight_stationary", "output_stationary"]] = Field(
        default_factory=lambda: ["weight_stationary"], min_length=1)
    accumulator_bits: Bounded(int, 8, 64) = 32
    fill: Literal["per_fold", "overlapped", "none"] = "per_fold"

    @model_validator(mode="after")
    def _check(self):
        if self.default_activation_bits not in self.activation_bits:
            raise ValueError(f"default_activation_bits {self.default_activation_bits} is not "
                             f"in activation_bits {self.activation_bits}")
        return self

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    def compute_bits(self, bits: int, supported: list[int]) -> int:
        """The precision the array computes ``bits`` at: the smallest supported width >= bits,
        else ``bits`` itself (executed in several passes of the widest supported width)."""
        fits = [b for b in sorted(supported) if b >= bits]
        return fits[0] if fits else bits

    def cycles_per_mac(self, w_bits: int, a_bits: int) -> float:
        """Cycles one PE needs per MAC at the given operand precisions (after rounding up to
        the supported widths)."""
        return self.arithmetic.cycles_per_mac(self.compute_bits(w_bits, self.weight_bits),
                                              self.compute_bits(a_bits, self.activation_bits))

    def macs_per_cycle(self, w_bits: int, a_bits: int | None = None) -> float:
        a = self.default_activation_bits if a_bits is None else a_bits
        return self.pes / self.cycles_per_mac(w_bits, a)


class VectorUnit(Spec):
    """SIMD lanes for softmax, norms, activations, router and top-k."""

    lanes: Bounded(int, 1, 1 << 20) = 16
    ops_per_lane_per_cycle: Bounded(float, 1e-3, 1e3) = 1.0


class Cores(Spec):
    count: Bounded(int, 1, 1 << 18) = 1   # 262,144: simulation time grows with cores
    mac_array: MacArray
    vector_unit: VectorUnit = Field(default_factory=VectorUnit)


class Port(Spec):
    """One port (or channel group) of the off-chip level with its own bandwidth: transfers of
    the kinds of data it serves queue on it, and transfers on different ports overlap."""

    name: str = Field(min_length=1, max_length=64)
    read_bandwidth_bytes_per_s: Quantity("bandwidth") = Field(alias="read_bandwidth")
    write_bandwidth_bytes_per_s: Quantity("bandwidth") | None = Field(
        default=None, alias="write_bandwidth")
    serves: list[Holds] = Field(min_length=1)

    @property
    def write_bw(self) -> float:
        return self.write_bandwidth_bytes_per_s or self.read_bandwidth_bytes_per_s


class MemoryLevel(Spec):
    """One memory level. ``scope: core`` levels exist once per core (capacity and bandwidth
    per core); ``chip`` levels are shared; ``offchip`` is DRAM/HBM/LPDDR."""

    name: str = Field(min_length=1, max_length=64)
    scope: Literal["core", "chip", "offchip"]
    capacity_bytes: Quantity("size") = Field(alias="capacity")
    read_bandwidth_bytes_per_s: Quantity("bandwidth") = Field(alias="read_bandwidth")
    write_bandwidth_bytes_per_s: Quantity("bandwidth") | None = Field(
        default=None, alias="write_bandwidth")
    latency_s: Quantity("time", allow_zero=True) = Field(default=0.0, alias="latency")
    read_energy_per_byte_j: Quantity("energy_per_byte", allow_zero=True) = Field(
        alias="read_energy")
    write_energy_per_byte_j: Quantity("energy_per_byte", allow_zero=True) | None = Field(
        default=None, alias="write_energy")
    holds: list[Holds] = Field(default_factory=lambda: ["weights", "activations", "outputs",
                                                        "kv"], min_length=1)
    ports: list[Port] | None = Field(default=None, min_length=1, max_length=4)
    #: ``cache``: hardware-managed (a GPU's L2): the residency planner places nothing in it,
    #: and it serves re-reads of operands that live further out (chip tiles,
    #: docs/simulator.md); ``scratchpad``: software-managed, a placement target. None: the
    #: accelerator's default (:meth:`Accelerator.level_reuse`).
    reuse: Literal["cache", "scratchpad"] | None = None

    @model_validator(mode="after")
    def _check_ports(self):
        if self.reuse == "cache" and self.scope != "chip":
            raise ValueError("reuse: only a chip-scope level can be a cache")
        if self.ports is None:
            return self
        if self.scope != "offchip":
            raise ValueError("ports: only an offchip level has ports")
        names = [p.name for p in self.ports]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ports: names must be unique (repeated: {', '.join(dup)})")
        served = [k for p in self.ports for k in p.serves]
        twice = sorted({k for k in served if served.count(k) > 1})
        if twice:
            raise ValueError(f"ports: each kind of data is served by one port (served twice: "
                             f"{', '.join(twice)})")
        missing = [k for k in self.holds if k not in served]
        if missing:
            raise ValueError(f"ports: every kind the level holds needs a port (none serves: "
                             f"{', '.join(missing)})")
        extra = sorted(set(served) - set(self.holds))
        if extra:
            raise ValueError(f"ports: serve only kinds the level holds (not held: "
                             f"{', '.join(extra)})")
        return self

    @property
    def write_bw(self) -> float:
        return self.write_bandwidth_bytes_per_s or self.read_bandwidth_bytes_per_s

    def port_of(self, kind: str) -> int:
        """Index of the port serving ``kind`` (0 when the level has no ports)."""
        if not self.ports:
            return 0
        return next((i for i, p in enumerate(self.ports) if kind in p.serves), 0)

    @property
    def write_energy(self) -> float:
        e = self.write_energy_per_byte_j
        return self.read_energy_per_byte_j if e is None else e


class Dma(Spec):
    setup_s: Quantity("time", allow_zero=True) = Field(default=0.0, alias="setup")
    channels: Bounded(int, 1, 1024) = 1


class Noc(Spec):
    """On-chip network between cores; hop counts follow the topology."""

    topology: Literal["mesh", "ring", "crossbar", "bus", "none"] = "mesh"
    dims: list[Bounded(int, 1, 4096)] | None = None
    link_bandwidth_bytes_per_s: Quantity("bandwidth") = Field(alias="link_bandwidth")
    hop_latency_s: Quantity("time", allow_zero=True) = Field(default=0.0, alias="hop_latency")
    energy_per_byte_per_hop_j: Quantity("energy_per_byte", allow_zero=True) = Field(
        default=0.0, alias="energy_per_byte_per_hop")


class EnergyModel(Spec):
    """MAC energy, static power and the rated power.

    MAC energy at 8x8 bits defaults to Horowitz's 45 nm int8 multiply (0.2 pJ) plus an int32
    add (0.1 pJ), times ``process_factor``; other precisions scale the multiplier part with
    the product of operand widths and the adder part linearly (the simulator's energy model,
    docs/simulator.md). ``static_power`` is charged for the whole step: take it from a
    measured idle (or published) figure, not from the rated power. ``rated_power`` (TDP or
    board power) is only checked against: a step whose average power exceeds it gets a
    warning in ``SimResult.warnings``.
    """

    process_factor: Bounded(float, 1e-4, 100.0) = 1.0
    mac_energy_8b_j: Quantity("energy") | None = Field(default=None, alias="mac_energy_8b")
    vector_op_energy_j: Quantity("energy") | None = Field(default=None, alias="vector_op_energy")
    static_power_w: Quantity("power", allow_zero=True) = Field(default=0.0,
                                                               alias="static_power")
    rated_power_w: Quantity("power") | None = Field(default=None, alias="rated_power")

    @property
    def mac_8b(self) -> float:
        if self.mac_energy_8b_j is not None:
            return self.mac_energy_8b_j
        return (HOROWITZ_INT8_MULT_J + HOROWITZ_INT32_ADD_J) * self.process_factor


class Efficiency(Spec):
    """What real kernels and serving software achieve of the peaks (calibrated on the
    measured set, ``measured/``; docs/fidelity.md).

    ``offchip_bandwidth``: the fraction of the off-chip level's peak read and write bandwidth
    that streams achieve; ``mac_rate``: the fraction of the peak MAC rate GEMMs achieve and
    ``attention_mac_rate`` the fraction attention achieves (default: ``mac_rate``) and
    ``expert_mac_rate`` the fraction the routed experts' GEMMs achieve (grouped MoE GEMM
    kernels; default: ``mac_rate``);
    ``kernel_overhead``: fixed time per op (one kernel: launch and synchronisation), charged
    on the step's critical path for every op that runs (times its probability of running);
    ``step_overhead``: fixed host time per step (scheduling, sampling, framework).
    Fractions are at most 1 and overheads at least 0, so an efficiency model never makes a
    step faster than the ideal roofline. ``calibrated_on`` names the measured-set rows the
    values were fitted to.
    """

    offchip_bandwidth: Bounded(float, 0.01, 1.0) = 1.0
    mac_rate: Bounded(float, 0.01, 1.0) = 1.0
    attention_mac_rate: Bounded(float, 0.01, 1.0) | None = None
    expert_mac_rate: Bounded(float, 0.01, 1.0) | None = None
    kernel_overhead_s: Quantity("time", allow_zero=True) = Field(default=0.0,
                                                                 alias="kernel_overhead")
    step_overhead_s: Quantity("time", allow_zero=True) = Field(default=0.0,
                                                               alias="step_overhead")
    calibrated_on: list[str] = Field(default_factory=list)

    @property
    def attention_rate(self) -> float:
        return self.mac_rate if self.attention_mac_rate is None else self.attention_mac_rate

    @property
    def expert_rate(self) -> float:
        return self.mac_rate if self.expert_mac_rate is None else self.expert_mac_rate


class Source(Spec):
    id: str = Field(min_length=1)
    cite: str = Field(min_length=1)
    url: str | None = None


class Accelerator(Spec):
    """A whole accelerator: clock, cores, memory levels (innermost first), DMA, NoC, energy."""

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    kind: Literal["accelerator", "gpu", "reference"] = "accelerator"
    clock_hz: Quantity("frequency") = Field(alias="clock")
    cores: Cores
    memory: list[MemoryLevel] = Field(min_length=1)
    dma: Dma = Field(default_factory=Dma)
    noc: Noc | None = None
    energy: EnergyModel = Field(default_factory=EnergyModel)
    #: None: the ideal roofline (no measurements to calibrate against)
    efficiency: Efficiency | None = None
    sources: list[Source] = Field(default_factory=list)
    uncertain: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        names = [m.name for m in self.memory]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"memory level names must be unique (repeated: {', '.join(dup)})")
        order = [SCOPES.index(m.scope) for m in self.memory]
        if order != sorted(order):
            raise ValueError("memory levels must go from innermost to outermost "
                             "(scopes core, then chip, then offchip)")
        if sum(m.scope == "offchip" for m in self.memory) > 1:
            raise ValueError("at most one offchip memory level")
        if not any("weights" in m.holds for m in self.memory):
            raise ValueError("no memory level holds weights")
        if self.cores.count > 1 and self.noc is None:
            raise ValueError("a chip with several cores needs a 'noc' section")
        if self.noc is not None and self.noc.dims and math.prod(self.noc.dims) != \
                self.cores.count:
            raise ValueError(f"noc.dims {self.noc.dims} give {math.prod(self.noc.dims)} "
                             f"cores, but cores.count is {self.cores.count}")
        return self

    def ideal(self) -> "Accelerator":
        """This accelerator without its efficiency model (the ideal roofline); the same
        object when it has none. Cached per object, so the simulator's per-accelerator
        caches keep working."""
        if self.efficiency is None:
            return self
        hit = _IDEAL.get(id(self))
        if hit is not None and hit[0]() is self:
            return hit[1]
        out = self.model_copy(update={"efficiency": None})
        key = id(self)
        _IDEAL[key] = (weakref.ref(self, lambda _r, k=key: _IDEAL.pop(k, None)), out)
        return out

    # ------------------------------------------------------------------ derived quantities
    def level_capacity(self, level: MemoryLevel) -> float:
        """Total bytes of a level over the chip (core-scope levels times the core count)."""
        return level.capacity_bytes * (self.cores.count if level.scope == "core" else 1)

    def level_bandwidth(self, level: MemoryLevel) -> float:
        """Aggregate read bandwidth of a level over the chip."""
        return level.read_bandwidth_bytes_per_s * (
            self.cores.count if level.scope == "core" else 1)

    def level_reuse(self, level: MemoryLevel) -> str:
        """``cache`` or ``scratchpad``: the level's ``reuse`` key, by default ``cache`` for
        the chip-scope levels of a ``kind: gpu`` accelerator (its L2) and ``scratchpad``
        otherwise."""
        if level.reuse is not None:
            return level.reuse
        return "cache" if (self.kind == "gpu" and level.scope == "chip") else "scratchpad"

    @property
    def cache_level(self) -> int:
        """Index of the chip-scope cache that serves re-reads (the GEMM model's chip tiles,
        docs/simulator.md): the innermost ``reuse: cache`` level outside the innermost levels
        holding weights and activations (the staging buffers) that holds weights or
        activations; -1 when there is none. The residency planner places nothing in it."""
        mem = self.memory
        sw = next((i for i, m in enumerate(mem) if "weights" in m.holds), 0)
        sa = next((i for i, m in enumerate(mem) if "activations" in m.holds), sw)
        for i, m in enumerate(mem):
            if (i > max(sw, sa) and m.scope == "chip" and self.level_reuse(m) == "cache"
                    and ({"weights", "activations"} & set(m.holds))):
                return i
        return -1

    @property
    def onchip_capacity_bytes(self) -> float:
        """All on-chip memory (core levels over all cores plus chip levels)."""
        return float(sum(self.level_capacity(m) for m in self.memory if m.scope != "offchip"))

    @property
    def onchip_weight_capacity_bytes(self) -> float:
        """On-chip memory that may hold weights (a cache level holds none,
        :attr:`cache_level`)."""
        x = self.cache_level
        return float(sum(self.level_capacity(m) for i, m in enumerate(self.memory)
                         if m.scope != "offchip" and "weights" in m.holds and i != x))

    @property
    def offchip(self) -> MemoryLevel | None:
        return next((m for m in self.memory if m.scope == "offchip"), None)

    @property
    def offchip_bandwidth_bytes_per_s(self) -> float | None:
        """Off-chip read bandwidth, or None when the chip keeps weights on chip only."""
        off = self.offchip
        return None if off is None else off.read_bandwidth_bytes_per_s

    def peak_macs_per_s(self, weight_bits: int, activation_bits: int | None = None) -> float:
        """Peak MAC rate of the whole chip at these precisions (default activation bits)."""
        return (self.cores.count * self.cores.mac_array.macs_per_cycle(weight_bits,
                                                                       activation_bits)
                * self.clock_hz)

    def peak_macs_table(self) -> dict[str, float]:
        """``peak_macs_per_s`` for weight bits 1..16 at the default activation bits."""
        return {str(b): self.peak_macs_per_s(b) for b in range(1, 17)}

    def to_dict(self) -> dict:
        """The normalized spec in base units plus derived figures (``accelsim hw show``)."""
        d = self.model_dump(mode="json", by_alias=False)
        d["derived"] = {
            "peak_macs_per_s": self.peak_macs_table(),
            "onchip_capacity_bytes": self.onchip_capacity_bytes,
            "onchip_weight_capacity_bytes": self.onchip_weight_capacity_bytes,
            "offchip_bandwidth_bytes_per_s": self.offchip_bandwidth_bytes_per_s,
        }
        d["peak_macs_per_s"] = d["derived"]["peak_macs_per_s"]
        d["offchip_bandwidth_bytes_per_s"] = self.offchip_bandwidth_bytes_per_s
        d["onchip_capacity_bytes"] = self.onchip_capacity_bytes
        return d

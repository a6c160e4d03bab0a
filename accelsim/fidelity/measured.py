"""The measured set: published measurements of LLM inference on real hardware.

The set lives in the repository's top-level ``measured/`` folder (``measured/measured.yaml``,
described key by key in ``measured/README.md``) and ships inside the package through the
``accelsim/presets/measured`` link, so :func:`load_measured` finds it from an installed copy
too. Every row is one measured setup: the hardware preset and device count, the model preset,
precision, batch, input and output lengths, the serving software, the measured values
(:data:`METRICS`), the source (title, venue or URL, and where in it) and its ``split``
(``calibration``: used to fit the hardware preset's ``efficiency`` section; ``held-out``:
only checks it).

Examples
--------
>>> ms = load_measured()
>>> len(ms.rows) >= 12 and len({r.hardware for r in ms.rows}) >= 4
True
>>> sorted({r.split for r in ms.rows})
['calibration', 'held-out']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from .._io import exists
from ..config import Bounded, Spec, read_mapping, validate
from ..errors import ConfigError, Problem

__all__ = ["METRICS", "BOUND_METRICS", "MODES", "Precision", "SourceRef", "MeasuredRow",
           "MeasuredSet", "Target", "load_measured", "measured_path", "resolve_target"]

#: Scored metrics: output tokens per second (whole system), output tokens per second per
#: device (as tables "per GPU" give it), time to first token, time per output token (per
#: user), average power of all devices, tokens per second per watt.
METRICS = ("tokens_per_s", "tokens_per_s_per_device", "ttft_s", "tpot_s", "power_w",
           "tokens_per_s_per_w")
#: Published bounds ("under 1 ms per token"): checked, not scored.
BOUND_METRICS = ("tpot_s_max",)
#: How a row's metrics are predicted (docs/fidelity.md, "How a row is predicted").
MODES = ("static-batch", "first-token", "single-stream", "pipeline")

Metric = Literal["tokens_per_s", "tokens_per_s_per_device", "ttft_s", "tpot_s", "power_w",
                 "tokens_per_s_per_w", "tpot_s_max"]


class Precision(Spec):
    label: str = Field(min_length=1)
    weight_bits: Bounded(int, 1, 16)
    activation_bits: Bounded(int, 1, 16)
    kv_bits: Bounded(int, 1, 16)
    embedding_bits: Bounded(int, 1, 16) = 16


class SourceRef(Spec):
    """Where a measurement was published: title, venue (and URL), and where in it."""

    title: str = Field(min_length=1)
    venue: str = Field(min_length=1)
    url: str | None = None
    where: str = Field(min_length=1)


class MeasuredRow(Spec):
    """One measured setup (``measured/README.md``).

    What ran: a chip (``hardware``: a preset name or a path, with ``devices`` of it: more
    than one builds the system from the smallest system preset of that chip that has enough
    devices) or a ``system`` (a system preset, a path or an inline system mapping; its first
    ``devices`` devices); ``plan`` (``"pp=4,tp=2"``, :func:`accelsim.system.parse_plan`)
    says how the model is spread over them. Relative paths are relative to the measured
    file.
    """

    id: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    hardware: str | None = Field(default=None, min_length=1)
    system: str | dict[str, Any] | None = None
    devices: Bounded(int, 1, 1 << 20) | None = None
    plan: str | None = None
    model: str = Field(min_length=1)
    model_published: str | None = None
    precision: Precision
    batch: Bounded(int, 1, 1 << 20)
    input_len: Bounded(int, 1, 1 << 24)
    output_len: Bounded(int, 1, 1 << 24)
    serving: str = Field(min_length=1)
    mode: Literal["static-batch", "first-token", "single-stream", "pipeline"]
    measured: dict[Metric, Bounded(float, 1e-12, 1e15)] = Field(min_length=1)
    source: SourceRef
    split: Literal["calibration", "held-out"]
    #: metrics of a held-out row that were nevertheless used for calibration
    calibration_metrics: list[Metric] = Field(default_factory=list)
    approximate: bool = False
    notes: str = ""

    @field_validator("plan")
    @classmethod
    def _plan_syntax(cls, v):
        if v is not None:
            from ..system.plan import parse_plan
            try:
                parse_plan(v)
            except ConfigError as exc:
                raise ValueError(exc.problems[0].reason) from None
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.hardware is None and self.system is None:
            raise ValueError("give 'hardware' (a chip preset or path) or 'system' (a "
                             "system preset, path or inline mapping)")
        if not any(k in METRICS for k in self.measured):
            raise ValueError(f"measured needs at least one of {', '.join(METRICS)}")
        extra = sorted(set(self.calibration_metrics) - set(self.measured))
        if extra:
            raise ValueError(f"calibration_metrics names metrics not measured: {extra}")
        return self

    def split_of(self, metric: str) -> str:
        """``calibration`` or ``held-out`` for one measured value of the row."""
        return "calibration" if metric in self.calibration_metrics else self.split


@dataclass(frozen=True)
class Target:
    """What a row runs on, resolved: the chip, the system (``None``: one chip, simulated by
    :func:`accelsim.sim.simulate` exactly as before systems existed), the plan and the
    number of devices the measurement used (all of them draw power)."""

    hw: Any
    model: Any
    system: Any = None
    plan: Any = None
    devices: int = 1

    @property
    def kind(self) -> str:
        """The hardware kind the error summary groups by: the chip's name."""
        return self.hw.name


def _near(text: str, base: Path | None) -> str:
    """``text`` as a path next to the measured file when such a file exists there."""
    if base is not None and isinstance(text, str) and not Path(text).is_absolute():
        cand = base / text
        if exists(cand):
            return str(cand)
    return text


def _chip_systems() -> dict:
    """Packaged system presets by device name: ``{chip: [System, ...]}`` (fewest devices
    first), loaded once per process."""
    if "chips" not in _SYSTEMS:
        from ..system.load import list_systems, load_system
        by: dict = {}
        for s in list_systems():
            try:
                sy = load_system(s["name"])
            except ConfigError:
                continue
            by.setdefault(sy.hw.name, []).append(sy)
        for v in by.values():
            v.sort(key=lambda x: (x.num_devices, x.name))
        _SYSTEMS["chips"] = by
    return _SYSTEMS["chips"]


_SYSTEMS: dict = {}


def _problem(row_index: int, row: "MeasuredRow", key: str, exc_or_text, file) -> Problem:
    """One problem of a row: ``file: rows[i].key: row 'id': reason`` (a referenced file's
    own problem keeps its file and key inside the reason)."""
    if isinstance(exc_or_text, ConfigError):
        text = "; ".join(str(p) for p in exc_or_text.problems[:3])
    else:
        text = str(exc_or_text)
    return Problem(f"row '{row.id}': {text}", file=file, key=f"rows[{row_index}].{key}")


def resolve_target(row: MeasuredRow, *, base: Path | None = None, file: str | None = None,
                   index: int = 0, cache: dict | None = None) -> Target:
    """The chip, system, plan and device count of ``row`` (see :class:`MeasuredRow`).

    Raises
    ------
    ConfigError
        One problem naming the file, the row (``rows[i].key``, the row id) and the reason:
        an unknown or broken chip, system or model, a system whose device is not the row's
        ``hardware``, more devices than the system has, no system preset for ``devices`` x a
        chip, or a plan the model or the devices do not allow.
    """
    from ..hw import load_hw
    from ..system.load import load_system
    from ..system.plan import check_plan, parse_plan
    from ..workload import load_workload
    cache = {} if cache is None else cache

    def get(kind, src, loader):
        key = (kind, src if isinstance(src, str) else repr(src))
        if key not in cache:
            cache[key] = loader(src)
        return cache[key]

    def fail(key, why):
        raise ConfigError([_problem(index, row, key, why, file)])

    try:
        model = get("model", _near(row.model, base), load_workload)
    except ConfigError as exc:
        fail("model", exc)
    hw = system = None
    if row.hardware is not None:
        try:
            hw = get("hw", _near(row.hardware, base), load_hw)
        except ConfigError as exc:
            fail("hardware", exc)
    if row.system is not None:
        src = row.system if isinstance(row.system, dict) else _near(row.system, base)
        try:
            system = get("system", src, load_system)
        except ConfigError as exc:
            fail("system", exc)
        if hw is not None and system.hw.name != hw.name:
            fail("hardware", f"the system's device is '{system.hw.name}', not "
                             f"'{hw.name}' (leave 'hardware' out or make them agree)")
        hw = system.hw
    plan = parse_plan(row.plan) if row.plan is not None else None
    devices = row.devices
    if devices is None:
        devices = plan.devices if plan is not None else (
            system.num_devices if system is not None else 1)
    if system is not None:
        if devices > system.num_devices:
            fail("devices", f"{devices} devices, but system '{system.name}' has "
                            f"{system.num_devices}")
        system = system.first(devices)
    elif devices > 1:
        cands = [s for s in _chip_systems().get(hw.name, []) if s.num_devices >= devices]
        if not cands:
            have = ", ".join(f"{s.name} ({s.num_devices})" for s in
                             _chip_systems().get(hw.name, [])) or "none"
            fail("devices", f"no system preset holds {devices} x {hw.name} (presets of "
                            f"that chip: {have}); name one with 'system' (a preset, a "
                            "path or an inline system mapping with its links)")
        system = cands[0].first(devices)
    if system is not None and system.num_devices > 1:
        if plan is None:
            from ..system.simulate import default_plan
            plan = default_plan(system, model)
        try:
            check_plan(plan, model, system.num_devices, system.name)
        except ConfigError as exc:
            fail("plan", exc.problems[0].reason)
    elif plan is not None and plan.devices > 1:
        fail("plan", f"{plan} needs {plan.devices} devices; the row runs on one "
                     "(give 'devices' or a 'system')")
    else:
        system, plan = None, None
    return Target(hw=hw, model=model, system=system, plan=plan, devices=devices)


class MeasuredSet(Spec):
    source_ids: dict[str, Any] = Field(default_factory=dict)
    rows: list[MeasuredRow] = Field(min_length=1)
    _targets: dict = PrivateAttr(default_factory=dict)
    _file: str | None = PrivateAttr(default=None)

    @property
    def file(self) -> str | None:
        """The file the set was read from (``None`` for a set built in code)."""
        return self._file

    @model_validator(mode="after")
    def _unique(self):
        ids = [r.id for r in self.rows]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"row ids must be unique (repeated: {', '.join(dup)})")
        return self

    def row(self, row_id: str) -> MeasuredRow:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise KeyError(row_id)

    def target(self, row_id: str) -> Target:
        """The resolved :class:`Target` of a row (resolved on first use for a set built
        in code; :func:`load_measured` resolves every row)."""
        if row_id not in self._targets:
            i, r = next((i, r) for i, r in enumerate(self.rows) if r.id == row_id)
            self._targets[row_id] = resolve_target(r, index=i)
        return self._targets[row_id]


def measured_path() -> Path:
    """The packaged measured set (``measured/measured.yaml`` at the top of the checkout)."""
    from ..presets import preset_dir
    return preset_dir("measured") / "measured.yaml"


def load_measured(path: str | os.PathLike | None = None) -> MeasuredSet:
    """Read and validate a measured set (default: the packaged one).

    Raises
    ------
    ConfigError
        A missing or malformed file, an unknown key, a bad value (file, key and reason).
    """
    p = Path(path) if path is not None else measured_path()
    ms = validate(MeasuredSet, read_mapping(p), file=str(p))
    problems, cache, rows = [], {}, []
    for i, r in enumerate(ms.rows):
        try:
            t = resolve_target(r, base=p.resolve().parent, file=str(p), index=i, cache=cache)
        except ConfigError as exc:
            problems.extend(exc.problems)
            rows.append(r)
            continue
        ms._targets[r.id] = t
        # the hardware kind is the chip's name (a row may name only a system, or a path)
        rows.append(r if r.hardware == t.kind else r.model_copy(update={"hardware": t.kind}))
    if problems:
        raise ConfigError(problems)
    targets = ms._targets
    out = ms.model_copy(update={"rows": rows})
    out._targets = targets
    out._file = str(p)
    return out

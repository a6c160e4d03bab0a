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
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import Bounded, Spec, read_mapping, validate

__all__ = ["METRICS", "BOUND_METRICS", "MODES", "Precision", "SourceRef", "MeasuredRow",
           "MeasuredSet", "load_measured", "measured_path"]

#: Scored metrics: output tokens per second (whole system), time to first token, time per
#: output token (per user), average power of all devices, tokens per second per watt.
METRICS = ("tokens_per_s", "ttft_s", "tpot_s", "power_w", "tokens_per_s_per_w")
#: Published bounds ("under 1 ms per token"): checked, not scored.
BOUND_METRICS = ("tpot_s_max",)
#: How a row's metrics are predicted (docs/fidelity.md, "How a row is predicted").
MODES = ("static-batch", "first-token", "single-stream", "pipeline")

Metric = Literal["tokens_per_s", "ttft_s", "tpot_s", "power_w", "tokens_per_s_per_w",
                 "tpot_s_max"]


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
    """One measured setup (``measured/README.md``)."""

    id: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    hardware: str = Field(min_length=1)
    devices: Bounded(int, 1, 1 << 20) = 1
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

    @model_validator(mode="after")
    def _check(self):
        if self.mode != "pipeline" and self.devices != 1:
            raise ValueError("only mode 'pipeline' models several devices")
        if not any(k in METRICS for k in self.measured):
            raise ValueError(f"measured needs at least one of {', '.join(METRICS)}")
        extra = sorted(set(self.calibration_metrics) - set(self.measured))
        if extra:
            raise ValueError(f"calibration_metrics names metrics not measured: {extra}")
        return self

    def split_of(self, metric: str) -> str:
        """``calibration`` or ``held-out`` for one measured value of the row."""
        return "calibration" if metric in self.calibration_metrics else self.split


class MeasuredSet(Spec):
    source_ids: dict[str, Any] = Field(default_factory=dict)
    rows: list[MeasuredRow] = Field(min_length=1)

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
    return validate(MeasuredSet, read_mapping(p), file=str(p))

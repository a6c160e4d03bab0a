"""Fidelity against measured silicon: the measured set (``measured/``), predictions of every
row by the simulator, the error report and the per-hardware error the ``validate`` report
prints next to its latency claims (docs/fidelity.md).

Modules: :mod:`~accelsim.fidelity.measured` (the set's schema and loader),
:mod:`~accelsim.fidelity.predict` (one row -> predicted metrics),
:mod:`~accelsim.fidelity.run` (all rows -> errors, summary, CSV/markdown/PNG).
"""

from .measured import (BOUND_METRICS, METRICS, MeasuredRow, MeasuredSet, load_measured,
                       measured_path)
from .predict import Prediction, predict_row
from .run import (CSV_COLUMNS, BoundCheck, ErrorRow, FidelityReport, error_by_kind,
                  run_fidelity, summarize, write_report)

__all__ = ["METRICS", "BOUND_METRICS", "MeasuredRow", "MeasuredSet", "load_measured",
           "measured_path", "Prediction", "predict_row", "CSV_COLUMNS", "BoundCheck",
           "ErrorRow", "FidelityReport", "error_by_kind", "run_fidelity", "summarize",
           "write_report"]

"""Figures from sweep results and simulations (matplotlib, Agg canvas, no pyplot state).

Every function returns a :class:`PlotResult` holding the figure and the data it draws.

- :func:`plot_table`: any column against any other (``accelsim plot``), kinds line,
  scatter, pareto and bar;
- :func:`bits_tradeoff`: latency and memory against average bits per method and chip;
- :func:`pareto_front`: the front of latency, memory and an accuracy proxy;
- :func:`roofline`: compute roofs per precision, the bandwidth slope, operating points;
- :func:`op_breakdown`: compute and stall cycles per op kind (or role, layer, core);
- :func:`core_timeline`: what every core does when.
"""

from ._base import MAXIMIZE, PlotResult, pareto_mask, save_figure
from .figures import bits_tradeoff, core_timeline, op_breakdown, pareto_front, roofline
from .table import KINDS, plot_table

__all__ = ["PlotResult", "plot_table", "KINDS", "bits_tradeoff", "pareto_front", "roofline",
           "op_breakdown", "core_timeline", "pareto_mask", "save_figure", "MAXIMIZE"]

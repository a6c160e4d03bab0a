"""Accelerator descriptions: the YAML schema, loading and derived figures."""

from .load import hw_from_dict, hw_schema, list_hw, load_hw
from .spec import (Accelerator, Arithmetic, BitParallel, BitSerial, Cores, Dma, EnergyModel,
                   Fixed, MacArray, MemoryLevel, Noc, Source, VectorUnit)

__all__ = ["load_hw", "hw_from_dict", "list_hw", "hw_schema", "Accelerator", "Arithmetic",
           "BitParallel", "BitSerial", "Fixed", "MacArray", "MemoryLevel", "Noc", "Dma",
           "EnergyModel", "Source", "Cores", "VectorUnit"]

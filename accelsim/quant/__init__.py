"""Quantizers, quantized experts and MoE layers, and safetensors checkpoint reading.

* :class:`QuantizedTensor`: group-quantized weights in their exact storage format;
* :func:`quantize_rtn`, :func:`gptq` (with :func:`hessian`), :func:`quantize_activations`;
* :class:`Expert`, :class:`MoELayer`, :func:`expert_forward`, :func:`moe_forward`,
  :func:`route`, :func:`quantize_expert`, :func:`quantize_moe`;
* :func:`open_checkpoint` -> :class:`Checkpoint` (routers and experts by family names).

See ``docs/quantization.md``.

Examples
--------
>>> import numpy as np
>>> qt = quantize_rtn(np.linspace(-1, 1, 256, dtype=np.float32).reshape(2, 128), 4)
>>> qt
QuantizedTensor(shape=(2, 128), bits=4, group_size=128, asymmetric, nbytes=134)
"""

from accelsim.quant.checkpoint import FAMILIES, Checkpoint, open_checkpoint
from accelsim.quant.experts import (FFN_KINDS, Expert, MoELayer, MoEOutput, Routing,
                                    expert_forward, linear, moe_forward, quantize_expert,
                                    quantize_moe, route)
from accelsim.quant.gptq import gptq, hessian
from accelsim.quant.rtn import quantize_activations, quantize_rtn
from accelsim.quant.tensor import QuantizedTensor

__all__ = [
    "QuantizedTensor",
    "quantize_rtn",
    "quantize_activations",
    "gptq",
    "hessian",
    "FFN_KINDS",
    "Expert",
    "MoELayer",
    "Routing",
    "MoEOutput",
    "linear",
    "route",
    "expert_forward",
    "moe_forward",
    "quantize_expert",
    "quantize_moe",
    "FAMILIES",
    "Checkpoint",
    "open_checkpoint",
]

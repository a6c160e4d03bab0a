"""Certified guarantees for quantized MoE models and the paper's experiment.

* :func:`expert_output_bound` -- per token, a certified upper bound on how far a quantized
  expert's output is from the float one (optionally for inputs perturbed within ``eps``).
* :func:`certify_routing` / :func:`certified_radius` -- tokens whose top-k expert set
  provably cannot change under input perturbations (and router quantization).
* :func:`certify_stack` -- the bound propagated through a stack of quantized MoE layers
  with residual connections, with the share of tokens whose routing stays certified.
* :func:`run_experiment` -- the paper's pre-train / fine-tune / quantize experiment on a
  synthetic patch model and on scikit-learn's digits.

Derivations and assumptions: ``docs/theory.md``. Nothing heavy runs at import.

Examples
--------
>>> import numpy as np
>>> R = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> certify_routing(R, np.array([[1.0, 0.0]]), eps=0.1, top_k=1)
array([ True])
"""

from .activations import ACTIVATIONS, GELU_LIPSCHITZ, SILU_LIPSCHITZ
from .bounds import (ExpertErrorNorms, ExpertPair, expert_error_norms, expert_output_bound,
                     measured_output_error, pair_output_bound)
from .experiment import METHODS, ExperimentConfig, run_experiment
from .linalg import spectral_norm
from .routing import certified_radius, certify_routing
from .stack import (MoEStack, QuantizedStack, StackCertificate, certify_stack, quantize_stack,
                    synthetic_stack)

__all__ = ["expert_output_bound", "measured_output_error", "expert_error_norms",
           "pair_output_bound", "ExpertPair", "ExpertErrorNorms", "certify_routing",
           "certified_radius", "certify_stack", "quantize_stack", "synthetic_stack",
           "MoEStack", "QuantizedStack", "StackCertificate", "run_experiment",
           "ExperimentConfig", "METHODS", "spectral_norm", "ACTIVATIONS", "SILU_LIPSCHITZ",
           "GELU_LIPSCHITZ"]

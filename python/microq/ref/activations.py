"""Float definitions of the elementwise activations (ir.ActAttrs.kind), float64 numpy.

One definition serves the float executor and the quantizer, which samples it into 256-entry
int8 lookup tables.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import ActAttrs


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def apply(attrs: ActAttrs, x: np.ndarray) -> np.ndarray:
    """Evaluate the activation described by `attrs` on x (any shape), in float64."""
    x = np.asarray(x, dtype=np.float64)
    k = attrs.kind
    if k == "relu":
        return np.maximum(x, 0.0)
    if k == "clip":
        return np.clip(x, attrs.lo, attrs.hi)
    if k == "leaky_relu":
        return np.where(x >= 0, x, attrs.alpha * x)
    if k == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if k == "tanh":
        return np.tanh(x)
    if k == "hard_sigmoid":
        return np.clip(attrs.alpha * x + attrs.beta, 0.0, 1.0)
    if k == "hard_swish":
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if k == "silu":
        return x / (1.0 + np.exp(-x))
    if k == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if k == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if k == "elu":
        return np.where(x >= 0, x, attrs.alpha * (np.exp(np.minimum(x, 0)) - 1.0))
    if k == "softplus":
        return np.logaddexp(0.0, x)
    if k == "mish":
        return x * np.tanh(np.logaddexp(0.0, x))
    if k == "identity":
        return x
    raise ValueError(f"unknown activation kind {k!r}")


KINDS = (
    "relu", "clip", "leaky_relu", "sigmoid", "tanh", "hard_sigmoid", "hard_swish", "silu",
    "gelu", "gelu_tanh", "elu", "softplus", "mish", "identity",
)

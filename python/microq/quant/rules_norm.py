"""Quantizer rules and scheme math of group / instance normalization (ir GroupNorm ->
qir groupnorm): the statistics are exact integers, gamma and beta fold into per-channel
multipliers and biases, eps into the variance's integer domain."""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import MicroqError
from ..qir import GroupNormParams
from ..ref.arith import quantize_multiplier, round_half_away
from ..ref.groupnorm import NORM_BITS, OUT_BITS, var_bits_for
from .scheme import act_range

BIAS_MAX = 1 << 29  # |beta / s_out| beyond 2^21 output steps saturates anyway


def groupnorm_params(
    s_in: float,
    zp_in: int,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    groups: int,
    spatial: int,
    s_out: float,
    zp_out: int,
    act_min: int = -128,
    act_max: int = 127,
    rounding: str = "double",
    what: str = "GroupNorm",
) -> GroupNormParams:
    """int8 group normalization of [N, spatial, C = len(gamma)] in `groups` groups.

    count = spatial * C / groups values share a mean and variance; the kernel's variance is
    count^2 * 2^var_bits * var in input steps squared, so eps becomes
    round(eps / s_in^2 * count^2 * 2^var_bits). gamma[c] / s_out is a signed per-channel
    multiplier scaled by 2^(8 - 20), beta[c] / s_out is added with 8 fractional bits. zp_in
    cancels in x - mean."""
    del zp_in
    for name, s in (("input scale", s_in), ("output scale", s_out)):
        if not (s > 0 and math.isfinite(s)):
            raise MicroqError(f"{what} {name} must be finite and > 0, got {s!r}")
    gamma = np.asarray(gamma, np.float64).reshape(-1)
    beta = np.asarray(beta, np.float64).reshape(-1)
    c = gamma.size
    if c < 1 or beta.size != c or not (np.isfinite(gamma).all() and np.isfinite(beta).all()):
        raise MicroqError(f"{what} gamma ({c}) and beta ({beta.size}) must be finite, "
                          "one value per channel")
    if groups < 1 or c % groups:
        raise MicroqError(f"{what}: {c} channels do not split into {groups} groups")
    if not (eps >= 0 and math.isfinite(eps)):
        raise MicroqError(f"{what} epsilon must be finite and >= 0, got {eps!r}")
    count = spatial * (c // groups)
    try:
        vb = var_bits_for(count)
    except ValueError:
        raise MicroqError(f"{what} normalizes {count} values per group: at most "
                          f"{1 << 18} are supported") from None
    eps_q = round_half_away(eps / (s_in * s_in) * float(count) ** 2 * (1 << vb))
    if eps_q > 1 << 61:
        raise MicroqError(f"{what} epsilon {eps!r} is too large for input scale {s_in!r}")
    mult = np.zeros(c, np.int32)
    shift = np.zeros(c, np.int32)
    unit = 2.0 ** (OUT_BITS - NORM_BITS)
    for i, g in enumerate(gamma):
        m, sh = quantize_multiplier(abs(g) / s_out * unit, rounding)
        if sh > 0:
            raise MicroqError(f"{what} gamma[{i}] / output scale = {abs(g) / s_out:.4g} "
                              f"exceeds {1 / unit:.0f}: the output scale is too small")
        mult[i], shift[i] = (-m if g < 0 else m), sh
    bias = round_half_away(beta / s_out * (1 << OUT_BITS))
    bias = np.clip(bias, -BIAS_MAX, BIAS_MAX).astype(np.int32)
    return GroupNormParams(groups=int(groups), var_bits=vb, eps=int(eps_q),
                           output_offset=int(zp_out), act_min=int(act_min),
                           act_max=int(act_max), multiplier=mult, shift=shift, bias=bias)


def group_norm(qz, node: ir.Node) -> None:
    """ir GroupNorm -> qir groupnorm; `qz` is the running quant.quantize._Quantizer."""
    a: ir.GroupNormAttrs = node.attrs
    x, gamma, beta = node.inputs
    out = node.outputs[0]
    qi = qz.q(x)
    qz.add_tensor(out, qz.calibrated(out))
    qo = qz.q(out)
    shape = qz.g.tensors[x].shape
    spatial = int(np.prod(shape[1:-1], dtype=np.int64))
    what = f"node '{node.name}': " + ("InstanceNorm" if a.groups == shape[-1] else "GroupNorm")
    lo, hi = act_range(qo.scale, qo.zero_point, a.act_min, a.act_max)
    p = groupnorm_params(qi.scale, qi.zero_point, qz.g.tensors[gamma].const,
                         qz.g.tensors[beta].const, a.eps, a.groups, spatial, qo.scale,
                         qo.zero_point, lo, hi, rounding=qz.rounding, what=what)
    qz.emit(node, "groupnorm", [x], [out], p)

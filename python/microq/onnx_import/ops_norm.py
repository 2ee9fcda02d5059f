"""ONNX frontend converters for per-sample normalization over spatial positions:
InstanceNormalization and GroupNormalization (opset 18: scale/bias per group; opset 21: per
channel) -> IR GroupNorm with the channels last physically (NHWC / NLC). The exporters'
Reshape -> InstanceNormalization -> Reshape -> Mul -> Add form of GroupNorm is rewritten into
GroupNormalization by patterns.fuse_group_norm."""

from __future__ import annotations

import numpy as np

from microq import ir
from microq.onnx_import.context import Ctx, Unsupported


def channels_last(rank: int) -> tuple[int, ...]:
    """physical = logical.transpose(perm) with axis 1 (channels) moved last: NHWC, NLC."""
    return (0,) + tuple(range(2, rank)) + (1,)


def _param(cx: Ctx, idx: int, what: str, c: int, groups: int) -> np.ndarray:
    """Scale / bias input idx as one float per channel (a per-group one is repeated)."""
    arr = cx.const(idx)
    if arr is None:
        raise Unsupported(f"{cx.node.op_type} with a non-constant {what}")
    flat = np.asarray(arr, np.float32).reshape(-1)
    if flat.size == c:
        return flat
    if flat.size == groups:  # GroupNormalization-18: one value per group
        return np.repeat(flat, c // groups)
    if flat.size == 1:
        return np.full(c, flat[0], np.float32)
    raise Unsupported(f"{cx.node.op_type} {what} of shape {list(arr.shape)} for {c} channels "
                      f"in {groups} groups (needs {c} or {groups} values)")


def _group_norm(cx: Ctx, groups: int) -> None:
    logical = cx.shape(cx.node.input[0])
    rank = len(logical)
    if rank < 3:
        raise Unsupported(f"{cx.node.op_type} of a rank-{rank} input (needs [N, C, spatial..])")
    c = logical[1]
    if groups < 1 or c % groups:
        raise Unsupported(f"{cx.node.op_type}: {c} channels do not split into {groups} groups")
    gamma = _param(cx, 1, "scale", c, groups)
    beta = _param(cx, 2, "bias", c, groups)
    eps = float(cx.attrs().get("epsilon", 1e-5))
    target = channels_last(rank)
    v = cx.b.to_perm(cx.value(0), logical, target, cx.source)
    g = cx.b.const(f"{cx.out()}__gamma", gamma)
    b = cx.b.const(f"{cx.out()}__beta", beta)
    y = cx.b.add("GroupNorm", [v.name, g, b], cx.out(), cx.b.shape(v.name),
                 ir.GroupNormAttrs(groups, eps), cx.name, cx.source)
    cx.set(y, target)


def instance_norm(cx: Ctx) -> None:
    """InstanceNormalization: every channel normalized over its spatial positions."""
    _group_norm(cx, cx.shape(cx.node.input[0])[1] if len(cx.shape(cx.node.input[0])) > 1 else 0)


def group_norm(cx: Ctx) -> None:
    """GroupNormalization (opset 18 per-group or opset 21 per-channel scale and bias)."""
    a = cx.attrs()
    if "num_groups" not in a:
        raise Unsupported("GroupNormalization without num_groups")
    _group_norm(cx, int(a["num_groups"]))

"""ONNX frontend, step 3: graph fusions on the float IR (BN/affine into Conv/FC, ReLU/Clip, Pad)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from microq import ir

WEIGHTED = ("Conv2D", "FullyConnected", "ConvTranspose2D", "Conv3D")


def fuse(g: ir.Graph) -> None:
    """Apply every fusion until none applies, then drop tensors nobody uses."""
    steps = (fuse_silu, fuse_pad_into_conv, merge_reshapes, fold_affine, fuse_activation,
             fold_scale_into_matmul)
    changed = True
    while changed:  # a fusion can open another (a fused Conv1D ReLU leaves Reshape(Reshape))
        changed = False
        for step in steps:
            while step(g):
                changed = True
    prune(g)


def _only_consumer(g: ir.Graph, tensor: str) -> ir.Node | None:
    if tensor in g.outputs:
        return None
    users = g.consumers(tensor)
    return users[0] if len(users) == 1 else None


def _merge(g: ir.Graph, first: ir.Node, second: ir.Node) -> None:
    """`first` takes over `second`'s outputs and ONNX sources; `second` disappears."""
    first.outputs = list(second.outputs)
    first.source += [s for s in second.source if s not in first.source]
    g.nodes.remove(second)


def _has_act(attrs: object) -> bool:
    return attrs.act_min != -math.inf or attrs.act_max != math.inf


def _set_const(g: ir.Graph, node: ir.Node, idx: int, arr: np.ndarray) -> None:
    """Replace const input `idx` of `node`, copying when another node shares the tensor."""
    name = node.inputs[idx]
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if len(g.consumers(name)) > 1:
        base, i = f"{name}__{node.name}", 1
        name = base
        while name in g.tensors:
            name, i = f"{base}_{i}", i + 1
        node.inputs[idx] = name
    g.tensors[name] = ir.Tensor(name, arr.shape, arr)


def _channel_vector(c: np.ndarray, cout: int) -> np.ndarray | None:
    """A constant that scales/shifts each output channel (last axis), as [cout]; else None."""
    if c.size == 1:
        return np.full(cout, c.reshape(-1)[0], np.float32)
    if c.shape[-1] == cout and c.size == cout:
        return c.reshape(cout)
    return None


def fold_affine(g: ir.Graph) -> bool:
    """Conv2D/FC followed by a per-channel affine (BN as 1x1 depthwise, Mul/Add/Sub by a const)."""
    for p in g.nodes:
        if p.op not in WEIGHTED or _has_act(p.attrs):
            continue
        c = _only_consumer(g, p.outputs[0])
        if c is None:
            continue
        w, b = g.tensors[p.inputs[1]].const, g.tensors[p.inputs[2]].const
        cout = w.shape[0]
        scale = shift = None
        if c.op == "Conv2D" and _is_channel_affine(g, c, cout):
            scale, shift = g.tensors[c.inputs[1]].const.reshape(cout), g.tensors[c.inputs[2]].const
        elif c.op in ("Mul", "Add", "Sub") and not _has_act(c.attrs):
            other = c.inputs[1] if c.inputs[0] == p.outputs[0] else c.inputs[0]
            k = g.tensors[other].const
            if k is None or (c.op == "Sub" and other == c.inputs[0]):
                continue
            vec = _channel_vector(k, cout)
            if vec is None:
                continue
            if c.op == "Mul":
                scale, shift = vec, np.zeros(cout, np.float32)
            else:
                scale, shift = np.ones(cout, np.float32), (vec if c.op == "Add" else -vec)
        if scale is None:
            continue
        _set_const(g, p, 1, w * scale.reshape((cout,) + (1,) * (w.ndim - 1)))
        _set_const(g, p, 2, b * scale + shift)
        if c.op == "Conv2D":
            p.attrs = dataclasses.replace(p.attrs, act_min=c.attrs.act_min, act_max=c.attrs.act_max)
        _merge(g, p, c)
        return True
    return False


def _is_channel_affine(g: ir.Graph, c: ir.Node, cout: int) -> bool:
    w = g.tensors[c.inputs[1]].const
    a = c.attrs
    return (
        w.shape == (cout, 1, 1, 1)
        and a.groups == cout
        and a.stride == (1, 1)
        and a.pads == (0, 0, 0, 0)
    )


def fuse_activation(g: ir.Graph) -> bool:
    """ReLU/Clip after Conv2D/FC/Add/Sub/GroupNorm (its only consumer) becomes the node's
    output clamp.

    A Reshape in between (a Conv1D's [N, 1, L, C] result viewed as [N, L, C]) does not stop it:
    an elementwise clamp commutes with a reshape, so the Reshape takes the activation's place."""
    for p in g.nodes:
        if p.op not in WEIGHTED + ("Add", "Sub", "GroupNorm") or _has_act(p.attrs):
            continue
        c = _only_consumer(g, p.outputs[0])
        view = None
        if c is not None and c.op == "Reshape":
            view, c = c, _only_consumer(g, c.outputs[0])
        if c is None or c.op != "Activation" or c.attrs.kind not in ("relu", "clip"):
            continue
        lo, hi = (0.0, math.inf) if c.attrs.kind == "relu" else (c.attrs.lo, c.attrs.hi)
        p.attrs = dataclasses.replace(p.attrs, act_min=lo, act_max=hi)
        if view is None:
            _merge(g, p, c)
        else:  # p -> view -> c  becomes  p (clamped) -> view, writing c's output
            view.outputs = list(c.outputs)
            p.source += [s for s in c.source if s not in p.source]
            g.nodes.remove(c)
        return True
    return False


def fold_scale_into_matmul(g: ir.Graph) -> bool:
    """Mul by a scalar constant feeding only a MatMul of two activations (through Reshapes and
    Transposes, which commute with it) becomes the MatMul's alpha: torch's SDPA export scales
    q and k by d**-0.25 each; one requantization less per operand."""
    for m in g.nodes:
        if m.op != "MatMul":
            continue
        for i in (0, 1):
            reader, t = m, m.inputs[i]
            p = g.producer(t)
            while (p is not None and p.op in ("Reshape", "Transpose")
                   and _only_consumer(g, p.outputs[0]) is reader):
                reader, t = p, p.inputs[0]
                p = g.producer(t)
            if p is None or p.op != "Mul" or _has_act(p.attrs) or _only_consumer(
                    g, p.outputs[0]) is not reader:
                continue
            consts = [j for j in (0, 1) if g.tensors[p.inputs[j]].const is not None]
            if len(consts) != 1 or g.tensors[p.inputs[consts[0]]].const.size != 1:
                continue
            c = float(g.tensors[p.inputs[consts[0]]].const.reshape(-1)[0])
            x = p.inputs[1 - consts[0]]
            if g.tensors[x].shape != g.tensors[p.outputs[0]].shape:
                continue  # the Mul broadcast x up: keep it
            reader.inputs = [x if j == p.outputs[0] else j for j in reader.inputs]
            m.attrs = dataclasses.replace(m.attrs, alpha=m.attrs.alpha * c)
            m.source = p.source + [s for s in m.source if s not in p.source]
            g.nodes.remove(p)
            return True
    return False


def fuse_pad_into_conv(g: ir.Graph) -> bool:
    """A zero Pad of H/W only, feeding only a Conv2D, becomes the conv's padding."""
    for p in g.nodes:
        if p.op != "Pad" or p.attrs.value != 0.0 or len(p.attrs.pads) != 4:
            continue
        (n0, n1), (t, bo), (le, r), (c0, c1) = p.attrs.pads
        c = _only_consumer(g, p.outputs[0])
        if c is None or c.op != "Conv2D" or c.inputs[0] != p.outputs[0] or n0 + n1 + c0 + c1:
            continue
        pt, pl, pb, pr = c.attrs.pads
        c.attrs = dataclasses.replace(c.attrs, pads=(pt + t, pl + le, pb + bo, pr + r))
        c.inputs[0] = p.inputs[0]
        c.source = p.source + [s for s in c.source if s not in p.source]
        g.nodes.remove(p)
        return True
    return False


def merge_reshapes(g: ir.Graph) -> bool:
    """Reshape of a Reshape is one Reshape; a Reshape to the same shape disappears."""
    for n in g.nodes:
        if n.op != "Reshape":
            continue
        src = g.producer(n.inputs[0])
        if src is not None and src.op == "Reshape" and _only_consumer(g, src.outputs[0]) is n:
            n.inputs = list(src.inputs)
            n.source = src.source + [s for s in n.source if s not in src.source]
            g.nodes.remove(src)
            return True
        if g.tensors[n.inputs[0]].shape == g.tensors[n.outputs[0]].shape:
            if n.outputs[0] in g.outputs:
                continue
            for user in g.consumers(n.outputs[0]):
                user.inputs = [n.inputs[0] if i == n.outputs[0] else i for i in user.inputs]
            g.nodes.remove(n)
            return True
    return False


def fuse_silu(g: ir.Graph) -> bool:
    """Mul(x, Sigmoid(x)) -> Activation silu."""
    for m in g.nodes:
        if m.op != "Mul" or len(m.inputs) != 2:
            continue
        for i in (0, 1):
            s = g.producer(m.inputs[i])
            x = m.inputs[1 - i]
            if (s is not None and s.op == "Activation" and s.attrs.kind == "sigmoid"
                    and s.inputs[0] == x and _only_consumer(g, s.outputs[0]) is m):
                m.op, m.inputs, m.attrs = "Activation", [x], ir.ActAttrs("silu")
                m.source = s.source + [t for t in m.source if t not in s.source]
                g.nodes.remove(s)
                return True
    return False


def prune(g: ir.Graph) -> None:
    used = set(g.inputs) | set(g.outputs)
    for n in g.nodes:
        used.update(n.inputs)
        used.update(n.outputs)
    for name in [t for t in g.tensors if t not in used]:
        del g.tensors[name]

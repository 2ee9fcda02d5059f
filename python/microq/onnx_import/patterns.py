"""ONNX frontend, step 2a: rewrite multi-node ONNX patterns into one op before conversion (GELU,
LayerNorm, GroupNorm, scaled MatMul, gathered linear interpolation)."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

Named = tuple[onnx.NodeProto, str]  # a node and its unique name


def _scalar(consts: dict[str, np.ndarray], name: str) -> float | None:
    c = consts.get(name)
    if c is None or c.size != 1:
        return None
    return float(c.reshape(-1)[0])


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def fuse_erf_gelu(
    nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]
) -> tuple[list[Named], dict[str, list[str]]]:
    """x * 0.5 * (1 + Erf(x / sqrt2)) in the exporters' three orders -> one Gelu node.

    Returns the new node list and, for each Gelu, the ONNX node names it replaces.
    """
    users: dict[str, list[Named]] = {}
    for nn in nodes:
        for i in nn[0].input:
            users.setdefault(i, []).append(nn)

    def only_user(t: str, op: str) -> Named | None:
        u = users.get(t, [])
        return u[0] if len(u) == 1 and u[0][0].op_type == op and t not in outputs else None

    producer = {o: nn for nn in nodes for o in nn[0].output}
    drop: set[int] = set()
    replace: dict[int, Named] = {}
    merged: dict[str, list[str]] = {}
    for erf, erf_name in nodes:
        if erf.op_type != "Erf":
            continue
        pre = producer.get(erf.input[0])
        if pre is None or pre[0].op_type not in ("Div", "Mul") or len(users[erf.input[0]]) != 1:
            continue
        k = _scalar(consts, pre[0].input[1])
        want = math.sqrt(2) if pre[0].op_type == "Div" else 1 / math.sqrt(2)
        if k is None or abs(k - want) > 1e-3:
            continue
        x = pre[0].input[0]
        add = only_user(erf.output[0], "Add")
        if add is None or _scalar(consts, _other(add[0], erf.output[0])) != 1.0:
            continue
        m1 = only_user(add[0].output[0], "Mul")
        if m1 is None:
            continue
        group = [pre, (erf, erf_name), add, m1]
        other = _other(m1[0], add[0].output[0])
        if other == x:  # (x * (1 + erf)) * 0.5
            last = only_user(m1[0].output[0], "Mul")
            ok = last is not None and _scalar(consts, _other(last[0], m1[0].output[0])) == 0.5
        elif _scalar(consts, other) == 0.5:  # x * (0.5 * (1 + erf)) (the dynamo exporter)
            last = only_user(m1[0].output[0], "Mul")
            ok = last is not None and _other(last[0], m1[0].output[0]) == x
        else:  # (x * 0.5) * (1 + erf)
            half = producer.get(other)
            last = m1
            ok = (half is not None and half[0].op_type == "Mul" and x in half[0].input
                  and _scalar(consts, _other(half[0], x)) == 0.5 and len(users[other]) == 1)
            group.insert(0, half)
        if not ok:
            continue
        if last is not m1:
            group.append(last)
        ids = [nodes.index(g) for g in group]
        gelu = helper.make_node("Gelu", [x], [last[0].output[0]], name=last[1])
        replace[ids[-1]] = (gelu, last[1])
        drop.update(ids[:-1])
        merged[last[1]] = [g[1] for g in group]
    out = [replace.get(i, nn) for i, nn in enumerate(nodes) if i not in drop]
    return out, merged


def _users(nodes: list[Named]) -> dict[str, list[Named]]:
    users: dict[str, list[Named]] = {}
    for nn in nodes:
        for i in dict.fromkeys(nn[0].input):  # Mul(d, d) is one user of d
            users.setdefault(i, []).append(nn)
    return users


def _near(v: float | None, want: float, tol: float = 1e-3) -> bool:
    return v is not None and abs(v - want) <= tol * max(1.0, abs(want))


class _Rewriter:
    """Replaces matched node groups by one node each (at the position of the group's last)."""

    def __init__(self, nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]):
        self.nodes, self.consts, self.outputs = nodes, consts, outputs
        self.users = _users(nodes)
        self.producer = {o: nn for nn in nodes for o in nn[0].output}
        self.index = {id(nn[0]): i for i, nn in enumerate(nodes)}
        self.drop: set[int] = set()
        self.replace: dict[int, Named] = {}
        self.merged: dict[str, list[str]] = {}

    def only_user(self, t: str, *ops: str) -> Named | None:
        u = self.users.get(t, [])
        if len(u) == 1 and u[0][0].op_type in ops and t not in self.outputs:
            return u[0]
        return None

    def made_by(self, t: str, *ops: str) -> Named | None:
        p = self.producer.get(t)
        return p if p is not None and p[0].op_type in ops else None

    def scalar(self, nn: Named, t: str) -> float | None:
        """The scalar constant operand of a binary node whose other operand is t."""
        return _scalar(self.consts, _other(nn[0], t)) if t in nn[0].input else None

    def commit(self, group: list[Named], new: onnx.NodeProto, name: str = "") -> None:
        """Replace `group` by `new`, named `name` or like the group's last node."""
        ids = sorted(self.index[id(g[0])] for g in group)
        if any(i in self.drop or i in self.replace for i in ids):
            return
        name = name or self.nodes[ids[-1]][1]
        new.name = name
        self.replace[ids[-1]] = (new, name)
        self.drop.update(ids[:-1])
        self.merged[name] = [self.nodes[i][1] for i in ids]

    def result(self) -> tuple[list[Named], dict[str, list[str]]]:
        out = [self.replace.get(i, nn) for i, nn in enumerate(self.nodes) if i not in self.drop]
        return out, self.merged


def _last_axis(rw: _Rewriter, nn: Named, rank: int) -> bool:
    node = nn[0]
    axes = None
    for a in node.attribute:
        if a.name == "axes":
            axes = list(helper.get_attribute_value(a))
        if a.name == "keepdims" and helper.get_attribute_value(a) == 0:
            return False
    if len(node.input) > 1 and node.input[1]:
        c = rw.consts.get(node.input[1])
        axes = None if c is None else [int(v) for v in c.reshape(-1)]
    return axes is not None and [ax % rank for ax in axes] == [rank - 1]


def fuse_layer_norm(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str],
) -> tuple[list[Named], dict[str, list[str]]]:
    """The decomposed LayerNorm (TorchScript before opset 17, tf2onnx) -> LayerNormalization:
    d = x - ReduceMean(x); d / Sqrt(ReduceMean(d^2) + eps) [* gamma] [+ beta], over the last
    axis; d^2 as Pow(d, 2) or Mul(d, d), the division as Div or Mul by Reciprocal."""
    rw = _Rewriter(nodes, consts, outputs)
    for r1 in nodes:
        if r1[0].op_type != "ReduceMean":
            continue
        x = r1[0].input[0]
        rank = len(shapes.get(x, ()))
        if rank < 2 or not _last_axis(rw, r1, rank):
            continue
        sub = rw.only_user(r1[0].output[0], "Sub")
        if sub is None or sub[0].input[0] != x or x in rw.outputs:
            continue
        d = sub[0].output[0]
        du = rw.users.get(d, [])
        sq = [u for u in du if (u[0].op_type == "Pow" and _scalar(consts, u[0].input[1]) == 2.0)
              or (u[0].op_type == "Mul" and list(u[0].input) == [d, d])]
        if len(du) != 2 or len(sq) != 1 or d in outputs:
            continue
        r2 = rw.only_user(sq[0][0].output[0], "ReduceMean")
        if r2 is None or not _last_axis(rw, r2, rank):
            continue
        add = rw.only_user(r2[0].output[0], "Add")
        eps = add and rw.scalar(add, r2[0].output[0])
        sqrt = add and rw.only_user(add[0].output[0], "Sqrt")
        if sqrt is None or eps is None:
            continue
        group = [r1, sub, sq[0], r2, add, sqrt]
        div = [u for u in du if u is not sq[0]][0]
        s = sqrt[0].output[0]
        if div[0].op_type == "Div" and list(div[0].input) == [d, s]:
            group.append(div)
        else:
            rec = rw.only_user(s, "Reciprocal")
            if rec is None or div[0].op_type != "Mul" or _other(div[0], d) != rec[0].output[0]:
                continue
            group += [rec, div]
        y = div[0].output[0]
        width = shapes[x][-1]
        gamma = beta = None
        mul = rw.only_user(y, "Mul")
        if mul is not None and consts.get(_other(mul[0], y)) is not None:
            gamma, y = _other(mul[0], y), mul[0].output[0]
            group.append(mul)
        badd = rw.only_user(y, "Add")
        if badd is not None and consts.get(_other(badd[0], y)) is not None:
            beta, y = _other(badd[0], y), badd[0].output[0]
            group.append(badd)
        if gamma is None:
            gamma = f"{y}__gamma"
            consts[gamma] = np.ones(width, np.float32)
        ins = [x, gamma] + ([beta] if beta else [])
        rw.commit(group, helper.make_node("LayerNormalization", ins, [y], axis=-1, epsilon=eps))
    return rw.result()


def _cube(rw: _Rewriter, t: str, x: str) -> list[Named] | None:
    """The nodes computing t = x^3 as Pow(x, 3), x * (x * x) or (x * x) * x, else None."""
    p = rw.made_by(t, "Pow", "Mul")
    if p is None:
        return None
    if p[0].op_type == "Pow":
        ok = p[0].input[0] == x and _scalar(rw.consts, p[0].input[1]) == 3.0
        return [p] if ok else None
    if x not in p[0].input:
        return None
    sq = rw.made_by(_other(p[0], x), "Mul")
    return [sq, p] if sq is not None and list(sq[0].input) == [x, x] else None


def _const_operand(rw: _Rewriter, nn: Named) -> tuple[str, float | None]:
    """(the activation operand, the scalar constant) of a binary node."""
    a, b = nn[0].input[0], nn[0].input[1]
    kb = _scalar(rw.consts, b)
    return (a, kb) if kb is not None else (b, _scalar(rw.consts, a))


def fuse_tanh_gelu(
    nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]
) -> tuple[list[Named], dict[str, list[str]]]:
    """0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) -> Gelu(approximate="tanh")."""
    rw = _Rewriter(nodes, consts, outputs)
    for t in nodes:
        if t[0].op_type != "Tanh":
            continue
        inner = rw.made_by(t[0].input[0], "Mul")
        s, beta = _const_operand(rw, inner) if inner else ("", None)
        add = rw.made_by(s, "Add")
        if not _near(beta, math.sqrt(2 / math.pi)) or add is None:
            continue
        found = None
        for x in add[0].input:
            k = rw.made_by(_other(add[0], x), "Mul")
            cube_t, kappa = _const_operand(rw, k) if k else ("", None)
            cube = _cube(rw, cube_t, x) if _near(kappa, 0.044715) else None
            if cube is not None:
                found = x, [k] + cube
        if found is None:
            continue
        x, group = found[0], found[1] + [add, inner, t]
        one = rw.only_user(t[0].output[0], "Add")
        m1 = one and rw.scalar(one, t[0].output[0]) == 1.0 and rw.only_user(one[0].output[0],
                                                                            "Mul")
        if not m1:
            continue
        group += [one, m1]
        o = _other(m1[0], one[0].output[0])
        half = rw.made_by(o, "Mul")
        if o == x:  # (x * (1 + tanh)) * 0.5
            last = rw.only_user(m1[0].output[0], "Mul")
            if last is None or rw.scalar(last, m1[0].output[0]) != 0.5:
                continue
            group.append(last)
        elif half is not None and x in half[0].input and rw.scalar(half, x) == 0.5:
            last = m1  # (x * 0.5) * (1 + tanh)
            group.append(half)
        else:
            continue
        inner_only = all(len(rw.users.get(g[0].output[0], [])) == 1 for g in group if g is not last)
        if inner_only:
            rw.commit(group, helper.make_node("Gelu", [x], [last[0].output[0]],
                                              approximate="tanh"))
    return rw.result()


def fuse_matmul_scale(
    nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]
) -> tuple[list[Named], dict[str, list[str]]]:
    """MatMul of two activations then Mul / Div by a scalar constant (attention's 1/sqrt(d))
    -> one MatMul node with a microq `alpha` attribute (the scale rides on the requantization)."""
    rw = _Rewriter(nodes, consts, outputs)
    for mm in nodes:
        a, b = (mm[0].input[i] for i in (0, 1)) if mm[0].op_type == "MatMul" else ("", "")
        if not a or a in consts or b in consts:
            continue
        y = mm[0].output[0]
        sc = rw.only_user(y, "Mul", "Div")
        k = sc and rw.scalar(sc, y)
        if k is None or k == 0 or (sc[0].op_type == "Div" and sc[0].input[0] != y):
            continue
        alpha = 1.0 / k if sc[0].op_type == "Div" else k
        rw.commit([mm, sc], helper.make_node("MatMul", [a, b], [sc[0].output[0]], alpha=alpha),
                  mm[1])  # the scores keep the MatMul's name in reports
    return rw.result()


def _gathered(rw: _Rewriter, t: str):
    """t = x gathered along one axis by constant indices, as Gather(x, idx, axis) or the dynamo
    exporter's Transpose(GatherND(Transpose(x, p), idx[K, 1]), p^-1): (x, axis, idx, nodes)."""
    g = rw.made_by(t, "Gather")
    if g is not None:
        idx = rw.consts.get(g[0].input[1])
        axis = next((helper.get_attribute_value(a) for a in g[0].attribute if a.name == "axis"), 0)
        if idx is None or idx.ndim != 1:
            return None
        return g[0].input[0], int(axis), idx, [g]
    back = rw.made_by(t, "Transpose")
    g = back and rw.made_by(back[0].input[0], "GatherND")
    front = g and rw.made_by(g[0].input[0], "Transpose")
    if front is None or any(a.name == "batch_dims" and a.i for a in g[0].attribute):
        return None
    idx = rw.consts.get(g[0].input[1])
    pf, pb = ([int(v) for v in helper.get_attribute_value(a)]
              for n in (front, back) for a in n[0].attribute if a.name == "perm")
    if idx is None or idx.ndim != 2 or idx.shape[1] != 1 or [pf[i] for i in pb] != sorted(pf):
        return None
    return front[0].input[0], pf[0], idx.reshape(-1), [front, g, back]


def fuse_gather_lerp(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str],
) -> tuple[list[Named], dict[str, list[str]]]:
    """a + (b - a) * w with a, b = x gathered along one spatial axis by constant indices and w a
    constant weight per output index in [0, 1] (the dynamo exporter's upsample_linear1d) ->
    one Resize (linear) carrying those taps (microq_axis / microq_lo / microq_hi / microq_frac).
    """
    rw = _Rewriter(nodes, consts, outputs)
    for add in nodes:
        if add[0].op_type != "Add" or len(add[0].input) != 2:
            continue
        for a_name in add[0].input:
            m = rw.made_by(_other(add[0], a_name), "Mul")
            if m is None or rw.only_user(m[0].output[0], "Add") is not add:
                continue
            w_name = next((i for i in m[0].input if i in consts), None)
            s = w_name and rw.made_by(_other(m[0], w_name), "Sub")
            if s is None or s[0].input[1] != a_name or rw.only_user(s[0].output[0], "Mul") is not m:
                continue
            ga, gb = _gathered(rw, a_name), _gathered(rw, s[0].input[0])
            if ga is None or gb is None or ga[:2] != gb[:2] or len(ga[2]) != len(gb[2]):
                continue
            x, axis, lo, hi = ga[0], ga[1], ga[2], gb[2]
            shape = shapes.get(x)
            w = consts[w_name]
            if shape is None or len(shape) not in (3, 4) or not 2 <= axis % len(shape):
                continue
            axis %= len(shape)
            trail = (1,) * (len(shape) - 1 - axis)
            while w.ndim > 1 and w.shape[0] == 1:
                w = w[0]
            if w.shape != (len(lo),) + trail or not (0 <= w.min() and w.max() <= 1):
                continue
            if not (0 <= min(lo.min(), hi.min()) and max(lo.max(), hi.max()) < shape[axis]):
                continue
            if len(rw.users.get(a_name, [])) != 2 or len(rw.users.get(s[0].input[0], [])) != 1:
                continue
            front = ga[3][0][0].output[0]
            if ga[3][0] is not gb[3][0] and len(ga[3]) == 3:
                continue  # two different front transposes: leave it to the converters
            if len(ga[3]) == 3 and len(rw.users.get(front, [])) != 2:
                continue
            nodes_in = ga[3] + [n for n in gb[3] if n is not ga[3][0]] + [s, m, add]
            new = helper.make_node(
                "Resize", [x], [add[0].output[0]], mode="linear", microq_axis=axis,
                microq_lo=[int(v) for v in lo], microq_hi=[int(v) for v in hi],
                microq_frac=[float(v) for v in w.reshape(-1)])
            rw.commit(nodes_in, new)
            break
    return rw.result()


def _per_channel(consts: dict[str, np.ndarray], name: str, rank: int, c: int) -> np.ndarray | None:
    """A constant that broadcasts against [N, C, ...] per channel only, as C floats."""
    arr = consts.get(name)
    if arr is None or arr.ndim > rank:
        return None
    shape = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, c):
        return None
    return np.broadcast_to(arr.reshape(-1).astype(np.float32), (c,))


def fuse_group_norm(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str],
) -> tuple[list[Named], dict[str, list[str]]]:
    """torch's GroupNorm (TorchScript at every opset, dynamo at opset 18):
    Reshape x [N, C, ...] -> [N, G, M]; InstanceNormalization(s [G], b [G]); Reshape back to
    x's shape; [Mul gamma [C, 1, ..]] [Add beta [C, 1, ..]] -> GroupNormalization with
    per-channel scale gamma * s[g] and bias gamma * b[g] + beta (opset-21 semantics)."""
    rw = _Rewriter(nodes, consts, outputs)
    for r1 in nodes:
        if r1[0].op_type != "Reshape":
            continue
        x, mid = r1[0].input[0], r1[0].output[0]
        xs, ms = shapes.get(x, ()), shapes.get(mid, ())
        inorm = rw.only_user(mid, "InstanceNormalization")
        if len(xs) < 3 or len(ms) != 3 or inorm is None or ms[0] != xs[0]:
            continue
        c, groups = xs[1], ms[1]
        if groups < 1 or c % groups or ms[2] * groups != int(np.prod(xs[1:])):
            continue
        s, b = (consts.get(inorm[0].input[i]) for i in (1, 2))
        if s is None or b is None or s.size not in (1, groups) or b.size not in (1, groups):
            continue
        s, b = (np.broadcast_to(v.reshape(-1).astype(np.float32), (groups,)) for v in (s, b))
        r2 = rw.only_user(inorm[0].output[0], "Reshape")
        if r2 is None or shapes.get(r2[0].output[0]) != xs:
            continue
        group = [r1, inorm, r2]
        gamma, beta = np.repeat(s, c // groups), np.repeat(b, c // groups)
        y = r2[0].output[0]
        mul = rw.only_user(y, "Mul")
        g = mul and _per_channel(consts, _other(mul[0], y), len(xs), c)
        if g is not None and mul:
            gamma, beta, y = gamma * g, beta * g, mul[0].output[0]
            group.append(mul)
        add = rw.only_user(y, "Add")
        bb = add and _per_channel(consts, _other(add[0], y), len(xs), c)
        if bb is not None and add:
            beta, y = beta + bb, add[0].output[0]
            group.append(add)
        eps = 1e-5
        for a in inorm[0].attribute:
            if a.name == "epsilon":
                eps = float(helper.get_attribute_value(a))
        gname, bname = f"{y}__gn_scale", f"{y}__gn_bias"
        consts[gname] = np.ascontiguousarray(gamma, np.float32)
        consts[bname] = np.ascontiguousarray(beta, np.float32)
        rw.commit(group, helper.make_node("GroupNormalization", [x, gname, bname], [y],
                                          num_groups=groups, epsilon=eps))
    return rw.result()


MASK_MIN = -1e4  # an additive constant at or below this before a Softmax masks its key out


def _softmax_last_axis(sm: onnx.NodeProto, shapes, opset: int) -> bool:
    shape = shapes.get(sm.input[0])
    if shape is None:
        return False
    axis = int(_attr(sm, "axis", -1 if opset >= 13 else 1))
    return axis % max(len(shape), 1) == len(shape) - 1


def fuse_attention_masks(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str], opset: int = 13,
) -> tuple[list[Named], dict[str, list[str]]]:
    """A constant attention mask right before a Softmax over the last axis -> one
    MaskedSoftmax(scores, keep) node, keep a constant bool array (True = the key counts):

    - Add(scores, M), M constant with entries 0 (kept) and <= MASK_MIN / -inf (masked): the
      exporters' form of F.scaled_dot_product_attention(is_causal=True / attn_mask) and of
      nn.MultiheadAttention / TransformerEncoderLayer masks (TorchScript -inf, dynamo -3.4e38);
    - Where(cond, scores, fill) / Where(cond, fill, scores), cond constant, fill constant and
      <= MASK_MIN everywhere: scores.masked_fill(mask, -inf).

    An additive M with other finite entries too (a bias plus a mask, e.g. ALiBi) is left alone
    (check_additive_masks refuses it)."""
    rw = _Rewriter(nodes, consts, outputs)
    for sm in nodes:
        if sm[0].op_type != "Softmax" or not _softmax_last_axis(sm[0], shapes, opset):
            continue
        pre = rw.made_by(sm[0].input[0], "Add", "Where")
        if pre is None or rw.only_user(sm[0].input[0], "Softmax") is not sm:
            continue
        node, keep, scores = pre[0], None, None
        if node.op_type == "Add":
            for i in (0, 1):
                m, s = consts.get(node.input[i]), node.input[1 - i]
                if m is None or s in consts or m.dtype.kind != "f" or np.isnan(m).any():
                    continue
                masked = m <= MASK_MIN
                if masked.any() and (m[~masked] == 0).all():
                    keep, scores = ~masked, s
        else:
            cond = consts.get(node.input[0])
            for i in (1, 2):
                fill, s = consts.get(node.input[i]), node.input[3 - i]
                if (cond is None or fill is None or s in consts or fill.dtype.kind != "f"
                        or not (fill <= MASK_MIN).all()):
                    continue
                c = np.asarray(cond).astype(bool)
                keep, scores = (c if i == 2 else ~c), s
        if keep is None:
            continue
        kname = f"{sm[0].output[0]}__keep"
        consts[kname] = np.ascontiguousarray(keep)
        rw.commit([pre, sm], helper.make_node("MaskedSoftmax", [scores, kname],
                                              [sm[0].output[0]]))
    return rw.result()


def drop_softmax_nan_guard(
    nodes: list[Named], consts: dict[str, np.ndarray], outputs: set[str]
) -> tuple[list[Named], dict[str, list[str]]]:
    """Where(IsNaN(p), 0, p) after a (masked) Softmax p -> p. torch exports this guard with an
    attn_mask (a fully masked row is NaN in float); microq's softmax never makes NaN and gives a
    fully masked row probability 0, which is what the guard computes."""
    rw = _Rewriter(nodes, consts, outputs)
    for w in nodes:
        if w[0].op_type != "Where" or len(w[0].input) != 3:
            continue
        isnan = rw.made_by(w[0].input[0], "IsNaN")
        p = w[0].input[2]
        if (isnan is None or isnan[0].input[0] != p or rw.made_by(p, "Softmax", "MaskedSoftmax")
                is None or _scalar(consts, w[0].input[1]) != 0.0
                or rw.only_user(w[0].input[0], "Where") is not w):
            continue
        rw.commit([isnan, w], helper.make_node("Identity", [p], [w[0].output[0]]))
    return rw.result()


# --- ONNX Attention (opset 23/24) as the primitive nodes microq compiles ---------------------


def _attention_parts(node: onnx.NodeProto, consts: dict[str, np.ndarray],
                     shapes: dict[str, tuple[int, ...]], used: set[str]):
    """The checked pieces of an Attention node: (q, k, v shapes, heads, scale, keep mask or
    None), or a str saying truly why it cannot be compiled."""
    ins = list(node.input) + [""] * (7 - len(node.input))
    if ins[6]:
        return ("nonpad_kv_seqlen (per-sample key lengths, opset 24) is not supported: use a "
                "constant attn_mask for padded keys")
    if ins[4] or ins[5]:
        return ("past_key / past_value (a KV cache across calls) is not supported: microq "
                "compiles one stateless pass; export the model without a cache")
    for i, o in enumerate(node.output[1:], 1):
        if o and o in used:
            what = ("present_key / present_value" if i < 3 else "qk_matmul_output")
            return f"output {i} ({what}) is used: only the attention output Y is supported"
    softcap = float(_attr(node, "softcap", 0.0))
    if softcap != 0.0:
        return f"softcap={softcap:g} (a tanh cap on the scores) is not supported in int8"
    if any(n in consts for n in ins[:3]):
        return "a constant Q, K or V is not supported (they must be activations)"
    try:
        q, k, v = (tuple(shapes[n]) for n in ins[:3])
    except KeyError:
        return "the shapes of Q, K and V are not static after shape inference"
    if not (len(q) == len(k) == len(v) and len(q) in (3, 4)):
        return f"Q {list(q)}, K {list(k)}, V {list(v)}: Attention takes all 3-D or all 4-D"
    if len(q) == 3:
        hq, hkv = int(_attr(node, "q_num_heads", 0)), int(_attr(node, "kv_num_heads", 0))
        if hq < 1 or hkv < 1 or q[2] % hq or k[2] % hkv or v[2] % hkv:
            return (f"3-D Attention needs q_num_heads / kv_num_heads dividing the hidden sizes "
                    f"(got {hq} / {hkv} for Q {list(q)}, K {list(k)}, V {list(v)}): the model "
                    "is invalid")
        sq, skv, d, dk, dv = q[1], k[1], q[2] // hq, k[2] // hkv, v[2] // hkv
    else:
        hq, hkv, sq, skv, d, dk, dv = q[1], k[1], q[2], k[2], q[3], k[3], v[3]
    if d != dk or k[-2] != v[-2] or v[1] != k[1] or hq % hkv:
        return (f"Q {list(q)}, K {list(k)}, V {list(v)} do not fit together (head sizes, key "
                f"and value lengths, q heads a multiple of kv heads): the model is invalid")
    scale = _attr(node, "scale", None)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    keep = None
    if ins[3]:
        m = consts.get(ins[3])
        if m is None:
            return ("a non-constant attn_mask is not supported: only masks fixed at export "
                    "time (causal, a constant boolean or 0 / -inf mask) compile")
        if m.dtype == np.bool_:
            keep = m
        else:
            m = np.asarray(m, np.float32)
            bad = ~((m == 0) | (m <= MASK_MIN))
            if bad.any():
                return (f"the float attn_mask '{ins[3]}' holds values other than 0 and -inf "
                        f"(e.g. {float(m[bad].reshape(-1)[0]):.3g}): an additive bias such as "
                        "ALiBi before the softmax is not supported in int8 with masking")
            keep = m > MASK_MIN
        try:
            keep = np.broadcast_to(keep, np.broadcast_shapes(keep.shape, (1, hq, sq, skv)))
        except ValueError:
            return (f"attn_mask {list(m.shape)} does not broadcast to the scores "
                    f"[batch, {hq}, {sq}, {skv}]: the model is invalid")
    if int(_attr(node, "is_causal", 0)):
        causal = np.arange(skv)[None, :] <= np.arange(sq)[:, None]  # j <= i (no past keys)
        keep = causal if keep is None else keep & causal
    if keep is not None:  # [B or 1, Hq, Sq, Skv]
        keep = np.broadcast_to(keep, np.broadcast_shapes(keep.shape, (1, hq, sq, skv)))
        if keep.ndim != 4:
            return f"attn_mask of rank {keep.ndim} for 4-D scores: the model is invalid"
    return q, k, v, hq, hkv, dv, scale, keep


def attention_refusal(node: onnx.NodeProto, consts, shapes, used: set[str]) -> str:
    why = _attention_parts(node, consts, shapes, used)
    return why if isinstance(why, str) else ""


def expand_attention(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str],
) -> tuple[list[Named], dict[str, list[str]]]:
    """Attention(Q, K, V[, attn_mask]) -> the nodes it is defined by, in microq's vocabulary:
    3-D inputs reshaped to [B, S, H, D] and transposed to heads; Q.K^T a MatMul with the scale
    as its alpha; the mask (is_causal and/or a constant attn_mask) a MaskedSoftmax; P.V a
    MatMul; back to [B, Sq, Hq * Dv]. GQA (q heads = g * kv heads) costs no copy: the g query
    heads sharing a kv head are contiguous, so Q is viewed as [B, Hkv, g * Sq, D]. Nodes that
    cannot be expanded stay and are refused by the converter (ops_attention.attention)."""
    used = {i for nn in nodes for i in nn[0].input} | outputs
    out: list[Named] = []
    merged: dict[str, list[str]] = {}
    for nn in nodes:
        node, name = nn
        parts = _attention_parts(node, consts, shapes, used) if node.op_type == "Attention" \
            else None
        if parts is None or isinstance(parts, str):
            out.append(nn)
            continue
        q, k, v, hq, hkv, dv, scale, keep = parts
        g = hq // hkv
        sq, skv = (q[1], k[1]) if len(q) == 3 else (q[2], k[2])
        y = node.output[0]
        new: list[onnx.NodeProto] = []

        def t(what: str) -> str:
            return f"{y}__attn_{what}"

        def const(what: str, arr) -> str:
            consts[t(what)] = np.asarray(arr)
            return t(what)

        def heads(x: str, h: int, what: str) -> str:
            if len(q) == 4:
                return x
            new.append(helper.make_node("Reshape", [x, const(f"{what}_shape", np.array(
                [0, 0, h, shapes[x][2] // h], np.int64))], [t(f"{what}_bshd")]))
            new.append(helper.make_node("Transpose", [t(f"{what}_bshd")], [t(f"{what}_bhsd")],
                                        perm=[0, 2, 1, 3]))
            return t(f"{what}_bhsd")

        qh, kh, vh = heads(node.input[0], hq, "q"), heads(node.input[1], hkv, "k"), \
            heads(node.input[2], hkv, "v")
        if g > 1:
            new.append(helper.make_node("Reshape", [qh, const("q_shape_gqa", np.array(
                [0, hkv, g * sq, q[-1] // (hq if len(q) == 3 else 1)], np.int64))],
                [t("q_grouped")]))
            qh = t("q_grouped")
        new.append(helper.make_node("Transpose", [kh], [t("kt")], perm=[0, 1, 3, 2]))
        new.append(helper.make_node("MatMul", [qh, t("kt")], [t("scores")], alpha=scale))
        if keep is not None:
            # [B, Hq, Sq, Skv] -> the grouped scores' [B, Hkv, g * Sq, Skv] (free when g = 1)
            grouped = np.ascontiguousarray(keep.reshape(keep.shape[0], hkv, g * sq, skv))
            new.append(helper.make_node("MaskedSoftmax", [t("scores"), const("keep", grouped)],
                                        [t("probs")]))
        else:
            new.append(helper.make_node("Softmax", [t("scores")], [t("probs")], axis=-1))
        last = y if len(q) == 4 and g == 1 else t("pv")
        new.append(helper.make_node("MatMul", [t("probs"), vh], [last]))
        if g > 1:
            nxt = y if len(q) == 4 else t("pv_heads")
            new.append(helper.make_node("Reshape", [last, const("y_shape", np.array(
                [0, hq, sq, dv], np.int64))], [nxt]))
            last = nxt
        if len(q) == 3:
            new.append(helper.make_node("Transpose", [last], [t("y_bshd")], perm=[0, 2, 1, 3]))
            new.append(helper.make_node("Reshape", [t("y_bshd"), const("y_shape3", np.array(
                [0, 0, hq * dv], np.int64))], [y]))
        b, d = q[0], (q[2] // hq if len(q) == 3 else q[3])
        known = {"q_bshd": (b, sq, hq, d), "q_bhsd": (b, hq, sq, d),
                 "k_bshd": (b, skv, hkv, d), "k_bhsd": (b, hkv, skv, d),
                 "v_bshd": (b, skv, hkv, dv), "v_bhsd": (b, hkv, skv, dv),
                 "q_grouped": (b, hkv, g * sq, d), "kt": (b, hkv, d, skv),
                 "scores": (b, hkv, g * sq, skv), "probs": (b, hkv, g * sq, skv),
                 "pv": (b, hkv, g * sq, dv), "pv_heads": (b, hq, sq, dv),
                 "y_bshd": (b, sq, hq, dv)}
        for what, shape in known.items():
            shapes.setdefault(t(what), shape)
        for i, n in enumerate(new):
            n.name = f"{name}__{i}_{n.op_type}"
            out.append((n, n.name))
            merged[n.name] = [name]
    return out, merged


def fuse_patterns(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str], opset: int = 13,
) -> tuple[list[Named], dict[str, list[str]]]:
    """Every rewrite of this module, in order; the merged-name maps of all of them."""
    merged: dict[str, list[str]] = {}
    nodes = sum_as_add(nodes, consts)
    steps = [lambda n: expand_attention(n, consts, shapes, outputs),
             lambda n: fuse_erf_gelu(n, consts, outputs),
             lambda n: fuse_tanh_gelu(n, consts, outputs),
             lambda n: fuse_layer_norm(n, consts, shapes, outputs),
             lambda n: fuse_group_norm(n, consts, shapes, outputs),
             lambda n: fuse_matmul_scale(n, consts, outputs),
             lambda n: fuse_gather_lerp(n, consts, shapes, outputs),
             lambda n: fuse_layer_norm_body(n, consts, shapes, outputs),
             lambda n: fuse_softmax_body(n, consts, shapes, outputs, opset),
             lambda n: fuse_attention_masks(n, consts, shapes, outputs, opset),
             lambda n: drop_softmax_nan_guard(n, consts, outputs),
             lambda n: fuse_elementwise_functions(n, consts, shapes, outputs, opset)]
    for step in steps:
        nodes, more = step(nodes)
        for name, srcs in more.items():  # a node made of already merged ones keeps them all
            merged[name] = [s for src in srcs for s in merged.pop(src, [src])]
    return nodes, merged


# --- ONNX's own function bodies (the `*_expanded` forms): elementwise functions, Softmax, Sum --
_F = np.float64


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[_F])(x)


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


# elementwise ops, evaluated in float64 on a probe grid: name -> fn(inputs, node)
_ELEMENTWISE = {
    "Identity": lambda x, n: x[0],
    "Cast": lambda x, n: x[0] if _attr(n, "to", 1) in (1, 10, 11, 16) else None,
    "CastLike": lambda x, n: x[0],
    "Neg": lambda x, n: -x[0],
    "Abs": lambda x, n: np.abs(x[0]),
    "Exp": lambda x, n: np.exp(x[0]),
    "Log": lambda x, n: np.log(np.where(x[0] > 0, x[0], np.nan)),
    "Sqrt": lambda x, n: np.sqrt(np.where(x[0] >= 0, x[0], np.nan)),
    "Reciprocal": lambda x, n: 1.0 / x[0],
    "Erf": lambda x, n: _erf(x[0]),
    "Tanh": lambda x, n: np.tanh(x[0]),
    "Softplus": lambda x, n: np.logaddexp(0.0, x[0]),
    "Sigmoid": lambda x, n: 1.0 / (1.0 + np.exp(-x[0])),
    "Relu": lambda x, n: np.maximum(x[0], 0.0),
    "LeakyRelu": lambda x, n: np.where(x[0] >= 0, x[0], _attr(n, "alpha", 0.01) * x[0]),
    "HardSigmoid": lambda x, n: np.clip(_attr(n, "alpha", 0.2) * x[0] + _attr(n, "beta", 0.5),
                                        0.0, 1.0),
    "Add": lambda x, n: x[0] + x[1],
    "Sub": lambda x, n: x[0] - x[1],
    "Mul": lambda x, n: x[0] * x[1],
    "Div": lambda x, n: x[0] / x[1],
    "Pow": lambda x, n: np.power(x[0], x[1]),
    "Sum": lambda x, n: sum(x[1:], x[0]),
    "Max": lambda x, n: np.maximum.reduce(np.broadcast_arrays(*x)),
    "Min": lambda x, n: np.minimum.reduce(np.broadcast_arrays(*x)),
    "Less": lambda x, n: x[0] < x[1],
    "LessOrEqual": lambda x, n: x[0] <= x[1],
    "Greater": lambda x, n: x[0] > x[1],
    "GreaterOrEqual": lambda x, n: x[0] >= x[1],
    "Where": lambda x, n: np.where(x[0], x[1], x[2]),
}
_AFFINE = {"Identity", "Cast", "CastLike", "Neg", "Add", "Sub", "Mul", "Div", "Sum"}
_PROBE = np.concatenate([np.linspace(-8.0, 8.0, 3201), [-1e3, -100.0, -30.0, 30.0, 100.0, 1e3]])


def _known_activation(f: np.ndarray, x: np.ndarray) -> tuple[str, dict, tuple] | None:
    """(ONNX op, attributes, (clip min, clip max)) of the activation that equals f on x."""
    core = np.abs(x) <= 100  # beyond, exp() of a body may overflow where the op does not

    def same(g: np.ndarray) -> bool:
        with np.errstate(all="ignore"):
            return bool(np.all(np.abs(f - g)[core] <= 1e-6 + 2e-5 * np.abs(g)[core]))

    at = {float(v): float(fv) for v, fv in zip(x, f)}
    if not np.all(np.isfinite(f[core])):
        return None
    lo = -math.inf if at[-1e3] == -1e3 else at[-1e3]
    hi = math.inf if at[1e3] == 1e3 else at[1e3]
    if same(np.clip(x, lo, hi)) and (lo, hi) != (-math.inf, math.inf):
        return ("Relu", {}, ()) if (lo, hi) == (0.0, math.inf) else ("Clip", {}, (lo, hi))
    alpha = -at[-1.0]
    if alpha != 0 and same(np.where(x >= 0, x, alpha * x)):
        return "LeakyRelu", {"alpha": alpha}, ()
    alpha = -at[-30.0]
    if alpha > 0 and same(np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))):
        return "Elu", {"alpha": alpha}, ()
    beta, slope = at[0.0], at[0.5] - at[-0.5]
    if 0 < slope and same(np.clip(slope * x + beta, 0.0, 1.0)):
        return "HardSigmoid", {"alpha": slope, "beta": beta}, ()
    with np.errstate(all="ignore"):
        return _smooth_activation(f, x, same)


def _smooth_activation(f: np.ndarray, x: np.ndarray, same) -> tuple[str, dict, tuple] | None:
    table = [
        ("HardSwish", {}, x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)),
        ("Softplus", {}, np.logaddexp(0.0, x)),
        ("Mish", {}, x * np.tanh(np.logaddexp(0.0, x))),
        ("Sigmoid", {}, 1.0 / (1.0 + np.exp(-x))),
        ("Tanh", {}, np.tanh(x)),
        ("Gelu", {}, 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))),
        ("Gelu", {"approximate": "tanh"},
         0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))),
    ]
    for op, attrs, g in table:
        if same(g):
            return op, attrs, ()
    return None


def fuse_elementwise_functions(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str], opset: int,
) -> tuple[list[Named], dict[str, list[str]]]:
    """A group of elementwise nodes of one activation x and scalar constants, with one result
    y used outside, whose values on a probe grid equal a known activation -> that activation
    (ONNX's function bodies of Relu, LeakyRelu, Elu, HardSigmoid, HardSwish, Softplus, Gelu and
    the hand-written forms of the same)."""
    rw = _Rewriter(nodes, consts, outputs)
    taken: set[int] = set()
    for start in nodes:
        for x in start[0].input:
            if not x or x in consts or start[0].op_type not in _ELEMENTWISE:
                continue
            group, inside, frontier, seen = [], {x}, [x], set()
            while frontier:  # grow along the users of what the group computes
                t = frontier.pop()
                for nn in rw.users.get(t, []):
                    i = rw.index[id(nn[0])]
                    if i in taken or i in seen or nn[0].op_type not in _ELEMENTWISE:
                        continue
                    ins = [u for u in nn[0].input if u]
                    if all(u in inside or (u in consts and consts[u].size == 1) for u in ins):
                        seen.add(i)
                        group.append(nn)
                        inside.update(nn[0].output)
                        frontier.extend(nn[0].output)
            group.sort(key=lambda g: rw.index[id(g[0])])
            ext = [t for g in group for t in g[0].output
                   if t in outputs or any(u not in group for u in rw.users.get(t, []))]
            single = len(group) == 1 and group[0][0].op_type in ("Max", "Min", "Where")
            if len(ext) != 1 or (len(group) < 2 and not single) or {
                    g[0].op_type for g in group} <= _AFFINE:
                continue
            y = ext[0]
            if x in shapes and y in shapes and shapes[x] != shapes[y]:
                continue
            vals = {x: _PROBE}
            try:
                with np.errstate(all="ignore"):
                    for g in group:  # nodes are in topological order
                        args = [vals[t] if t in vals else np.asarray(consts[t], _F).reshape(())
                                for t in g[0].input if t]
                        r = _ELEMENTWISE[g[0].op_type](args, g[0])
                        if r is None:
                            raise ValueError
                        vals[g[0].output[0]] = np.asarray(r)
            except (ValueError, KeyError):
                continue
            f = np.broadcast_to(np.asarray(vals[y], _F), _PROBE.shape)
            found = _known_activation(f, _PROBE)
            if found is None:
                continue
            op, attrs, bounds = found
            ins = [x]
            if op == "Clip":
                for k, v in zip(("min", "max"), bounds):
                    name = f"{y}__{k}"
                    consts[name] = np.array(v if math.isfinite(v) else
                                            (np.finfo(np.float32).max * (1 if k == "max" else -1)),
                                            np.float32)
                    ins.append(name)
            rw.commit(group, helper.make_node(op, ins, [y], **attrs))
            taken.update(rw.index[id(g[0])] for g in group)
            break
    return rw.result()


def fuse_softmax_body(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str], opset: int,
) -> tuple[list[Named], dict[str, list[str]]]:
    """Exp(x - ReduceMax(x)) / ReduceSum(Exp(..)) over one axis (keepdims) -> Softmax(axis)."""
    rw = _Rewriter(nodes, consts, outputs)

    def axes_of(nn: Named) -> list[int] | None:
        if _attr(nn[0], "keepdims", 1) != 1:
            return None
        if len(nn[0].input) > 1 and nn[0].input[1]:
            c = consts.get(nn[0].input[1])
            return None if c is None else [int(v) for v in c.reshape(-1)]
        a = _attr(nn[0], "axes", None)
        return None if a is None else [int(v) for v in a]

    for rmax in nodes:
        if rmax[0].op_type != "ReduceMax":
            continue
        x = rmax[0].input[0]
        rank = len(shapes.get(x, ()))
        axes = axes_of(rmax)
        if not rank or axes is None or len(axes) != 1:
            continue
        axis = axes[0] % rank
        sub = rw.only_user(rmax[0].output[0], "Sub")
        if sub is None or list(sub[0].input) != [x, rmax[0].output[0]]:
            continue
        exp = rw.only_user(sub[0].output[0], "Exp")
        e = exp and exp[0].output[0]
        us = rw.users.get(e, []) if e else []
        rsum = [u for u in us if u[0].op_type == "ReduceSum"]
        div = [u for u in us if u[0].op_type == "Div"]
        if len(us) != 2 or len(rsum) != 1 or len(div) != 1 or e in outputs:
            continue
        s_axes = axes_of(rsum[0])
        if s_axes is None or [a % rank for a in s_axes] != [axis]:
            continue
        if list(div[0][0].input) != [e, rsum[0][0].output[0]]:
            continue
        if opset < 13 and axis != rank - 1:
            continue  # Softmax before 13 flattens from its axis
        rw.commit([rmax, sub, exp, rsum[0], div[0]],
                  helper.make_node("Softmax", [x], [div[0][0].output[0]], axis=axis))
    return rw.result()


def fuse_layer_norm_body(
    nodes: list[Named], consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
    outputs: set[str],
) -> tuple[list[Named], dict[str, list[str]]]:
    """ONNX's LayerNormalization function body over the last axis of x:
    (x - E[x]) / Sqrt(E[x*x] - E[x]^2 + eps) [* scale] [+ bias] -> LayerNormalization."""
    rw = _Rewriter(nodes, consts, outputs)

    def skip_cast(t: str, group: list) -> str:
        c = rw.only_user(t, "Cast")
        while c is not None and _attr(c[0], "to", 1) == 1:
            group.append(c)
            t = c[0].output[0]
            c = rw.only_user(t, "Cast")
        return t

    for mean in nodes:
        if mean[0].op_type != "ReduceMean":
            continue
        x = mean[0].input[0]
        rank = len(shapes.get(x, ()))
        if rank < 2 or not _last_axis(rw, mean, rank) or x in outputs:
            continue
        m = mean[0].output[0]
        xu = rw.users.get(x, [])
        sq = [u for u in xu if u[0].op_type == "Mul" and list(u[0].input) == [x, x]]
        dev = [u for u in xu if u[0].op_type == "Sub" and list(u[0].input) == [x, m]]
        mu = rw.users.get(m, [])
        sqm = [u for u in mu if u[0].op_type == "Mul" and list(u[0].input) == [m, m]]
        if len(xu) != 3 or len(sq) != 1 or len(dev) != 1 or len(mu) != 2 or len(sqm) != 1:
            continue
        msq = rw.only_user(sq[0][0].output[0], "ReduceMean")
        if msq is None or not _last_axis(rw, msq, rank):
            continue
        var = rw.only_user(msq[0].output[0], "Sub")
        if var is None or list(var[0].input) != [msq[0].output[0], sqm[0][0].output[0]]:
            continue
        add = rw.only_user(var[0].output[0], "Add")
        eps = add and rw.scalar(add, var[0].output[0])
        sqrt = add and rw.only_user(add[0].output[0], "Sqrt")
        if sqrt is None or eps is None:
            continue
        div = rw.only_user(dev[0][0].output[0], "Div")
        if div is None or list(div[0].input) != [dev[0][0].output[0], sqrt[0].output[0]]:
            continue
        if len(rw.users.get(sqrt[0].output[0], [])) != 1:
            continue
        group = [mean, sq[0], dev[0], sqm[0], msq, var, add, sqrt, div]
        y = skip_cast(div[0].output[0], group)
        width = shapes[x][-1]
        gamma = beta = None
        mul = rw.only_user(y, "Mul")
        c = consts.get(_other(mul[0], y)) if mul is not None else None
        if c is not None and c.size in (1, width):
            gamma, y = f"{mul[0].output[0]}__gamma", mul[0].output[0]
            consts[gamma] = np.broadcast_to(c.reshape(-1), (width,)).astype(np.float32)
            group.append(mul)
        badd = rw.only_user(y, "Add")
        c = consts.get(_other(badd[0], y)) if badd is not None else None
        if c is not None and c.size in (1, width):
            beta, y = f"{badd[0].output[0]}__beta", badd[0].output[0]
            consts[beta] = np.broadcast_to(c.reshape(-1), (width,)).astype(np.float32)
            group.append(badd)
        if gamma is None:
            gamma = f"{y}__gamma"
            consts[gamma] = np.ones(width, np.float32)
        ins = [x, gamma] + ([beta] if beta else [])
        rw.commit(group, helper.make_node("LayerNormalization", ins, [y], axis=-1, epsilon=eps))
    return rw.result()


def sum_as_add(nodes: list[Named], consts: dict[str, np.ndarray]) -> list[Named]:
    """Sum of one input is an Identity, of two an Add (ONNX function bodies use Sum)."""
    out = []
    for node, name in nodes:
        if node.op_type == "Sum" and node.domain in ("", "ai.onnx") and len(node.input) <= 2:
            op = "Identity" if len(node.input) == 1 else "Add"
            node = helper.make_node(op, list(node.input), list(node.output), name=node.name)
        out.append((node, name))
    return out

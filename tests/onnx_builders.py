"""Test helpers: build small ONNX models with onnx.helper and run them with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 1234


def weights(shape: tuple[int, ...], seed: int = RNG_SEED, scale: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple],
    outputs: list[str],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 13,
    batch: str | int = "N",
) -> onnx.ModelProto:
    """A model whose inputs have a symbolic batch dim (`batch`) and outputs of unknown shape."""
    ins = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch] + list(shape[1:]))
        for name, shape in inputs.items()
    ]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, outs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 10
    return model


def single(
    op: str,
    x_shape: tuple,
    consts: list[np.ndarray | None] = (),
    opset: int = 13,
    **attrs: object,
) -> onnx.ModelProto:
    """x -> op(x, *consts) -> y; a None const is an omitted optional input."""
    inits, names = {}, ["x"]
    for i, c in enumerate(consts):
        if c is None:
            names.append("")
        else:
            names.append(f"c{i}")
            inits[f"c{i}"] = c
    node = helper.make_node(op, names, ["y"], name=f"{op.lower()}_0", **attrs)
    return make_model([node], {"x": x_shape}, ["y"], inits, opset)


def conv(x_shape: tuple, w_shape: tuple, bias: bool = True, opset: int = 13, **attrs):
    w = weights(w_shape)
    consts = [w, weights((w_shape[0],), seed=7)] if bias else [w]
    return single("Conv", x_shape, consts, opset, **attrs)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime outputs, one sample at a time (so fixed-batch-1 reshapes work too)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    n = next(iter(feeds.values())).shape[0]
    runs = [sess.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]


def assert_close(got: np.ndarray, ref: np.ndarray, tol: float = 1e-4, what: str = "") -> None:
    """allclose(rtol=atol=tol); on failure show the first mismatching index."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    bad = ~np.isclose(got, ref, rtol=tol, atol=tol)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} mismatches; first at {idx}: got {got[idx]}, "
            f"expected {ref[idx]} (max abs diff {np.abs(got - ref).max():.3g})"
        )

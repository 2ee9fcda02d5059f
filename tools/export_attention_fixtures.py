"""Tool (outside the package): export the attention idioms in tests/models/attention/.

Every idiom PyTorch users write for self-attention is one tiny model here, exported with the
TorchScript exporter (dynamo=False, opset 14, the first with scaled_dot_product_attention; 17 where
LayerNormalization exists) and the
dynamo exporter (dynamo=True, opset 18), both with a dynamic batch axis "N". Each model gets
tests/models/attention/<name>.npz with "input" float32 [16, T, C] (token-like smooth signals).
Every file is checked with onnx.checker and onnxruntime against torch; README.md there is
rewritten. Needs torch (not a dependency of microq).
"""

from __future__ import annotations

import argparse
import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "attention"
SEED = 100
N_SAMPLES = 64
T, C, H = 8, 16, 2
MAX_BYTES = 100_000


class TimmIndex(nn.Module):
    """timm's Attention: qkv(x).reshape(B,T,3,H,D).permute(2,0,3,1,4); q, k, v = qkv[0..2]."""

    def __init__(self, unbind: bool = False) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.unbind = unbind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, H, c // H).permute(2, 0, 3, 1, 4)
        if self.unbind:
            q, k, v = qkv.unbind(0)
        else:
            q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (c // H) ** -0.5
        attn = attn.softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)


class TimmUnbind(TimmIndex):
    def __init__(self) -> None:
        super().__init__(unbind=True)


class ChunkHeads(nn.Module):
    """q, k, v by chunk(3, dim=-1) of one Linear; heads by view + transpose; SDPA."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, H, c // H).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class SliceHeads(nn.Module):
    """Heads split by slicing the channel axis (x[..., i*D:(i+1)*D]) and concatenated back."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, C)
        self.v = nn.Linear(C, C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        d = C // H
        heads = []
        for i in range(H):
            s = slice(i * d, (i + 1) * d)
            a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / d**0.5, dim=-1)
            heads.append(a @ v[..., s])
        return self.proj(torch.cat(heads, dim=-1))


class SplitHeadAxis(nn.Module):
    """[B,H,T,D] heads split along the head axis with torch.split, SDPA per head, cat."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).view(b, t, 3 * H, c // H).transpose(1, 2)  # [B, 3H, T, D]
        q, k, v = torch.split(qkv, H, dim=1)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, T, D]
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Sdpa(nn.Module):
    """F.scaled_dot_product_attention on [B, H, T, D] built by reshape + permute."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, C)
        self.v = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (m(x).reshape(b, t, H, c // H).permute(0, 2, 1, 3)
                   for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return y.permute(0, 2, 1, 3).reshape(b, t, c)


class Mha(nn.Module):
    """nn.MultiheadAttention(batch_first=True), self-attention."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(C, H, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer(batch_first=True) (post-norm, ReLU FFN), then mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(C, H, dim_feedforward=32, dropout=0.0,
                                                batch_first=True)
        self.head = nn.Linear(C, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(dim=1))


MODELS = {
    "timm_index": (TimmIndex, "qkv.reshape(B,T,3,H,D).permute(2,0,3,1,4); qkv[0], qkv[1], qkv[2]"),
    "timm_unbind": (TimmUnbind, "same, q, k, v = qkv.unbind(0)"),
    "chunk_sdpa": (ChunkHeads, "qkv(x).chunk(3, -1), view+transpose heads, F.sdpa"),
    "slice_heads": (SliceHeads, "heads by x[..., i*D:(i+1)*D] slices, softmax(q k^T) v, cat"),
    "split_heads": (SplitHeadAxis, "view [B,T,3H,D].transpose(1,2), torch.split on the head axis"),
    "sdpa": (Sdpa, "F.scaled_dot_product_attention on reshape+permute heads"),
    "mha": (Mha, "nn.MultiheadAttention(batch_first=True)"),
    "encoder_layer": (EncoderLayer, "nn.TransformerEncoderLayer(batch_first=True), mean, Linear"),
}
VARIANTS = [("torchscript", False, 14), ("dynamo", True, 18)]
OPSET_OVERRIDE = {"encoder_layer": {"torchscript": 17}}  # LayerNormalization


# --- masked attention and ONNX Attention (tests/models/attention/{masked,opset23}) -------------


class SdpaMasked(nn.Module):
    """F.scaled_dot_product_attention with is_causal=True, or a constant attn_mask (bool, or
    float 0 / -inf), on Linear q, k, v; GQA (enable_gqa, fewer kv heads) when kv_heads < H."""

    def __init__(self, causal: bool = False, mask: torch.Tensor | None = None,
                 heads: int = H, kv_heads: int = H) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.causal = heads, kv_heads, causal
        d = C // heads
        self.q = nn.Linear(C, C)
        self.k = nn.Linear(C, kv_heads * d)
        self.v = nn.Linear(C, kv_heads * d)
        self.proj = nn.Linear(C, C)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, t, self.heads, d).transpose(1, 2)
        k, v = (m(x).reshape(b, t, self.kv_heads, d).transpose(1, 2) for m in (self.k, self.v))
        extra = {"enable_gqa": True} if self.kv_heads != self.heads else {}
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, is_causal=self.causal,
                                           **extra)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MaskedFill(nn.Module):
    """Hand-written attention: scores.masked_fill(~causal, -inf).softmax(-1) @ v."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.register_buffer("keep", torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.reshape(b, t, H, c // H).transpose(1, 2)
                   for z in self.qkv(x).chunk(3, dim=-1))
        s = (q @ k.transpose(-2, -1)) * (c // H) ** -0.5
        a = s.masked_fill(~self.keep, float("-inf")).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, c))


class MhaCausal(nn.Module):
    """nn.MultiheadAttention(batch_first=True) with a causal float attn_mask (0 / -inf)."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(C, H, batch_first=True)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(T))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False, attn_mask=self.mask)[0]


class EncoderCausal(nn.Module):
    """A causal transformer block: nn.TransformerEncoderLayer(batch_first=True) with
    src_mask=causal, is_causal=True, then mean pooling and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(C, H, dim_feedforward=32, dropout=0.0,
                                                batch_first=True)
        self.head = nn.Linear(C, 4)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(T))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x, src_mask=self.mask, is_causal=True).mean(dim=1))


def _band(width: int) -> torch.Tensor:
    i = torch.arange(T)
    return (i[None, :] - i[:, None]).abs() <= width


def _pad_mask() -> torch.Tensor:  # the last 2 keys are padding; additive 0 / -inf
    m = torch.zeros(T, T)
    m[:, T - 2 :] = float("-inf")
    return m


MASKED_MODELS = {
    "sdpa_causal": (lambda: SdpaMasked(causal=True), "F.sdpa(q, k, v, is_causal=True)"),
    "sdpa_boolmask": (lambda: SdpaMasked(mask=_band(2)),
                      "F.sdpa(attn_mask=bool band abs(i - j) <= 2), a constant buffer"),
    "sdpa_addmask": (lambda: SdpaMasked(mask=_pad_mask()),
                     "F.sdpa(attn_mask=float 0 / -inf: the last 2 keys padded)"),
    "masked_fill": (MaskedFill, "softmax(q k^T masked_fill(~tril, -inf)) v, by hand"),
    "mha_causal": (MhaCausal, "nn.MultiheadAttention(attn_mask=causal 0 / -inf)"),
    "encoder_causal": (EncoderCausal,
                       "nn.TransformerEncoderLayer(src_mask=causal, is_causal=True), mean, Linear"),
}
OPSET23_MODELS = {  # dynamo at opset 23 emits ONNX Attention for F.sdpa / MultiheadAttention
    "sdpa_causal": MASKED_MODELS["sdpa_causal"],
    "sdpa_boolmask": MASKED_MODELS["sdpa_boolmask"],
    "sdpa_gqa": (lambda: SdpaMasked(causal=True, heads=4, kv_heads=2),
                 "F.sdpa(is_causal=True, enable_gqa=True): 4 q heads, 2 kv heads"),
    "mha_causal": MASKED_MODELS["mha_causal"],
    "encoder_causal": MASKED_MODELS["encoder_causal"],
}


def handbuilt_attention(rng: np.random.Generator, three_d: bool):
    """An ONNX Attention model built with onnx.helper: input [N, T, C] -> MatMul projections ->
    Attention -> MatMul. 3-D: q_num_heads 4 / kv_num_heads 2 (GQA), is_causal, scale 0.3.
    4-D: heads by Reshape + Transpose, a constant bool attn_mask (band) and default scale."""
    from onnx import TensorProto, helper, numpy_helper

    hq, hkv = (4, 2) if three_d else (2, 2)
    d = C // hq
    w = {n: (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for n, s in
         (("Wq", (C, hq * d)), ("Wk", (C, hkv * d)), ("Wv", (C, hkv * d)), ("Wo", (hq * d, C)))}
    inits = [numpy_helper.from_array(a, n) for n, a in w.items()]
    nodes = [helper.make_node("MatMul", ["input", f"W{z}"], [z], name=f"proj_{z}")
             for z in "qkv"]
    if three_d:
        nodes.append(helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attention",
                                      q_num_heads=hq, kv_num_heads=hkv, is_causal=1, scale=0.3))
        nodes.append(helper.make_node("MatMul", ["y", "Wo"], ["output"], name="out_proj"))
    else:
        inits += [numpy_helper.from_array(np.array([0, 0, hq, d], np.int64), "heads"),
                  numpy_helper.from_array(np.array([0, 0, C], np.int64), "merge"),
                  numpy_helper.from_array(_band(2).numpy()[None, None], "mask")]
        for z in "qkv":
            nodes += [helper.make_node("Reshape", [z, "heads"], [f"{z}4"], name=f"split_{z}"),
                      helper.make_node("Transpose", [f"{z}4"], [f"{z}h"], perm=[0, 2, 1, 3],
                                       name=f"heads_{z}")]
        nodes += [helper.make_node("Attention", ["qh", "kh", "vh", "mask"], ["yh"],
                                   name="attention"),
                  helper.make_node("Transpose", ["yh"], ["yt"], perm=[0, 2, 1, 3], name="unheads"),
                  helper.make_node("Reshape", ["yt", "merge"], ["y"], name="merge_heads"),
                  helper.make_node("MatMul", ["y", "Wo"], ["output"], name="out_proj")]
    g = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", T, C])], [helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, ["N", T, C])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])
    m.ir_version = 10
    return m


def main_masked(out: Path) -> None:
    """tests/models/attention/masked (TorchScript + dynamo opset 18) and .../opset23 (dynamo
    opset 23, which emits ONNX Attention, plus two hand-built Attention graphs)."""
    (out / "masked").mkdir(parents=True, exist_ok=True)
    (out / "opset23").mkdir(parents=True, exist_ok=True)
    sets = [("masked", MASKED_MODELS, [("torchscript", False, 17), ("dynamo", True, 18)]),
            ("opset23", OPSET23_MODELS, [("dynamo", True, 23)])]
    for sub, models, variants in sets:
        rows, layers = [], []
        for i, (name, (make, text)) in enumerate(models.items()):
            seed = SEED + 50 + list(MASKED_MODELS).index(name) if name in MASKED_MODELS \
                else SEED + 80 + i
            rng = np.random.default_rng(seed)
            torch.manual_seed(seed)
            x = tokens(rng, N_SAMPLES)
            model = make().eval()
            with torch.no_grad():
                expected = model(torch.from_numpy(x)).numpy()
            np.savez_compressed(out / sub / f"{name}.npz", input=x)
            layers.append(f"| {name} | {list(x.shape)} | {text} |")
            extra = [("dynamo24", True, 24)] if (sub, name) == ("opset23", "sdpa_gqa") else []
            for tag, dynamo, opset in variants + extra:  # one opset 24 file: the same op
                path = out / sub / f"{name}.{tag}.onnx"
                rows.append(export_checked(model, x, expected, path, dynamo, opset))
                if sub == "opset23" and "Attention" not in {n.op_type for n in
                                                            onnx.load(str(path)).graph.node}:
                    raise SystemExit(f"{path.name}: dynamo opset 23 emitted no Attention")
        if sub == "opset23":
            for j, (name, three_d, text) in enumerate([
                    ("attention_3d_gqa", True,
                     "onnx.helper: 3-D Attention, q_num_heads 4, kv_num_heads 2, is_causal, "
                     "scale 0.3"),
                    ("attention_4d_mask", False,
                     "onnx.helper: 4-D Attention, constant bool attn_mask (band abs(i - j) <= 2)")]):
                rng = np.random.default_rng(SEED + 90 + j)
                x = tokens(rng, N_SAMPLES)
                m = handbuilt_attention(rng, three_d)
                path = out / sub / f"{name}.onnx"
                onnx.checker.check_model(m, full_check=True)
                onnx.save(m, str(path))
                sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                sess.run(None, {"input": x})
                np.savez_compressed(out / sub / f"{name}.npz", input=x)
                layers.append(f"| {name} | {list(x.shape)} | {text} |")
                ops = ", ".join(dict.fromkeys(n.op_type for n in m.graph.node))
                rows.append(f"| {path.name} | onnx.helper | 23 | {path.stat().st_size} | {ops} |")
        title = "Masked attention" + (" and ONNX Attention" if sub == "opset23" else "")
        head = f"""# {title} exported from torch

Made by `tools/export_attention_fixtures.py --masked` (torch {torch.__version__}, onnx
{onnx.__version__}, onnxruntime {ort.__version__}); do not edit by hand, re-run the tool.
T={T} tokens, C={C} channels, H={H} heads (sdpa_gqa / attention_3d_gqa: 4 q heads, 2 kv heads),
torch's default init, eval mode, input "input" [N, {T}, {C}] (dynamic N), output "output".
`<name>.npz` holds "input" float32 [{N_SAMPLES}, {T}, {C}]: tests calibrate on the first 48 and
measure on the last 16. Torch-exported files matched torch in onnxruntime (< 1e-4).

| model | input (the .npz) | what |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops |
|---|---|---|---|---|
"""
        (out / sub / "README.md").write_text(head + "\n".join(rows) + "\n")


def tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(T, dtype=np.float64)[None, :, None]
    freq = rng.uniform(0.05, 0.4, (n, 1, C))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, C))
    x = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.1, (n, T, C))
    return x.astype(np.float32)


def export(model: nn.Module, x: torch.Tensor, path: Path, dynamo: bool, opset: int) -> None:
    common = {"input_names": ["input"], "output_names": ["output"], "opset_version": opset}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=({0: torch.export.Dim("N")},), **common)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False,
                              dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, **common)


def export_checked(model: nn.Module, x: np.ndarray, expected: np.ndarray, path: Path,
                   dynamo: bool, opset: int) -> str:
    """Export `model` (traced on x[:2], batch dynamic), check the file (onnx full check,
    onnxruntime on all of x within 1e-4 of torch's `expected`, at most MAX_BYTES) and return its
    README table row."""
    export(model, torch.from_numpy(x[:2]), path, dynamo, opset)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    diff = float(np.abs(got - expected).max())
    if got.shape != expected.shape or diff > 1e-4:
        raise SystemExit(f"{path.name}: onnxruntime differs from torch ({diff:.3g})")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path.name} is {size} bytes (limit {MAX_BYTES})")
    got_opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    ops = ", ".join(dict.fromkeys(n.op_type for n in m.graph.node))
    exporter = "torch.onnx dynamo=True" if dynamo else "torch.onnx TorchScript"
    print(f"{path.name:40s} opset {got_opset:2d} {size:6d} B {ops}")
    return f"| {path.name} | {exporter} | {got_opset} | {size} | {ops} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--masked", action="store_true",
                        help="write only the masked/ and opset23/ sets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if args.masked:
        main_masked(args.out)
        return
    rows, layers = [], []
    for i, (name, (cls, text)) in enumerate(MODELS.items()):
        rng = np.random.default_rng(SEED + i)
        torch.manual_seed(SEED + i)
        x = tokens(rng, N_SAMPLES)
        model = cls().eval()
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(args.out / f"{name}.npz", input=x)
        layers.append(f"| {name} | {list(x.shape)} | {text} |")
        for tag, dynamo, opset in VARIANTS:
            opset = OPSET_OVERRIDE.get(name, {}).get(tag, opset)
            path = args.out / f"{name}.{tag}.onnx"
            rows.append(export_checked(model, x, expected, path, dynamo, opset))
    head = f"""# Attention idioms exported from torch

Made by `tools/export_attention_fixtures.py` (torch {torch.__version__}, onnx {onnx.__version__},
onnxruntime {ort.__version__}, seed {SEED} + model index); do not edit by hand, re-run the tool.
T={T} tokens, C={C} channels, H={H} heads, torch's default init, eval mode. Every model has input
"input" [N, {T}, {C}] with a dynamic batch axis "N" and output "output"; `<name>.npz` holds
"input": float32 [{N_SAMPLES}, {T}, {C}] (tests calibrate on the first 48 and
measure on the last 16), on which onnxruntime matched torch (max abs difference < 1e-4).

| model | input (the .npz) | torch idiom |
|---|---|---|
{chr(10).join(layers)}

| file | exporter | opset | bytes | ops |
|---|---|---|---|---|
"""
    (args.out / "README.md").write_text(head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()

"""C text formatting for codegen: literals, arrays, struct initializers, comments.

Deterministic by construction: integers print as decimal, floats through one fixed format, arrays
wrap at WIDTH columns; nothing depends on dict order or the platform.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import MicroqError
from ..names import is_c_identifier

WIDTH = 100
INDENT = "    "
MQ_MAX_DIMS = 6  # c_runtime/include/mq_types.h

CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t",
          np.dtype(np.int32): "int32_t", np.dtype(np.int64): "int64_t"}


is_identifier = is_c_identifier  # microq/names.py: the one check


def c_int(v: int) -> str:
    """A decimal literal; INT32_MIN (and INT64_MIN) are spelled so that no literal exceeds its
    type. A value outside int64 has no C99 literal: refused."""
    v = int(v)
    if v == -(2**31):
        return "(-2147483647 - 1)"
    if v == -(2**63):
        return "(-9223372036854775807 - 1)"
    if not -(2**63) < v < 2**63:
        raise MicroqError(f"the constant {v} does not fit in int64 C code; the model's "
                          "parameters are out of range")
    return str(v)


def c_float(v: float) -> str:
    """A float literal with 9 significant digits (exact for float32), always with a dot or an
    exponent so that the `f` suffix is valid C. NaN and infinities have no literal: refused."""
    if not np.isfinite(v):
        raise MicroqError(f"the scale {v} is not a finite number; the model's quantization "
                          "parameters are invalid")
    s = f"{float(v):.9g}"
    if not any(ch in s for ch in ".en"):
        s += ".0"
    return s + "f"


# Characters a model-controlled string (tensor/node names, the command line) may keep in a C
# comment; every other one is written as \xNN per UTF-8 byte. Left out on purpose: backslash
# (line splicing happens before comments end), '?' (the `??/` trigraph is a backslash under
# -std=c99), every control character (a newline would end a #define or start a directive) and
# non-ASCII. '*' and '/' stay, but a "*/" or "/*" pair is split below.
COMMENT_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    " _.,:;=+-()[]<>{}!#$%&|^~@'\"/*"
)


def comment_text(s: str) -> str:
    """Text safe inside a /* */ comment, on one line: only COMMENT_SAFE characters (the rest
    hex-escaped), no comment terminator or opener."""
    out = []
    for ch in str(s):
        if ch in COMMENT_SAFE:
            out.append(ch)
        else:
            out += [f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass")]
    # after the first replace no "*/" is left, and "/ *" cannot form one with its neighbours
    return "".join(out).replace("*/", "* /").replace("/*", "/ *")


def wrap_items(items: list[str], indent: str = INDENT, width: int = WIDTH) -> list[str]:
    """Comma-separated items packed into lines of at most `width` columns."""
    lines: list[str] = []
    cur = ""
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        cand = piece if not cur else cur + " " + piece
        if cur and len(indent) + len(cand) > width:
            lines.append(indent + cur)
            cur = piece
        else:
            cur = cand
    if cur:
        lines.append(indent + cur)
    return lines


# clang-format would lay long constant lists out in aligned columns; the generated data tables
# keep the packed layout between these markers (the code around them is formatted as
# clang-format writes it, .clang-format at the repository root)
FORMAT_OFF = "/* clang-format off */"
FORMAT_ON = "/* clang-format on */"


def array_def(qual: str, cname: str, data: np.ndarray) -> str:
    """`qual int8_t cname[N] = {...};` from an int8/int32 array (flattened row-major)."""
    data = np.asarray(data)
    ctype = CTYPES[data.dtype]
    flat = data.reshape(-1)
    head = f"{qual} {ctype} {cname}[{flat.size}]"
    body = wrap_items([c_int(v) for v in flat.tolist()])
    return head + " = {\n" + "\n".join(body) + "\n};\n"


def array_decl(cname: str, data: np.ndarray) -> str:
    data = np.asarray(data)
    return f"extern const {CTYPES[data.dtype]} {cname}[{data.size}];\n"


def struct_def(ctype: str, cname: str, fields: list[tuple[str, str]]) -> str:
    """`static const ctype cname = {.a = 1, ...};` with designated initializers: on one line
    when it fits, else one field a line with a trailing comma (as clang-format keeps it)."""
    items = [f".{k} = {v}" for k, v in fields]
    one = f"static const {ctype} {cname} = {{" + ", ".join(items) + "};"
    if len(one) <= WIDTH:
        return one + "\n"
    body = "".join(f"{INDENT}{item},\n" for item in items)
    return f"static const {ctype} {cname} = {{\n" + body + "};\n"


def dims_def(cname: str, dims: tuple[int, int, int, int]) -> str:
    return f"static const mq_dims {cname} = {{{', '.join(c_int(d) for d in dims)}}};\n"


def small_array_def(cname: str, values: list[int]) -> str:
    one = f"static const int32_t {cname}[{len(values)}] = {{{', '.join(map(c_int, values))}}};"
    if len(one) <= WIDTH:
        return one + "\n"
    return f"{FORMAT_OFF}\n{array_def('static const', cname, np.asarray(values, np.int32))}" \
        f"{FORMAT_ON}\n"


def nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A tensor shape as mq_dims: leading 1s up to 4-D."""
    if len(shape) > 4:
        raise ValueError(f"shape {shape} has more than 4 dimensions")
    return tuple((1,) * (4 - len(shape)) + tuple(int(d) for d in shape))  # type: ignore[return-value]


def broadcast_fields(shape1: tuple[int, ...], shape2: tuple[int, ...]) -> dict[str, list[int]]:
    """mq_broadcast for numpy broadcasting: rank = the output's rank, right-aligned in
    MQ_MAX_DIMS-long lists whose unused leading axes have size 1 and stride 0; an input's stride
    is 0 on every axis where its size is 1."""
    out = np.broadcast_shapes(tuple(shape1), tuple(shape2))
    if len(out) > MQ_MAX_DIMS:
        raise ValueError(f"broadcast of {shape1} and {shape2} has more than {MQ_MAX_DIMS} axes")

    def padded(s):
        return [1] * (MQ_MAX_DIMS - len(s)) + [int(d) for d in s]

    def strides(s):
        s = padded(s)
        st, acc = [0] * MQ_MAX_DIMS, 1
        for ax in range(MQ_MAX_DIMS - 1, -1, -1):
            st[ax] = acc if s[ax] != 1 else 0
            acc *= s[ax]
        return st

    return {
        "rank": [len(out)],
        "out_shape": padded(out),
        "in1_strides": strides(shape1),
        "in2_strides": strides(shape2),
    }


def split_args(args: str) -> list[str]:
    """Split a C argument list at its top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in args:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    return parts + [cur.strip()] if cur.strip() else parts


def _pack(head: str, pad: str, items: list[str], end: str, indent: int, width: int) -> list[str]:
    """items after `head`, packed into lines of `width` columns, continuation lines `pad`."""
    lines, cur = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else ")" + end)
        if cur not in (head, pad) and indent + len(cur) + len(piece.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = pad
        cur += piece
    return lines + [cur]


def wrap_call(prefix: str, call: str, indent: int, width: int = WIDTH, end: str = ";",
              decl: bool = False) -> list[str]:
    """`prefix` + `fn(args)` + `end` within `width` columns (counting `indent`), laid out as
    clang-format (.clang-format) lays it out: the fewest lines among (1) one line, (2) a break
    after the '=' of `prefix` and the call on one line, (3) arguments packed and aligned after
    the open parenthesis, (4) a break after the parenthesis and arguments packed 4 columns in;
    on a tie the earlier of these. A declaration (`decl`) takes (3) whenever it fits."""
    one = f"{prefix}{call}{end}"
    if indent + len(one) <= width:
        return [one]
    cands = []
    if prefix.rstrip().endswith("=") and indent + len(INDENT + call + end) <= width:
        cands.append([prefix.rstrip(), INDENT + call + end])
    fn, args = call.split("(", 1)
    items = split_args(args[:-1])
    head = f"{prefix}{fn}("
    if indent + len(head) + len(items[0]) + 1 <= width:
        cands.append(_pack(head, " " * len(head), items, end, indent, width))
        if decl:
            return cands[-1]
    cands.append([head] + _pack(INDENT, INDENT, items, end, indent, width))
    return min(cands, key=len)  # min keeps the first of equally short ones


def open_comment_lines(text: str, width: int = WIDTH) -> list[str]:
    """comment_lines without its closing: a block comment that goes on (" *" lines, " */")."""
    lines = comment_lines(text, "", width)
    return lines[:-1] if len(lines) > 1 else [lines[0][: -len(" */")]]


def comment_lines(text: str, indent: str = "", width: int = WIDTH) -> list[str]:
    """A /* */ comment wrapped at spaces to `width` columns; a word too long for a line (TF
    names joined by ';') may also break after one of its semicolons."""
    pieces: list[tuple[str, bool]] = []  # (text, continues the previous word)
    for word in comment_text(text).split():
        parts = re.findall(r"[^;]*;|[^;]+", word) if len(word) > width // 2 else [word]
        pieces += [(part, k > 0) for k, part in enumerate(parts)]
    lines: list[str] = []
    cur = indent + "/*"
    for part, glued in pieces:
        sep = "" if glued else " "
        if len(cur) + len(sep) + len(part) > width - 3 and cur.strip() not in ("/*", "*"):
            lines.append(cur)
            cur, sep = indent + " *", " "
        cur += sep + part
    if lines:
        return [*lines, cur, indent + " */"]
    return [cur + " */"]

"""The quantized graph stored in a generated folder for `compare`: JSON + npz, never pickle.

.microq/qgraph.json holds the structure (qir dataclasses by class name, tuples, dicts, numpy
scalars with their dtype) and .microq/qgraph.npz the arrays, read back with
np.load(allow_pickle=False): loading a folder someone sent you runs no code, and a damaged or
hand-edited store is a one-line error. load(dump(g)) equals g exactly: same classes, field
types, array dtypes and bytes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .. import qir
from ..errors import MicroqError

JSON_FILE = "qgraph.json"
NPZ_FILE = "qgraph.npz"
OLD_PICKLE = "qgraph.pickle"  # written by microq before the JSON store; never read
FORMAT = 1

# the only classes a store may name: the dataclasses of microq.qir
CLASSES = {
    name: cls
    for name, cls in vars(qir).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == qir.__name__
}
SCALARS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "bool"}


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def enc(self, v):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, np.ndarray):
            if v.dtype.name not in SCALARS:
                raise MicroqError(f"cannot store an array of dtype {v.dtype} in {NPZ_FILE}")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = v
            return {"$array": key}
        if isinstance(v, np.generic):
            if v.dtype.name not in SCALARS:
                raise MicroqError(f"cannot store a scalar of dtype {v.dtype} in {JSON_FILE}")
            return {"$scalar": v.dtype.name, "value": v.item()}
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, tuple):
            return {"$tuple": [self.enc(x) for x in v]}
        if isinstance(v, list):
            return [self.enc(x) for x in v]
        if isinstance(v, dict):
            return {"$dict": [[self.enc(k), self.enc(x)] for k, x in v.items()]}
        cls = type(v)
        if dataclasses.is_dataclass(v) and CLASSES.get(cls.__name__) is cls:
            return {"$type": cls.__name__,
                    "fields": {k: self.enc(x) for k, x in vars(v).items()}}
        raise MicroqError(f"cannot store a {cls.__name__} in {JSON_FILE}")


def dump(qgraph: qir.QGraph) -> dict[str, bytes]:
    """{file name: bytes} of the store (written into the folder's .microq/)."""
    e = _Encoder()
    doc = {"format": FORMAT, "graph": e.enc(qgraph)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"
    return {JSON_FILE: text.encode(), NPZ_FILE: _npz(e.arrays)}


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """np.savez's format with fixed zip timestamps: the same graph gives the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


class _Decoder:
    def __init__(self, arrays) -> None:
        self.arrays = arrays

    def dec(self, v):
        if v is None or isinstance(v, (bool, str, int, float)):
            return v
        if isinstance(v, list):
            return [self.dec(x) for x in v]
        if not isinstance(v, dict):
            raise ValueError(f"unexpected {type(v).__name__}")
        if "$array" in v:
            a = self.arrays[v["$array"]]
            if a.dtype.name not in SCALARS:
                raise ValueError(f"array of dtype {a.dtype}")
            return a
        if "$scalar" in v:
            if v["$scalar"] not in SCALARS:
                raise ValueError(f"scalar dtype {v['$scalar']!r}")
            return np.dtype(v["$scalar"]).type(v["value"])
        if "$tuple" in v:
            return tuple(self.dec(x) for x in v["$tuple"])
        if "$dict" in v:
            return {self.dec(k): self.dec(x) for k, x in v["$dict"]}
        if "$type" in v:
            cls = CLASSES[v["$type"]]
            fields = {k: self.dec(x) for k, x in v["fields"].items()}
            init = {f.name for f in dataclasses.fields(cls) if f.init}
            obj = cls(**{k: x for k, x in fields.items() if k in init})
            for k, x in fields.items():
                if k not in init:
                    object.__setattr__(obj, k, x)
            return obj
        raise ValueError("unknown object")


def load(meta_dir: Path) -> qir.QGraph:
    """The quantized graph of a folder's .microq/ (see module doc); one-line errors."""
    meta_dir = Path(meta_dir)
    folder = meta_dir.parent
    j, z = meta_dir / JSON_FILE, meta_dir / NPZ_FILE
    if not j.is_file() and (meta_dir / OLD_PICKLE).is_file():
        raise MicroqError(f"{folder} was written by an older microq (its .microq/{OLD_PICKLE} "
                          "is not read: it could run code); compile the model again")
    if not j.is_file() or not z.is_file():
        raise MicroqError(f"{folder}: .microq/{JSON_FILE} or {NPZ_FILE} is missing; compile "
                          "the model again")
    bad = f"{folder}: .microq/{JSON_FILE} / {NPZ_FILE} are damaged"
    try:
        doc = json.loads(j.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format') if isinstance(doc, dict) else '?'}")
        with np.load(z, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        graph = _Decoder(arrays).dec(doc["graph"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
            UnicodeDecodeError, zipfile.BadZipFile, EOFError) as e:
        raise MicroqError(f"{bad} ({type(e).__name__}: {str(e)[:200]}); compile the model "
                          "again") from None
    if not isinstance(graph, qir.QGraph):
        raise MicroqError(f"{bad} (no quantized graph); compile the model again")
    return graph

"""Every kernel's C emitter, keyed by qir kernel name (microq.ops.KERNELS): the int8 ones
(layers.py) and the 16x8 ones (layers_s16.py, which builds on layers.py's helpers)."""

from __future__ import annotations

from collections.abc import Callable

from ..qir import QNode
from .layers import EMITTERS_S8, Ctx, LayerCode
from .layers_s16 import EMITTERS_S16

EMITTERS: dict[str, Callable[[Ctx, QNode], LayerCode]] = {**EMITTERS_S8, **EMITTERS_S16}

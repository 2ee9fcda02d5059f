"""Names: the one C-identifier check (ASCII only) and the one list of the emulated targets and
boards the CLI, api and runtime accept (runtime.mcu.TARGETS / runtime.boards.BOARDS define them;
tests/test_boards.py checks they agree). Imports nothing of ours, so the CLI can build its
options without loading the runtime."""

from __future__ import annotations

import re

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_c_identifier(name: str) -> bool:
    """A portable C identifier: ASCII letters, digits and _, not starting with a digit (no
    Unicode letters, which str.isidentifier and \\w accept)."""
    return isinstance(name, str) and _C_IDENTIFIER.fullmatch(name) is not None


MCU_TARGET_NAMES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33",
                    "cortex-m55")
TARGET_NAMES = ("host", *MCU_TARGET_NAMES)
BOARD_NAMES = ("stm32f411", "stm32l4r5", "nrf52840", "rp2040", "esp32c3", "microbit",
               "microbit-v1")


def identifier_from(text: str, prefix: str, max_len: int = 48) -> str:
    """`prefix` + `text` made a C identifier: every run of characters other than ASCII letters
    and digits becomes one '_' (leading/trailing ones dropped), cut to `max_len` characters.
    Not unique by itself: the caller resolves collisions. Checked with is_c_identifier."""
    body = re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_")
    name = (prefix + body)[:max_len].rstrip("_") or prefix.rstrip("_") or "t"
    if not is_c_identifier(name):
        raise ValueError(f"internal error: {name!r} is not a C identifier")
    return name

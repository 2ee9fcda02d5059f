"""Names that reach C: the one check (ASCII only; imports nothing of ours)."""

from __future__ import annotations

import re

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_c_identifier(name: str) -> bool:
    """A portable C identifier: ASCII letters, digits and _, not starting with a digit (no
    Unicode letters, which str.isidentifier and \\w accept)."""
    return isinstance(name, str) and _C_IDENTIFIER.fullmatch(name) is not None

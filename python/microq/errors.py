"""User-facing errors: one line, names the file/node/key, says what to do (no traceback)."""


class MicroqError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits 1."""


class UnsupportedModelError(MicroqError):
    """The model has nodes microq cannot lower; `problems` lists (node, op_type, reason)."""

    def __init__(self, path: str, problems: list[tuple[str, str, str]]):
        self.path = path
        self.problems = problems
        items = "; ".join(f"node '{n}' ({op}): {why}" for n, op, why in problems)
        invalid = all("invalid" in why for _, _, why in problems)
        hint = ("Fix or re-export the model." if invalid
                else "See `microq inspect` for the supported ops.")
        super().__init__(f"{path}: {len(problems)} unsupported node(s): {items}. {hint}")

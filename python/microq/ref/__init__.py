"""numpy executors of the IR: float (for calibration) and integer (the spec of every C kernel)."""

"""microq: float ONNX in, integer-only int8 C for microcontrollers out."""

__version__ = "0.1.0"

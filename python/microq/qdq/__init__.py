"""QDQ ONNX interop: write our quantization as a standard QDQ model, and compile QDQ models."""

from microq.qdq.export import export_qdq
from microq.qdq.importer import import_qdq
from microq.qdq.strip import is_qdq

__all__ = ["export_qdq", "import_qdq", "is_qdq"]

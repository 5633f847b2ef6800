"""Export models to deployable artifacts and run them on their runtimes."""

from edgeslim.export.onnx import OnnxExport, Parity, check_parity, export_onnx, ort_latency, ort_session

__all__ = ["OnnxExport", "Parity", "check_parity", "export_onnx", "ort_latency", "ort_session"]

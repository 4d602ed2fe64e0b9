"""Export of converted models: ONNX (integer graph, bit-exact with the engine) and its check.

:func:`export_onnx` / :func:`program_to_onnx` build the graph from an integer program;
:func:`check_onnx` runs it with onnxruntime against the engine.
"""

from dynabit.export.onnx_check import OnnxCheck, check_onnx
from dynabit.export.onnx_export import OnnxExportError, export_onnx, program_to_onnx

__all__ = ["OnnxCheck", "OnnxExportError", "check_onnx", "export_onnx", "program_to_onnx"]

"""Exporters: PyTorch → ONNX (FP32 / FP16 / INT8 Q/DQ) → TensorRT engine, each artifact checked for parity.

Modules import torch, onnx and onnxruntime inside functions; TensorRT is imported only when an engine is built.
"""

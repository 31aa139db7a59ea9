"""Torch-free face-swap runtime: onnxruntime + numpy + OpenCV."""

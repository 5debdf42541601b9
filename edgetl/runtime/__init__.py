"""One runtime over every artifact edgetl makes: PyTorch run dirs, ONNX files, TensorRT engines, AOTI packages."""

"""ONNX-to-ISA compiler (built in the compiler issue); imports `isa` and `sim`."""

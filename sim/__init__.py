"""Simulators of the accelerator: the functional golden model (and later the RTL backend)."""

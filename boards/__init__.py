"""Board definitions and FPGA flows (built in the boards issue)."""

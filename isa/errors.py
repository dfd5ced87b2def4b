"""Error types of Loom: each carries a one-line message naming the problem and the fix."""


class LoomError(Exception):
    """Base of every error Loom reports to a user as one line (the CLI catches it)."""


class ConfigError(LoomError):
    """An HwConfig field is invalid, or the config does not fit the instruction encoding."""


class IsaError(LoomError):
    """An instruction or micro-op is malformed: a field out of range or an illegal combination."""


class AsmError(LoomError):
    """Assembler text that cannot be assembled; the message names the file and line."""


class ProgramError(LoomError):
    """A Program or .loom file is inconsistent, corrupt, truncated or of another version."""


class SimError(LoomError):
    """A simulated program did something illegal (out-of-range access, deadlock, bad order)."""


class DeadlockError(SimError):
    """No stage can make progress: the message says which stage waits on which queue."""


class CycleLimitError(SimError):
    """A simulation ran past its cycle limit without finishing."""


class ToolError(LoomError):
    """An external tool (Verilator, Yosys, a C++ compiler) is missing or failed."""

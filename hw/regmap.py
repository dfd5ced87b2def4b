"""The host's register map as data: the register file, the Python drivers and the docs read it.

Registers are 32-bit words of an AXI4-Lite window; a 64-bit register takes two consecutive words,
low word first. A field's access is `rw` (the host writes, the core reads), `ro` (the core drives
it) or `w1s` (writing 1 fires a one-cycle pulse; it reads back the status named in its doc).
Counter registers (`counter=True`) are cleared when a run starts.
"""

import dataclasses
from dataclasses import dataclass

WORD_BYTES = 4
ACCESS = ("rw", "ro", "w1s")
# Major and minor version of this map, 16 bits each: a driver refuses an unknown major.
VERSION = 0x0001_0000


@dataclass(frozen=True)
class Field:
    """A bit field of a register."""

    name: str
    lsb: int
    width: int
    access: str
    doc: str

    def __post_init__(self):
        if self.access not in ACCESS:
            raise ValueError(f"field {self.name}: access must be one of {ACCESS}, not "
                             f"{self.access!r}")
        if self.lsb < 0 or self.width < 1:
            raise ValueError(f"field {self.name}: bad position {self.lsb}, width {self.width}")

    @property
    def mask(self) -> int:
        """The field's bits within its register."""
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """A register at a byte `offset` of the window, made of non-overlapping fields."""

    name: str
    offset: int
    doc: str
    fields: tuple[Field, ...]
    counter: bool = False

    def __post_init__(self):
        if self.offset % WORD_BYTES:
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not word-aligned")
        used = 0
        for f in self.fields:
            if f.mask & used:
                raise ValueError(f"register {self.name}: field {f.name} overlaps another")
            used |= f.mask
        if used >> 64:
            raise ValueError(f"register {self.name}: fields go past bit 63")

    @property
    def width(self) -> int:
        """Bits up to the highest field bit."""
        return max(f.lsb + f.width for f in self.fields)

    @property
    def words(self) -> int:
        """32-bit words the register takes (2 for a 64-bit counter)."""
        return -(-self.width // 32)

    def describe(self) -> dict:
        """The register as plain data, for manifests and docs."""
        return {
            "name": self.name,
            "offset": self.offset,
            "words": self.words,
            "counter": self.counter,
            "doc": self.doc,
            "fields": [dataclasses.asdict(f) for f in self.fields],
        }

    def field(self, name: str) -> Field:
        """The field called `name`."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")


def _word(name: str, offset: int, access: str, doc: str, *, counter=False, width=32) -> Register:
    """A register holding one field of its own name."""
    return Register(name, offset, doc, (Field(name, 0, width, access, doc),), counter)


def _counter(name: str, offset: int, doc: str, width: int = 32) -> Register:
    return _word(name, offset, "ro", doc, counter=True, width=width)


REGISTERS: tuple[Register, ...] = (
    Register("CONTROL", 0x00, "Starts a run and enables the interrupt.", (
        Field("START", 0, 1, "w1s", "write 1 to start a run (ignored while busy); reads as BUSY"),
        Field("IRQ_ENABLE", 1, 1, "rw", "irq is STATUS.DONE while this is set"),
    )),
    Register("STATUS", 0x04, "State of the current or last run.", (
        Field("BUSY", 0, 1, "ro", "a run is in progress"),
        Field("DONE", 1, 1, "ro", "the last run finished; cleared by the next start"),
        Field("DRAM_ERROR", 2, 1, "ro", "a DRAM access got an error response since the start"),
    )),
    _word("INSN_BASE", 0x08, "rw", "byte address of the first instruction"),
    _word("INSN_COUNT", 0x0C, "rw", "number of 128-bit instructions to run"),
    _word("UOP_BASE", 0x10, "rw", "byte address of DRAM element 0 of the UOP window"),
    _word("INP_BASE", 0x14, "rw", "byte address of DRAM element 0 of the INP window"),
    _word("WGT_BASE", 0x18, "rw", "byte address of DRAM element 0 of the WGT window"),
    _word("ACC_BASE", 0x1C, "rw", "byte address of DRAM element 0 of the ACC window"),
    _word("OUT_BASE", 0x20, "rw", "byte address of DRAM element 0 of the OUT window"),
    _counter("CYCLES", 0x30, "cycles while busy: start to done (low word; high word at 0x34)",
             width=64),
    _counter("FETCH_BUSY", 0x40, "cycles the fetch unit was busy"),
    _counter("LOAD_BUSY", 0x44, "cycles the load unit was busy"),
    _counter("LOAD_STALL", 0x48, "cycles the load unit waited for a token or for room"),
    _counter("COMPUTE_BUSY", 0x4C, "cycles the compute unit was busy"),
    _counter("COMPUTE_STALL", 0x50, "cycles the compute unit waited for a token or for room"),
    _counter("STORE_BUSY", 0x54, "cycles the store unit was busy"),
    _counter("STORE_STALL", 0x58, "cycles the store unit waited for a token or for room"),
    _counter("GEMM_UOPS", 0x5C, "GEMM micro-ops executed"),
    _counter("ALU_UOPS", 0x60, "ALU micro-ops executed"),
    _word("CONFIG_ID", 0xF0, "ro", "HwConfig.config_id of the hardware"),
    _word("VERSION", 0xF4, "ro", "version of this register map: major << 16 | minor"),
)

REGISTERS_BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}


def _check_table():
    words: dict[int, str] = {}
    for reg in REGISTERS:
        for k in range(reg.words):
            offset = reg.offset + k * WORD_BYTES
            if offset in words:
                raise ValueError(f"{reg.name} and {words[offset]} share offset {offset:#x}")
            words[offset] = reg.name
    names = [f.name for r in REGISTERS for f in r.fields]
    if len(set(names)) != len(names):
        raise ValueError("field names must be unique across the map")


_check_table()

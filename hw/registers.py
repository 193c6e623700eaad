"""The accelerator's command/status registers, written down once as data.

The map below is the single source for the RTL register file, the host drivers (Amaranth
testbench, Verilator harness header, cocotb driver, UART host link) and the table in
docs/architecture.md, in the spirit of amaranth-soc's register builder (not installable
here).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import DATAFLOWS, ArrayConfig

__all__ = [
    "CONFIG_LAYOUT",
    "DIM_BITS",
    "REG",
    "REGISTERS",
    "Register",
    "RegisterBus",
    "config_from_word",
    "config_word",
    "register_table_markdown",
]

#: Width of the M, K, N registers: layers up to 65535 in each dimension.
DIM_BITS = 16

#: The CONFIG register: what a build is, in one 32-bit word that the RTL drives, the
#: UART protocol carries and the host decodes (first field at bit 0).
CONFIG_LAYOUT = data.StructLayout(
    {
        "rows": 7,
        "cols": 7,
        "acc_bits": 6,
        "act_bits": 4,
        "weight_bits": 4,
        "act_signed": 1,
        "saturate": 1,
        "dataflow": 1,
        "preload": 1,
    }
)


def _config_doc() -> str:
    fields = []
    for name, f in CONFIG_LAYOUT:
        hi = f.offset + f.width - 1
        fields.append(f"{name} [{hi}:{f.offset}]" if f.width > 1 else f"{name} [{f.offset}]")
    return (
        "the build: "
        + ", ".join(fields)
        + " (dataflow 0: output-stationary, 1: weight-stationary; preload 1: MODE bit 2"
        " continues partial sums)"
    )


@dataclass(frozen=True)
class Register:
    """One 32-bit register: word address, access ("r", "w", "rw") and meaning."""

    name: str
    addr: int
    access: str
    doc: str


REGISTERS: tuple[Register, ...] = (
    Register(
        "CTRL",
        0x0,
        "w",
        "bit 0: start a layer with the command registers below (ignored while busy)",
    ),
    Register(
        "STATUS", 0x1, "r", "bit 0: busy; bit 1: done (set when a layer finishes, cleared by start)"
    ),
    Register("M", 0x2, "rw", "rows of X and of the result (1..65535)"),
    Register("K", 0x3, "rw", "reduction length (1..65535)"),
    Register("N", 0x4, "rw", "columns of W and of the result (1..65535)"),
    Register("ACT_BASE", 0x5, "rw", "activation buffer word of X's first row tile"),
    Register("WGT_BASE", 0x6, "rw", "weight buffer word of W's first column tile"),
    Register("PARAM_BASE", 0x7, "rw", "parameter buffer word of the first column tile"),
    Register("RES_BASE", 0x8, "rw", "result buffer word of result row 0, column tile 0"),
    Register(
        "MODE",
        0x9,
        "rw",
        "bit 0: ReLU; bit 1: requantize (0: raw P-bit results); bit 2: continue: the dot "
        "products start from the result words and flags at RES_BASE, the previous call's "
        "raw results, instead of zero (ignored by a build without preload, CONFIG bit 31)",
    ),
    Register("FLAGGED", 0xA, "r", "outputs of the last layer whose overflow flag is set"),
    Register("CYCLES", 0xB, "r", "cycles the last layer was busy, start to done"),
    Register("CONFIG", 0xC, "r", _config_doc()),
)

#: Address of each register by name, e.g. ``REG["CTRL"]``.
REG: dict[str, int] = {r.name: r.addr for r in REGISTERS}


def config_word(cfg: ArrayConfig) -> int:
    """The CONFIG register's value, so a host can check which build it talks to."""
    value = CONFIG_LAYOUT.const(
        {
            "rows": cfg.rows,
            "cols": cfg.cols,
            "acc_bits": cfg.acc_bits,
            "act_bits": cfg.act_bits,
            "weight_bits": cfg.weight_bits,
            "act_signed": cfg.act_signed,
            "saturate": cfg.overflow == "saturate",
            "dataflow": DATAFLOWS.index(cfg.dataflow),
            "preload": cfg.preload,
        }
    )
    return value.as_value().value


def config_from_word(word: int, base: ArrayConfig | None = None) -> ArrayConfig:
    """The configuration a CONFIG word describes; the fields the word does not hold
    (buffers, output-stage widths) come from ``base``."""
    c = data.Const(CONFIG_LAYOUT, word)
    return (base or ArrayConfig()).replace(
        rows=int(c.rows),
        cols=int(c.cols),
        acc_bits=int(c.acc_bits),
        act_bits=int(c.act_bits),
        weight_bits=int(c.weight_bits),
        act_signed=bool(c.act_signed),
        overflow="saturate" if c.saturate else "wrap",
        dataflow=DATAFLOWS[int(c.dataflow)],
        preload=bool(c.preload),
    )


class RegisterBus(wiring.Signature):
    """A minimal synchronous register bus, seen from the device.

    Members
    -------
    addr : In(4)      register word address
    w_data : In(32)   data to write
    w_en : In(1)      write ``w_data`` to ``addr`` at this clock edge
    r_data : Out(32)  contents of ``addr``, combinationally
    """

    def __init__(self):
        super().__init__({"addr": In(4), "w_data": In(32), "w_en": In(1), "r_data": Out(32)})


def register_table_markdown() -> str:
    """The register map as a Markdown table (docs/architecture.md embeds exactly this)."""
    lines = ["| addr | name | access | meaning |", "|---|---|---|---|"]
    for r in REGISTERS:
        lines.append(f"| 0x{r.addr:X} | `{r.name}` | {r.access} | {r.doc} |")
    return "\n".join(lines)

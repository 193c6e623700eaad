"""The exceptions every oasa module raises, one class per exit code of the ``oasa`` command.

A caller that only wants to know *what kind* of failure happened catches one of the four
classes below; the command line maps them to exit codes in one place
(:func:`exit_code`), so a new error is classified where it is defined, not in the CLI.

=====  ==========================================================================
code   meaning
=====  ==========================================================================
0      ok
1      verification failed: the RTL differs from the golden model, a property is
       not proved, timing is not met, the hardware never finished
2      bad input: a value, file, shape or option the user can correct
3      a tool or link failed: a Verilator or Yosys build, the serial link
130    interrupted (Ctrl-C)
141    broken pipe (the reader of the output went away)
=====  ==========================================================================
"""

from __future__ import annotations

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TOOL",
    "EXIT_VERIFICATION",
    "MAX_MESSAGE",
    "HardwareTimeout",
    "InputError",
    "OasaError",
    "ToolError",
    "VerificationError",
    "exit_code",
    "one_line",
]

EXIT_OK = 0
EXIT_VERIFICATION = 1
EXIT_INPUT = 2
EXIT_TOOL = 3
#: An exception no oasa module meant to raise: a bug, reported with its traceback.
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class OasaError(Exception):
    """Base of every error oasa raises on purpose; ``exit_code`` says which kind it is."""

    exit_code: int = EXIT_VERIFICATION

    def __init__(self, *args: object) -> None:
        # One line, whatever a message quotes (a layer name, a tool's output).
        if len(args) == 1 and isinstance(args[0], str):
            args = (" ".join(args[0].split()),)
        super().__init__(*args)


class VerificationError(OasaError, AssertionError):
    """A check of the hardware failed: the RTL or a board differs from the golden model,
    a formal property is not proved, or timing is not met (exit 1)."""

    exit_code = EXIT_VERIFICATION


class HardwareTimeout(VerificationError):
    """The hardware did not finish within the budget the cycle model allows: a broken
    design waits forever for ``done`` otherwise (exit 1)."""


class InputError(OasaError, ValueError):
    """Bad input the user can correct: a value out of range, a malformed or missing file,
    a shape that does not fit (exit 2). The message says what to do."""

    exit_code = EXIT_INPUT


class ToolError(OasaError, RuntimeError):
    """An external tool or link failed: a Verilator or Yosys build, the formal tools, the
    serial link to a board (exit 3)."""

    exit_code = EXIT_TOOL


def exit_code(error: BaseException) -> int:
    """The ``oasa`` command's exit code for ``error``."""
    if isinstance(error, OasaError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    return EXIT_INTERNAL


#: Longest message printed: a value quoted from a file may be huge.
MAX_MESSAGE = 400


def one_line(error: BaseException) -> str:
    """The error's message on one line (tool output can hold newlines), cut to
    :data:`MAX_MESSAGE` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."

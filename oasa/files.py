"""Paths in and out of oasa: checked before any work, written so that nothing half-done
is ever left behind.

Every command checks its output paths *before* it computes (a read-only folder found after
a ten-minute sweep loses the sweep), writes through :func:`atomic_write` (a temporary file
in the same folder, renamed into place only when complete: Ctrl-C or a crash leaves the old
file or none, never a truncated one), and checks its input files with one message per kind
of problem (missing, a folder, unreadable, the wrong format).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tokenize
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from oasa.errors import InputError

__all__ = [
    "atomic_path",
    "atomic_write",
    "available_memory",
    "cache_dir",
    "check_input_file",
    "check_output_dir",
    "check_output_path",
    "format_bytes",
    "load_npy",
    "require_memory",
]


def _label(path: str | os.PathLike, what: str) -> str:
    return f"{what} {path}" if what else str(path)


def check_input_file(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a Path, after checking it names a readable file.

    ``what`` names where the path came from (``"--x"``) for the message."""
    p = Path(path)
    label = _label(path, what)
    if p.is_dir():
        raise InputError(f"{label}: is a folder, not a file")
    if not p.exists():
        parent = p.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.is_file():
            raise InputError(f"{label}: no such file ({parent} is a file, not a folder)")
        hint = "" if parent == p.parent else f" (folder {p.parent} does not exist)"
        raise InputError(f"{label}: no such file{hint}")
    if not p.is_file():
        raise InputError(f"{label}: not a regular file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{label}: not readable (permission denied)")
    return p


def check_output_path(path: str | os.PathLike, what: str = "", *, suffix: str = "") -> Path:
    """``path`` as a Path, after checking that a file can be written there.

    Refuses a folder, a path below a file, a folder that cannot be written and, with
    ``suffix``, a name without it (numpy would add the suffix silently and the file would
    not be where the user looks). Missing parent folders are fine: the writer makes them.
    """
    p = Path(path)
    label = _label(path, what)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise InputError(f"{label or repr(str(path))}: not a file name")
    if suffix and p.suffix != suffix:
        raise InputError(f"{label}: the file name must end in {suffix} (e.g. {p.name}{suffix})")
    if p.is_dir():
        raise InputError(f"{label}: is a folder; give a file name inside it")
    if p.exists() and not p.is_file():
        raise InputError(f"{label}: exists and is not a regular file")
    _check_writable_folder(p.parent, label)
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{label}: the file exists and is read-only")
    return p


def _check_writable_folder(folder: Path, label: str) -> None:
    """The folder, or its nearest existing ancestor (the writer makes the rest), must
    take a new file: tried by making one, since permissions alone do not tell (root
    passes every permission check, and a read-only file system fails none)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{label}: {folder} is a file, so no folder can be made below it")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(f"{label}: cannot write in {folder} ({e.strerror})") from None


def check_output_dir(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a Path, after checking that it is, or can become, a writable folder."""
    p = Path(path)
    label = _label(path, what)
    if p.exists() and not p.is_dir():
        raise InputError(f"{label}: is a file, not a folder")
    _check_writable_folder(p, label)
    return p


def _usual_mode(tmp: str) -> None:
    """mkstemp makes 0600 files; give the result the mode a plain open() would (0666
    less the umask), so a written network or model is readable as any other file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path`` and rename it to ``path`` when the block
    ends without an exception; on any exception, KeyboardInterrupt included, remove it.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.txt", "w") as f:
    ...     _ = f.write("done")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('done', ['a.txt'])
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        _usual_mode(tmp)
        os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike | None) -> Iterator[str | None]:
    """A temporary name next to ``path`` for a tool that writes by name (a waveform, a
    build); renamed to ``path`` when the block ends without an exception, removed
    otherwise. ``None`` passes through (nothing to write)."""
    if path is None:
        yield None
        return
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=f".part{p.suffix}")
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror})") from None
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            _usual_mode(tmp)
        os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_npy(path: str | os.PathLike, what: str = "") -> np.ndarray:
    """A ``.npy`` array, with one-line errors for each way the file can be wrong."""
    p = check_input_file(path, what)
    label = _label(path, what)
    if zipfile.is_zipfile(p):
        raise InputError(f"{label}: is an .npz archive; give a single array saved with numpy.save")
    with open(p, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise InputError(f"{label}: not a .npy file (no NumPy header); save it with numpy.save")
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle=False" in str(e) and "Header" not in str(e):
            raise InputError(f"{label}: holds Python objects (pickled), not numbers") from None
        raise InputError(f"{label}: not a readable .npy file ({e})") from None
    # A damaged header fails numpy's parser in many ways (or declares a shape no memory
    # holds): to the user, all say the file is damaged.
    except (
        OSError, EOFError, TypeError, IndexError, SyntaxError, tokenize.TokenError, MemoryError,
        OverflowError,
    ) as e:  # fmt: skip
        raise InputError(f"{label}: not a readable .npy file ({e})") from None
    if not isinstance(a, np.ndarray):
        raise InputError(f"{label}: not a .npy array")
    return a


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1.5 GiB`` style.

    >>> format_bytes(80 * 2**30), format_bytes(512)
    ('80.0 GiB', '512 B')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require_memory(nbytes: int, what: str) -> None:
    """Refuse up front work that needs more memory than the machine has available."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise InputError(
            f"{what} needs about {format_bytes(nbytes)} of memory, but only "
            f"{format_bytes(free)} is available: make it smaller"
        )


def cache_dir() -> Path:
    """The per-user cache of oasa's builds, float models and syntheses: ``$OASA_CACHE``,
    else ``$XDG_CACHE_HOME/oasa``, else ``~/.cache/oasa``. Everything in it can be deleted
    and is rebuilt when needed."""
    if os.environ.get("OASA_CACHE"):
        return Path(os.environ["OASA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "oasa"

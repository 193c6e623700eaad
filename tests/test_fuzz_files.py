"""Property-based fuzzing (Hypothesis) of the library functions that read untrusted input:
``oasa.sim.netfile.load``, ``oasa.files.load_npy``, the operand checks of
``oasa.sim.golden`` (``gemm``, ``check_activations``, ``check_weights``, ``output_stage``)
and ``certificates.certify``.

Why: these functions are the wall between a user's files and arrays and the rest of oasa.
Their contract is that bad input of any kind is refused with an :class:`InputError`
subclass and a one-line message (the CLI turns that into exit 2), and that anything else
escaping them is a bug (exit 70 with a traceback). Hand-written tests cover the ways
someone thought of; these generate the rest: random bytes, truncated archives, damaged
zip headers, zip members replaced by junk or by ``.npy`` files with crafted headers, meta
JSON with keys deleted or values of the wrong type, arrays of other dtypes, shapes and
values, tampered weights under an old certificate, and numpy operands of every dtype, rank
and shape (zero-size included). Where a property has an independent oracle (plain Python
sums for certificates, the plain-Python arithmetic of ``reference.py``), the outcome is
checked against it, not only its exception class.

Inputs that once crashed a loader (found by this suite) are pinned with ``@example`` in
tests of their own, so that they are checked whatever Hypothesis happens to generate; the
broad tests leave out only those inputs.

``OASA_FUZZ_EXAMPLES`` sets the examples per property (default 25: a few seconds in all;
e.g. ``OASA_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_files.py`` for a long run).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import re
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference
from fuzzing import FUZZ
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_netfile import _rewrite, small_network

from oasa.config import ArrayConfig
from oasa.errors import InputError
from oasa.files import load_npy
from oasa.sim import certificates, golden, netfile
from oasa.sim.certificates import CertificateError
from oasa.sim.golden import OperandError
from oasa.sim.netfile import NetfileError, Network

# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (Hypothesis forbids function-scoped fixtures)."""
    with tempfile.TemporaryDirectory(prefix="oasa-fuzz-") as tmp:
        yield Path(tmp)


@functools.cache
def _valid_file() -> bytes:
    with scratch() as tmp:
        path = tmp / "net.npz"
        netfile.save(small_network(), path)
        return path.read_bytes()


def valid_file(folder: Path) -> Path:
    """The saved small_network() in ``folder``."""
    path = folder / "valid.npz"
    path.write_bytes(_valid_file())
    return path


def valid_arrays() -> dict[str, np.ndarray]:
    """A fresh copy of every entry of the valid file, meta included."""
    with np.load(io.BytesIO(_valid_file())) as f:
        return {k: f[k].copy() for k in f.files}


def valid_meta() -> dict[str, Any]:
    return json.loads(str(valid_arrays()["meta"][()]))


def npy_member(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    """An .npz-like zip archive (stored, as numpy.savez writes it) of raw members."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def valid_members(**changes: bytes) -> dict[str, bytes]:
    """The valid file's zip members as raw bytes, ``changes`` replacing some."""
    members = {f"{k}.npy": npy_member(a) for k, a in valid_arrays().items()}
    members.update({f"{k}.npy": v for k, v in changes.items()})
    return members


def check_message(error: BaseException, path: Path) -> None:
    """An InputError's message is one line and names the file it is about."""
    msg = str(error)
    assert "\n" not in msg and "\r" not in msg, f"message spans lines: {msg!r}"
    assert str(path) in msg, f"message does not name {path}: {msg!r}"


def load_outcome(path: Path) -> Network | NetfileError | CertificateError:
    """netfile.load's network, or its refusal once checked against the contract. Any other
    exception propagates and fails the test, with its traceback."""
    try:
        return netfile.load(path)
    except (NetfileError, CertificateError) as e:
        check_message(e, path)
        return e


def load_bytes(data: bytes) -> Network | NetfileError | CertificateError:
    with scratch() as tmp:
        path = tmp / "net.npz"
        path.write_bytes(data)
        return load_outcome(path)


def npy_bytes(header: str, body: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file with any header text, framed and padded the way numpy frames it."""
    encoding = "utf8" if version >= (3, 0) else "latin1"
    raw = header.encode(encoding, errors="replace")
    length_size = 2 if version == (1, 0) else 4
    prefix = 6 + 2 + length_size
    raw += b" " * (-(prefix + len(raw) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + len(raw).to_bytes(length_size, "little") + raw + body


def header(descr: str = "'<i8'", fortran: str = "False", shape: str = "(3,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def channel_sums(weight: np.ndarray) -> list[tuple[int, int]]:
    """Per output channel: (sum of the positive weights, sum of the negative ones), from
    plain Python integers."""
    rows = np.asarray(weight).reshape(len(weight), -1).tolist()
    return [(sum(v for v in r if v > 0), sum(v for v in r if v < 0)) for r in rows]


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def weight_range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def product_bits(act_bits: int, act_signed: bool, weight_bits: int) -> int:
    """The narrowest signed width holding every activation x weight product."""
    products = [a * w for a in act_range(act_bits, act_signed) for w in weight_range(weight_bits)]
    p = 1
    while not -(2 ** (p - 1)) <= min(products) <= max(products) <= 2 ** (p - 1) - 1:
        p += 1
    return p


def channel_need(weight, act_bits: int, act_signed: bool, weight_bits: int) -> list[int]:
    """Per output channel, the smallest P no legal input can overflow, from the worst-case
    partial sums: each term at the activation extreme that pushes it furthest."""
    amin, amax = act_range(act_bits, act_signed)
    floor = product_bits(act_bits, act_signed, weight_bits)
    need = []
    for pos, neg in channel_sums(weight):
        hi = pos * amax + (-neg) * (-amin)
        lo = -(pos * (-amin) + (-neg) * amax)
        p = 1
        while not (-(2 ** (p - 1)) <= lo and hi <= 2 ** (p - 1) - 1):
            p += 1
        need.append(max(p, floor))
    return need


WEIGHT_KEYS = ("L0.weight", "L2.weight", "L3.weight")
ARRAY_KEYS = tuple(
    f"L{i}.{name}"
    for i in (0, 2, 3)
    for name in ("weight", "bias", "mult", "shift", "wc_lo", "wc_hi")
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
)  # floats with NaN and infinities: json writes them as NaN / Infinity, and reads them back
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def json_type(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v) if v is None else "bool"
    return type(v).__name__


# -- netfile.load: whole-file damage -------------------------------------------------------------


@FUZZ
@given(
    data=st.binary(max_size=400)
    | st.tuples(st.binary(max_size=60), st.binary(min_size=18, max_size=18)).map(
        lambda t: t[0] + b"PK\x05\x06" + t[1]
    )
)
def test_load_refuses_random_bytes(data):
    """Random bytes (some ending in a random zip end-of-archive record) are not a network."""
    assert isinstance(load_bytes(data), NetfileError)


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_load_refuses_truncated_file(cut):
    data = _valid_file()
    assert isinstance(load_bytes(data[: int(cut * len(data))]), NetfileError)


@FUZZ
@given(
    key=st.sampled_from(("meta", *ARRAY_KEYS)),
    keep=st.floats(0, 1, exclude_max=True),
)
def test_load_refuses_truncated_member(key, keep):
    """One member cut short inside an intact archive. At least the 6-byte .npy magic is
    kept: shorter array members hit the bug of the random-member test below."""
    member = npy_member(valid_arrays()[key])
    cut = max(6, int(keep * len(member)))
    with scratch() as tmp:
        path = tmp / "net.npz"
        write_zip(path, valid_members(**{key: member[:cut]}))
        assert isinstance(load_outcome(path), NetfileError)


@FUZZ
@given(data=st.binary(max_size=200))
def test_load_refuses_random_meta_member(data):
    """The meta member replaced by random bytes (not a .npy file)."""
    with scratch() as tmp:
        path = tmp / "net.npz"
        write_zip(path, valid_members(meta=data))
        assert isinstance(load_outcome(path), NetfileError)


@FUZZ
@given(key=st.sampled_from(ARRAY_KEYS), data=st.binary(max_size=200))
@example(key="L0.weight", data=b"")
def test_load_refuses_random_array_member(key, data):
    with scratch() as tmp:
        path = tmp / "net.npz"
        write_zip(path, valid_members(**{key: data}))
        assert isinstance(load_outcome(path), NetfileError)


ZIP_SIGNATURES = {"local": b"PK\x03\x04", "central": b"PK\x01\x02", "end": b"PK\x05\x06"}
#: (where, which, offset, new byte): a byte of the file, or one at ``offset`` into the
#: ``which``-th local header, central directory entry or end record.
byte_flips = st.lists(
    st.tuples(
        st.sampled_from(["file", *ZIP_SIGNATURES]),
        st.integers(0, 1 << 20),
        st.integers(0, 45),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


def apply_flips(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for where, which, offset, value in flips:
        if where == "file":
            pos = which % len(b)
        else:
            starts = [m.start() for m in re.finditer(re.escape(ZIP_SIGNATURES[where]), data)]
            pos = min(starts[which % len(starts)] + offset, len(b) - 1)
        b[pos] = value
    return bytes(b)


@FUZZ
@given(flips=byte_flips)
@example(flips=[("central", 0, 10, 99)])  # compression method -> NotImplementedError
@example(flips=[("central", 0, 8, 1)])  # encrypted flag -> RuntimeError
def test_load_survives_byte_flips(flips):
    """Bytes overwritten anywhere, zip headers preferred: loaded or refused."""
    outcome = load_bytes(apply_flips(_valid_file(), flips))
    assert isinstance(outcome, Network | NetfileError | CertificateError)


# -- netfile.load: members with crafted .npy headers ----------------------------------------------

DESCRS = [
    "'<i8'", "'|i1'", "'<u8'", "'<f8'", "'|b1'", "'<c16'", "'|O'", "'<U3'", "'|S2'", "'V0'",
    "'<M8[s]'", "'<m8'", "[('a', '<i4'), ('b', '|u1')]", "[('a',)]", "()", "[]", "5",
    "None", "'x'", "{}", "'<i8' ",
]  # fmt: skip


@st.composite
def npy_header_texts(draw) -> str:
    """Header text of a .npy file: keys dropped, added, doubled or given as bytes,
    values of any kind, the text cut short or followed by junk, or padded beyond
    numpy's 10000-character limit. Shapes stay small (large ones: the shape test)."""
    dims = draw(st.lists(st.integers(-2, 4), max_size=3))
    entries = {
        "'descr'": draw(st.sampled_from(DESCRS) | st.text(max_size=6).map(repr)),
        "'fortran_order'": draw(st.sampled_from(["False", "True", "0", "'yes'", "None"])),
        "'shape'": draw(
            st.sampled_from(["(" + "".join(f"{d}, " for d in dims) + ")", "[3]", "3", "(1.5,)"])
        ),
    }
    key_edit = draw(st.sampled_from(["none", "drop", "extra", "bytes", "none"]))
    victim = draw(st.sampled_from(sorted(entries)))
    if key_edit == "drop":
        del entries[victim]
    elif key_edit == "extra":
        entries["'other'"] = "1"
    elif key_edit == "bytes":
        entries["b" + victim] = entries.pop(victim)
    text = "{" + "".join(f"{k}: {v}, " for k, v in entries.items()) + "}"
    text = text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text
    junk = st.sampled_from(["", "'", '"', "(", "[", ")", "#", "\\", "'''"]) | st.text(max_size=4)
    return text + draw(junk) + " " * draw(st.sampled_from([0, 0, 0, 12000]))


@st.composite
def damaged_npy_headers(draw) -> bytes:
    """A .npy file whose header is crafted (npy_header_texts) or a saved header with a few
    bytes overwritten; the body is random bytes."""
    if draw(st.booleans()):
        version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0)]))
        return npy_bytes(draw(npy_header_texts()), draw(st.binary(max_size=48)), version)
    data = bytearray(npy_member(np.arange(12, dtype=np.int64).reshape(3, 4)))
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(6, 127))] = draw(st.integers(0, 255))
    return bytes(data)


HUGE_DIMS = [0, 1, 2, 3, 2**31, 10**12, 2**62, 2**63 - 1, 2**63, 2**70]


@st.composite
def npy_declared_shapes(draw) -> bytes:
    """A well-formed .npy header declaring any shape, large ones included, over a few bytes
    of data."""
    dims = draw(st.lists(st.sampled_from(HUGE_DIMS) | st.integers(-2, 4), max_size=3))
    descr = draw(st.sampled_from(["'<i8'", "'|u1'", "'<f4'", "'|b1'"]))
    shape = "(" + "".join(f"{d}, " for d in dims) + ")"
    fortran = draw(st.sampled_from(["False", "True"]))
    return npy_bytes(header(descr, fortran, shape), draw(st.binary(max_size=64)))


#: Crafted headers that each escape np.load with something other than a ValueError.
TOKEN_ERROR = npy_bytes(header(shape="(3, ")[:-3])  # unterminated: tokenize.TokenError
BYTES_KEY = npy_bytes("{b'descr': '<i8', 'fortran_order': False, 'shape': (3,), }")  # TypeError
EMPTY_DESCR = npy_bytes(header(descr="()"))  # IndexError
LONG_HEADER = npy_bytes(header() + " " * 12000, b"\0" * 24)  # 3-line ValueError on allow_pickle
HUGE_SHAPE = npy_bytes(header(shape="(1000000000000,)"))  # MemoryError
OVERSIZED_DIM = npy_bytes(header(shape=f"({2**70},)"))  # OverflowError


@FUZZ
@given(key=st.sampled_from(("meta", *ARRAY_KEYS)), member=damaged_npy_headers())
@example(key="L0.bias", member=TOKEN_ERROR)
@example(key="L0.bias", member=BYTES_KEY)
@example(key="L0.bias", member=EMPTY_DESCR)
@example(key="L0.bias", member=LONG_HEADER)
@example(key="meta", member=HUGE_SHAPE)
@example(key="L0.bias", member=OVERSIZED_DIM)
def test_load_survives_member_with_damaged_npy_header(key, member):
    """A member whose .npy header is crafted or damaged: loaded (a crafted header can
    describe a legal array) or refused."""
    with scratch() as tmp:
        path = tmp / "net.npz"
        write_zip(path, valid_members(**{key: member}))
        assert isinstance(load_outcome(path), Network | NetfileError | CertificateError)


# -- netfile.load: meta edits ---------------------------------------------------------------------

#: Keys read with str() (any JSON value loads), or not read at all.
FREE_TOP = {"method", "scales", "info"}
FREE_LAYER = {"name"}
FREE_MAXPOOL = {"name", "stride"}


def meta_slot(meta: dict, target):
    """(the dict holding the key, its free keys) for "net" or a layer index."""
    if target == "net":
        return meta, FREE_TOP
    d = meta["layers"][target]
    return d, (FREE_MAXPOOL if d["kind"] == "maxpool" else FREE_LAYER)


targets = st.sampled_from(["net", 0, 1, 2, 3])


@FUZZ
@given(target=targets, data=st.data())
def test_load_meta_key_deleted(target, data):
    """Deleting a required key is refused with a message naming it; deleting an
    informative one (method, scales, info, a layer's name) still loads."""
    meta = valid_meta()
    d, free = meta_slot(meta, target)
    key = data.draw(st.sampled_from(sorted(d)))
    with scratch() as tmp:
        bad = tmp / "bad.npz"

        def edit(m):
            del meta_slot(m, target)[0][key]

        _rewrite(valid_file(tmp), bad, meta=edit)
        outcome = load_outcome(bad)
    if key in free:
        assert isinstance(outcome, Network), outcome
    else:
        assert isinstance(outcome, NetfileError)
        if key not in ("format", "version"):
            assert f"'{key}'" in str(outcome)


#: Keys with a dedicated test below (their values once crashed the loader).
DEDICATED = {"info", "input_scale", "logit_scale"}


@FUZZ
@given(target=targets, data=st.data())
def test_load_meta_value_of_another_type(target, data):
    """A value replaced by a JSON value of another type (or, half the time, of any type):
    loaded or refused; a required key of the wrong type is refused, naming the key."""
    meta = valid_meta()
    d, free = meta_slot(meta, target)
    key = data.draw(st.sampled_from(sorted(set(d) - DEDICATED)))
    other = json_values.filter(lambda v: json_type(v) != json_type(d[key]))
    value = data.draw(other | json_values if data.draw(st.booleans()) else other)
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, meta=lambda m: meta_slot(m, target)[0].update({key: value}))
        outcome = load_outcome(bad)
    if key in free:
        assert isinstance(outcome, Network), outcome
    elif json_type(value) != json_type(d[key]) and key != "version":  # True == 1.0 == 1
        assert isinstance(outcome, NetfileError)
        if key != "format":
            assert f"'{key}'" in str(outcome)


STRING_KEYS_TOP = ("format", "guarantee", "method", "scales")
STRING_KEYS_LAYER = ("kind", "name", "overflow", "method")


@FUZZ
@given(
    target=targets,
    data=st.data(),
    text=st.sampled_from(["wrap", "saturate", "dense", "conv2d", "maxpool", "oasa-net"])
    | st.sampled_from(["none", "certified", "data-dependent", ""])
    | st.text(max_size=12),
)
def test_load_meta_random_strings(target, data, text):
    """A string value replaced by another string: loaded exactly when the new string is
    one the format allows there (judged here, independently)."""
    meta = valid_meta()
    d, _ = meta_slot(meta, target)
    keys = STRING_KEYS_TOP if target == "net" else STRING_KEYS_LAYER
    key = data.draw(st.sampled_from([k for k in keys if k in d]))
    old = d[key]
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, meta=lambda m: meta_slot(m, target)[0].update({key: text}))
        outcome = load_outcome(bad)
    if key in ("name", "method", "scales"):
        ok = True
    elif key == "overflow":
        ok = text in ("wrap", "saturate")
    elif key == "guarantee":
        safe = all(
            max(channel_need(layer.weight, 4, False, 4)) <= layer.acc_bits
            for _, layer in small_network().weighted
        )
        ok = text in ("none", "data-dependent") or (text == "certified" and safe)
    else:  # format, kind
        ok = text == old
    assert isinstance(outcome, Network) == ok, outcome
    if isinstance(outcome, Network) and key != "format":
        held = outcome if target == "net" else outcome.layers[target]
        assert getattr(held, key) == text
    elif key == "guarantee" and text == "certified":
        assert isinstance(outcome, CertificateError) and "claims to be certified" in str(outcome)


@FUZZ
@given(info=json_values)
@example(info=5)
@example(info="abc")
def test_load_meta_info_of_any_type(info):
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, meta=lambda m: m.update(info=info))
        outcome = load_outcome(bad)
    if isinstance(outcome, Network):
        assert isinstance(outcome.info, dict)


@FUZZ
@given(
    key=st.sampled_from(["input_scale", "logit_scale"]),
    value=json_values | st.integers(min_value=2**1000, max_value=2**1100) | st.floats(),
)
@example(key="input_scale", value=10**400)
@example(key="logit_scale", value=-(10**400))
def test_load_meta_scales_of_any_value(key, value):
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, meta=lambda m: m.update({key: value}))
        outcome = load_outcome(bad)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number:
        assert isinstance(outcome, NetfileError)
    elif key == "input_scale":
        try:
            as_float = float(value)
        except OverflowError:
            as_float = math.inf
        assert isinstance(outcome, Network) == (math.isfinite(as_float) and as_float > 0)


@st.composite
def meta_texts(draw) -> str:
    """Text that is not an oasa meta object: random text, JSON of another shape, or JSON
    nested deeper than Python's recursion limit."""
    kind = draw(st.sampled_from(["text", "json", "nested"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "json":
        return json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict))))
    opener = draw(st.sampled_from(["[", '{"a": ']))
    depth = draw(st.integers(1, 5000))
    closer = "]" if opener == "[" else "}"
    return opener * depth + "0" + closer * depth * draw(st.integers(0, 1))


@FUZZ
@given(text=meta_texts())
@example(text="[" * 100_000)
def test_load_refuses_meta_that_is_not_an_object(text):
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, replace={"meta": np.array(text)})
        outcome = load_outcome(bad)
    assert isinstance(outcome, NetfileError)
    assert "not valid JSON" in str(outcome) or "does not describe" in str(outcome)


@FUZZ
@given(name=st.text(max_size=10), defect=st.sampled_from(["stride", "certificate"]))
@example(name="a\nb", defect="certificate")
def test_load_message_is_one_line_whatever_the_layer_name(name, defect):
    """Any layer name, then a defect whose message quotes it: still one line."""

    def edit(m):
        m["layers"][0]["name"] = name
        if defect == "stride":
            m["layers"][0]["stride"] = 0

    hi = valid_arrays()["L0.wc_hi"]
    replace = {"L0.wc_hi": hi + 1} if defect == "certificate" else {}
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, meta=edit, replace=replace)
        outcome = load_outcome(bad)
    expected = CertificateError if defect == "certificate" else NetfileError
    assert isinstance(outcome, expected)


# -- netfile.load: arrays ---------------------------------------------------------------------------

any_dtype = st.one_of(
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="),
    hnp.complex_number_dtypes(endianness="="),
    hnp.boolean_dtypes(),
    hnp.byte_string_dtypes(endianness="=", max_len=3),
    hnp.unicode_string_dtypes(endianness="=", max_len=3),
    hnp.datetime64_dtypes(endianness="="),
)
any_array = hnp.arrays(any_dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))

#: The values each array may hold (the default ArrayConfig's output stage).
ARRAY_RANGES = {
    "weight": (-8, 7),
    "bias": (-(2**31), 2**31 - 1),
    "mult": (0, 2**16 - 1),
    "shift": (0, 63),
    "wc_lo": (-(2**62), 0),
    "wc_hi": (0, 2**62),
}


@st.composite
def replacement_arrays(draw, old: np.ndarray, name: str) -> np.ndarray:
    """Any array; or one of the right dtype and shape holding values near or beyond the
    legal range of ``name``; or the old array with one value changed."""
    how = draw(st.sampled_from(["any", "range", "one"]))
    if how == "any":
        return draw(any_array)
    info = np.iinfo(old.dtype)
    if how == "range":
        lo, hi = ARRAY_RANGES[name]
        values = st.integers(lo - 2, hi + 2) | st.sampled_from(
            [info.min, info.max, -1, 0, 1, 2**62, 2**62 + 1, -(2**62) - 1]
        )
        clipped = values.map(lambda v: min(max(v, info.min), info.max))
        return draw(hnp.arrays(old.dtype, old.shape, elements=clipped))
    new = old.copy()
    new.flat[draw(st.integers(0, old.size - 1))] = draw(st.integers(info.min, info.max))
    return new


@FUZZ
@given(key=st.sampled_from(ARRAY_KEYS), data=st.data())
def test_load_arrays_replaced(key, data):
    """An array of the file replaced by one of another dtype, shape or values: loaded
    exactly when dtype, shape and range are right and the certificate still holds (each
    judged here, independently); otherwise refused with the right class."""
    old = valid_arrays()[key]
    name = key.split(".")[1]
    new = data.draw(replacement_arrays(old, name))
    layer = int(key[1])
    fits = new.dtype == old.dtype and new.shape == old.shape
    lo, hi = ARRAY_RANGES[name]
    in_range = fits and all(lo <= v <= hi for v in new.ravel().tolist())
    if name == "weight":
        certified = in_range and channel_sums(new) == channel_sums(old)
    elif name in ("wc_lo", "wc_hi"):
        certified = in_range and np.array_equal(new, old)
    else:
        certified = in_range
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, replace={key: new})
        outcome = load_outcome(bad)
    if certified:
        assert isinstance(outcome, Network), outcome
        np.testing.assert_array_equal(getattr(outcome.layers[layer], name), new)
    elif in_range:
        assert isinstance(outcome, CertificateError), outcome
        assert f"layer {layer} " in str(outcome)
    else:
        assert isinstance(outcome, NetfileError), outcome
        assert key in str(outcome) or name in str(outcome)


def test_certificate_formula_matches_the_saved_file():
    """The oracle of the tampering test, checked first on the untouched file: for unsigned
    4-bit activations wc_hi[c] = 15 * (sum of the positive weights of channel c) and
    wc_lo[c] = -15 * (sum of the magnitudes of the negative ones)."""
    with scratch() as tmp:
        net = netfile.load(valid_file(tmp))
    for _, layer in net.weighted:
        assert (layer.act_bits, layer.act_signed) == (4, False)
        sums = channel_sums(layer.weight)
        assert layer.wc_hi.tolist() == [15 * pos for pos, _ in sums]
        assert layer.wc_lo.tolist() == [15 * neg for _, neg in sums]
        lo, hi, _ = certificates.certificate(layer)
        assert lo.tolist() == layer.wc_lo.tolist() and hi.tolist() == layer.wc_hi.tolist()


@st.composite
def tampered_weights(draw) -> tuple[str, np.ndarray]:
    """(key, new weights): some weights set to new legal values, or two weights of one
    channel swapped (the sums, so the certificate, survive that)."""
    key = draw(st.sampled_from(WEIGHT_KEYS))
    w = valid_arrays()[key]
    flat = w.reshape(len(w), -1).copy()
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 4))):
            c = draw(st.integers(0, flat.shape[0] - 1))
            k = draw(st.integers(0, flat.shape[1] - 1))
            flat[c, k] = draw(st.integers(-8, 7))
    else:
        c = draw(st.integers(0, flat.shape[0] - 1))
        i, j = draw(st.integers(0, flat.shape[1] - 1)), draw(st.integers(0, flat.shape[1] - 1))
        flat[c, [i, j]] = flat[c, [j, i]]
    return key, flat.reshape(w.shape)


@FUZZ
@given(change=tampered_weights())
def test_load_detects_tampered_weights(change):
    """New weights under the old certificate: CertificateError unless every channel's
    positive and negative sums are unchanged."""
    key, new = change
    old = valid_arrays()[key]
    with scratch() as tmp:
        bad = tmp / "bad.npz"
        _rewrite(valid_file(tmp), bad, replace={key: new})
        outcome = load_outcome(bad)
    layer = int(key[1])
    if channel_sums(new) == channel_sums(old):
        assert isinstance(outcome, Network), outcome
        np.testing.assert_array_equal(outcome.layers[layer].weight, new)
    else:
        assert isinstance(outcome, CertificateError), outcome
        assert f"layer {layer} " in str(outcome) and "changed after export" in str(outcome)


# -- certificates.certify ------------------------------------------------------------------------------


@st.composite
def networks(draw) -> Network:
    """small_network() with random legal weights, widths, P (one for all layers, or one
    per layer) and claim."""
    net = small_network()
    act_bits, weight_bits = draw(st.integers(2, 8)), draw(st.integers(4, 8))
    act_signed = draw(st.booleans())
    floor = product_bits(act_bits, act_signed, weight_bits)
    widths = st.integers(floor, 32) | st.integers(floor, min(floor + 6, 32))
    same = draw(widths) if draw(st.booleans()) else None
    for _, layer in net.weighted:
        layer.cfg = ArrayConfig(
            act_bits=act_bits,
            act_signed=act_signed,
            weight_bits=weight_bits,
            acc_bits=draw(widths) if same is None else same,
        )
        layer.weight = draw(hnp.arrays(np.int8, layer.weight.shape, elements=st.integers(-8, 7)))
    net.guarantee = draw(st.sampled_from(netfile.GUARANTEES))
    return net


@FUZZ
@given(net=networks(), data=st.data())
def test_certify_label(net, data):
    """certify's label against an independent statement: "certified" iff every layer's
    smallest safe P (worst-case sums from plain Python) is at most the P it runs at (its
    own, or the one given); otherwise "data-dependent" only for a network that claims so,
    run at its own P."""
    own = [layer.acc_bits for _, layer in net.weighted]
    p = data.draw(st.none() | st.integers(-2, 70) | st.sampled_from(own))
    result = certificates.certify(net, acc_bits=p)
    needs = []
    for _, layer in net.weighted:
        need = max(channel_need(layer.weight, layer.act_bits, layer.act_signed, layer.weight_bits))
        needs.append((need, layer.acc_bits if p is None else p))
    assert [(s.min_safe_acc_bits, s.acc_bits) for s in result.layers] == needs
    certified = all(need <= runs_at for need, runs_at in needs)
    own_p = p is None or all(p == layer.acc_bits for _, layer in net.weighted)
    if certified:
        expected = "certified"
    elif net.guarantee == "data-dependent" and own_p:
        expected = "data-dependent"
    else:
        expected = "not certified"
    assert result.label == expected
    assert result.certified == certified


# -- oasa.files.load_npy --------------------------------------------------------------------------


def npy_outcome(data: bytes) -> np.ndarray | InputError:
    """load_npy's array, or its refusal: an InputError whose message is one line and names
    the file. Anything else propagates."""
    with scratch() as tmp:
        path = tmp / "a.npy"
        path.write_bytes(data)
        try:
            return load_npy(path)
        except InputError as e:
            check_message(e, path)
            return e


@FUZZ
@given(data=st.binary(max_size=300))
def test_load_npy_refuses_random_bytes(data):
    """Random bytes (practically never starting with the NumPy magic) are refused."""
    assert isinstance(npy_outcome(data), InputError)


@FUZZ
@given(a=any_array, keep=st.floats(0, 1, exclude_max=True))
def test_load_npy_round_trip_and_truncation(a, keep):
    """Any saved array (zero-size ones too) comes back bit for bit; the same file cut short
    anywhere is refused."""
    data = npy_member(a)
    back = npy_outcome(data)
    assert isinstance(back, np.ndarray), back
    assert (back.dtype, back.shape, back.tobytes()) == (a.dtype, a.shape, a.tobytes())
    assert isinstance(npy_outcome(data[: int(keep * len(data))]), InputError)


@pytest.mark.parametrize("kind", ["pickle", "npz"])
def test_load_npy_refuses_pickles_and_archives(kind):
    buf = io.BytesIO()
    if kind == "pickle":
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.savez(buf, a=np.arange(3))
    outcome = npy_outcome(buf.getvalue())
    assert isinstance(outcome, InputError)
    assert ("pickled" if kind == "pickle" else ".npz archive") in str(outcome)


@FUZZ
@given(data=damaged_npy_headers())
@example(data=TOKEN_ERROR)
@example(data=BYTES_KEY)
@example(data=EMPTY_DESCR)
@example(data=LONG_HEADER)
def test_load_npy_damaged_header(data):
    """A crafted or damaged header: an array or an InputError, whose message blames
    pickled objects only when the header's dtype is an object dtype."""
    outcome = npy_outcome(data)
    if isinstance(outcome, InputError):
        msg = str(outcome)
        assert "pickled" not in msg or b"O'" in data, f"wrong message: {msg!r}"


@FUZZ
@given(data=npy_declared_shapes())
@example(data=HUGE_SHAPE)
@example(data=OVERSIZED_DIM)
def test_load_npy_declared_shape(data):
    outcome = npy_outcome(data)
    assert isinstance(outcome, InputError | np.ndarray)


# -- golden: operands -----------------------------------------------------------------------------


@st.composite
def configs(draw) -> ArrayConfig:
    act_bits, weight_bits = draw(st.integers(2, 8)), draw(st.integers(2, 8))
    act_signed = draw(st.booleans())
    floor = product_bits(act_bits, act_signed, weight_bits)
    acc_bits = draw(st.integers(floor, min(floor + 4, 32)) | st.integers(floor, 32))
    return ArrayConfig(
        act_bits=act_bits,
        act_signed=act_signed,
        weight_bits=weight_bits,
        acc_bits=acc_bits,
        overflow=draw(st.sampled_from(["wrap", "saturate"])),
    )


int_dtypes = hnp.integer_dtypes() | hnp.unsigned_integer_dtypes()


@st.composite
def operands(draw, lo: int, hi: int, shape: tuple[int, ...]) -> np.ndarray:
    """An array of any integer dtype holding values of [lo - 2, hi + 2] it can represent
    (so mostly legal, sometimes just outside)."""
    dtype = draw(int_dtypes)
    info = np.iinfo(dtype)
    values = st.integers(max(lo - 2, info.min), min(hi + 2, info.max))
    return draw(hnp.arrays(dtype, shape, elements=values))


def legal(a: np.ndarray, ndim: int, lo: int, hi: int) -> bool:
    """An operand golden must take, judged independently: an integer (not bool) array of
    ``ndim`` dimensions whose values all lie in [lo, hi]."""
    if a.dtype.kind not in "iu" or a.ndim != ndim:
        return False
    return all(lo <= v <= hi for v in a.ravel().tolist())


def check_gemm(x: np.ndarray, w: np.ndarray, cfg: ArrayConfig) -> None:
    """gemm's result against reference.py where the operands are legal; an OperandError
    otherwise, naming a true out-of-range value when the values are what is wrong."""
    amin, amax = act_range(cfg.act_bits, cfg.act_signed)
    wmin, wmax = weight_range(cfg.weight_bits)
    ok_x, ok_w = legal(x, 2, amin, amax), legal(w, 2, wmin, wmax)
    ok = ok_x and ok_w and x.shape[1] == w.shape[0] and x.shape[1] > 0
    if not ok:
        with pytest.raises(OperandError) as info:
            golden.gemm(x, w, cfg=cfg)
        check_value_message(str(info.value), x, amin, amax, w, wmin, wmax)
        return
    r = golden.gemm(x, w, cfg=cfg)
    xs, ws = x.tolist(), w.tolist()
    for i in range(x.shape[0]):
        for j in range(w.shape[1]):
            col = [row[j] for row in ws]
            want = reference.dot(xs[i], col, cfg.acc_bits, cfg.overflow)
            got = (int(r.out[i, j]), bool(r.overflow[i, j]), bool(r.final_overflow[i, j]))
            assert got == want, (i, j)


def check_value_message(msg: str, *operands) -> None:
    """A message about values ("x holds V, outside ...") quotes V as it is in the array:
    an element outside its range, never a wrapped or rounded stand-in."""
    m = re.search(r"^(\w+) holds (-?\d+), outside", msg)
    if not m:
        return
    for a, lo, hi in zip(operands[::3], operands[1::3], operands[2::3], strict=True):
        values = set(a.ravel().tolist()) if a.dtype.kind in "iu" else set()
        if int(m.group(2)) in values and not lo <= int(m.group(2)) <= hi:
            return
    raise AssertionError(f"{msg!r} quotes a value that is not an out-of-range element")


@FUZZ
@given(cfg=configs(), x=any_array, w=any_array)
def test_gemm_any_arrays(cfg, x, w):
    """Arrays of any dtype, rank and shape, zero-size included: a result or OperandError."""
    check_gemm(x, w, cfg)


@FUZZ
@given(
    cfg=configs(),
    dims=st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 4)),
    data=st.data(),
)
def test_gemm_integer_operands_match_reference(cfg, dims, data):
    """Mostly legal operands of every integer dtype: the result (acc, both flags) is the
    term-by-term reference's; a value just outside the range is refused, quoted."""
    m, k, n = dims
    amin, amax = act_range(cfg.act_bits, cfg.act_signed)
    wmin, wmax = weight_range(cfg.weight_bits)
    x = data.draw(operands(amin, amax, (m, k)))
    w = data.draw(operands(wmin, wmax, (k, n)))
    check_gemm(x, w, cfg)


@FUZZ
@given(
    which=st.sampled_from(["x", "w"]),
    dtype=st.sampled_from([np.uint64, np.int64, np.uint32, np.int16]),
    values=st.lists(st.integers(0, 20) | st.integers(0, 2**64 - 1), min_size=1, max_size=6),
)
@example(which="x", dtype=np.uint64, values=[2**64 - 1])
@example(which="w", dtype=np.uint64, values=[2**63])
def test_operand_values_are_quoted_as_they_are(which, dtype, values):
    """Out-of-range values, uint64 above 2**63 included, are refused and quoted with their
    true value, by gemm and by check_activations / check_weights."""
    info = np.iinfo(dtype)
    arr = np.array([min(v, info.max) + (info.min if v % 2 else 0) for v in values], dtype=dtype)
    arr = arr.reshape(1, -1) if which == "x" else arr.reshape(-1, 1)
    cfg = ArrayConfig()
    x = arr if which == "x" else np.zeros((1, arr.shape[0]), dtype=np.int64)
    w = arr if which == "w" else np.zeros((arr.shape[1], 1), dtype=np.int64)
    check_gemm(x, w, cfg)
    lo, hi = (0, 15) if which == "x" else (-8, 7)
    check = golden.check_activations if which == "x" else golden.check_weights
    if legal(arr, 2, lo, hi):
        assert check(arr, cfg).tolist() == arr.tolist()
    else:
        with pytest.raises(OperandError) as e:
            check(arr, cfg)
        assert re.match(r"\w+ holds -?\d+, outside", str(e.value)), str(e.value)
        check_value_message(str(e.value), arr, lo, hi)


@st.composite
def stage_params(draw, n: int, lo: int, hi: int) -> np.ndarray:
    """bias / mult / shift: a 0-d or per-channel integer array, legal or not, or any array."""
    if draw(st.integers(0, 3)) == 0:
        return draw(any_array)
    shape = draw(st.sampled_from([(), (n,)]))
    return draw(operands(lo, hi, shape))


@FUZZ
@given(cfg=configs(), relu=st.booleans(), data=st.data())
def test_output_stage_any_arrays(cfg, relu, data):
    """acc, bias, mult and shift of any dtype and shape: the reference's values where all
    are legal, an OperandError otherwise."""
    amin, amax = -(2 ** (cfg.acc_bits - 1)), 2 ** (cfg.acc_bits - 1) - 1
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    acc = data.draw(operands(amin, amax, shape) | any_array)
    n = acc.shape[-1] if acc.ndim else 1
    ranges = {"bias": (-(2**31), 2**31 - 1), "mult": (0, 2**16 - 1), "shift": (0, 63)}
    params = {k: data.draw(stage_params(n, lo, hi)) for k, (lo, hi) in ranges.items()}
    ok = acc.ndim >= 1 and legal(acc, acc.ndim, amin, amax)
    for k, p in params.items():
        ok = ok and p.shape in ((), (n,)) and legal(p, p.ndim, *ranges[k])
    if not ok:
        with pytest.raises(OperandError):
            golden.output_stage(acc, cfg=cfg, relu=relu, **params)
        return
    out = golden.output_stage(acc, cfg=cfg, relu=relu, **params)
    assert out.shape == acc.shape
    if acc.size == 0:
        return
    per = {k: np.broadcast_to(p, (n,)).tolist() for k, p in params.items()}
    lo, hi = act_range(cfg.act_bits, cfg.act_signed)
    want = [
        [
            reference.requantize(v, per["bias"][c], per["mult"][c], per["shift"][c], relu, lo, hi)
            for c, v in enumerate(row)
        ]
        for row in acc.reshape(-1, n).tolist()
    ]
    assert out.reshape(-1, n).tolist() == want


@FUZZ
@given(
    x=hnp.arrays(
        hnp.timedelta64_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
    )
)
@example(x=np.array([[1]], dtype="m8[s]"))
def test_timedelta_operands(x):
    """gemm, check_activations and output_stage on timedelta64 arrays: a result or an
    OperandError (numpy counts timedelta64 as an integer type)."""
    cfg = ArrayConfig()
    w = np.ones((x.shape[-1] if x.ndim else 1, 2), dtype=np.int64)
    for call in (
        lambda: golden.gemm(x, w, cfg=cfg),
        lambda: golden.check_activations(x, cfg, ndim=x.ndim),
        lambda: golden.output_stage(x, cfg=cfg),
    ):
        with contextlib.suppress(OperandError):
            call()

"""Argument parsing shared by every ``oasa`` command family: a parser whose errors are one
line with exit code 2 and whose help shows every default, and argparse types that refuse
out-of-range numbers at parse time, before any work."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence

from oasa.config import CHOICES, FIELD_GROUPS, ArrayConfig
from oasa.errors import InputError

__all__ = [
    "SEED",
    "HelpFormatter",
    "Parser",
    "UsageError",
    "add_config_options",
    "add_json_option",
    "add_where_options",
    "config_fields",
    "config_from_args",
    "int_range",
    "positive_float",
    "where_from_args",
]


class UsageError(InputError):
    """Bad input from the user: reported in one line, exit code 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless its help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or default is None or default is False:
            return text
        if default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one line, exit 2), and
    whose help shows the defaults; subcommand parsers inherit both."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # "--o" is not taken for "--output"
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in lo..hi (hi None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            allowed = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: allowed {allowed}")
        return value

    parse.__name__ = "integer"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


#: Seeds of numpy's and torch's generators.
SEED = int_range(0, 2**32 - 1)


# -- array options, built from the configuration's own fields --------------------------------

#: The defaults every array option shows.
DEFAULT_CONFIG = ArrayConfig()


def add_config_options(
    parser: argparse.ArgumentParser,
    groups: Sequence[str] = ("shape", "arithmetic", "buffers"),
    *,
    defaults: ArrayConfig | None = DEFAULT_CONFIG,
    default_note: str = "",
    only: Sequence[str] | None = None,
) -> None:
    """One ``--field-name`` option per :class:`ArrayConfig` field of ``groups`` (or just
    the fields in ``only``), typed and range-checked from :data:`oasa.config.LIMITS`.

    With ``defaults=None`` an option left out stays ``None`` and :func:`config_from_args`
    keeps the base configuration's value (``default_note`` then says what that is).
    """
    titles = {
        "shape": "array options",
        "arithmetic": "arithmetic options",
        "stage": "output stage options",
        "buffers": "accelerator buffer options (words)",
    }
    for group in FIELD_GROUPS:
        if group not in groups:
            continue
        fields = [
            f
            for f in dataclasses.fields(ArrayConfig)
            if f.metadata["group"] == group and (only is None or f.name in only)
        ]
        if not fields:
            continue
        g = parser.add_argument_group(titles[group])
        for f in fields:
            flag = "--" + f.name.replace("_", "-")
            default = None if defaults is None else getattr(defaults, f.name)
            text = f.metadata["help"]
            if defaults is None and default_note:
                text = f"{text} (default: {default_note})"
            if f.type in (bool, "bool") and f.default:  # on unless turned off: --no-...
                g.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=default, help=text
                )
            elif f.type in (bool, "bool"):
                g.add_argument(flag, action="store_true", default=default or None, help=text)
            elif f.name in CHOICES:
                g.add_argument(flag, choices=CHOICES[f.name], default=default, help=text)
            else:  # ranges are the configuration's to check: its message names them
                g.add_argument(flag, type=_integer, default=default, help=text)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


_integer.__name__ = "integer"


def config_from_args(args: argparse.Namespace, base: ArrayConfig | None = None) -> ArrayConfig:
    """``base`` (default :class:`ArrayConfig`) with every array option that was given (or
    has a default) replacing its field: the one override path, ``cfg.replace``."""
    base = base or ArrayConfig()
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ArrayConfig)
        if getattr(args, f.name, None) is not None
    }
    return base.replace(**given)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: the result as one JSON object on stdout (stable keys, documented in
    docs/commands.md); the human-readable report goes to stderr."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON on stdout (the report goes to stderr)",
    )


def config_fields(*groups: str) -> tuple[str, ...]:
    """The names of the :class:`ArrayConfig` fields in ``groups``."""
    return tuple(f.name for f in dataclasses.fields(ArrayConfig) if f.metadata["group"] in groups)


def add_where_options(parser: argparse.ArgumentParser, *, jobs_help: str) -> None:
    """Where a sweep's points run: ``--jobs J`` local processes, ``--cluster local:N`` (a
    Dask cluster oasa starts on this machine) or ``--scheduler ADDRESS`` (a running one)."""
    parser.add_argument("--jobs", type=int_range(1, 1024), help=jobs_help)
    parser.add_argument(
        "--cluster",
        metavar="local:N",
        help="run the points on a Dask cluster of N worker processes started here "
        "(default: no cluster; local processes, see --jobs)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the points on the workers of a running Dask scheduler, e.g. tcp://host:8786 "
        "(default: none)",
    )


def where_from_args(args: argparse.Namespace, *, default_jobs: int):
    """The :class:`oasa.points.Where` of :func:`add_where_options`' options."""
    from oasa.points import where_from_options

    try:
        return where_from_options(
            args.jobs, args.cluster, args.scheduler, default_jobs=default_jobs
        )
    except InputError as e:
        raise UsageError(str(e)) from None

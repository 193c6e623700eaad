"""oasa: Overflow-Aware Systolic Array.

The packages ``oasa.hw`` (Amaranth RTL), ``oasa.sim`` (golden model and backends),
``oasa.quant`` (overflow-safe quantizer) and ``oasa.fpga`` (board builds) all share
:class:`oasa.config.ArrayConfig`.
"""

from oasa.config import ArrayConfig, ConfigError

__all__ = ["ArrayConfig", "ConfigError"]
__version__ = "0.1.0"

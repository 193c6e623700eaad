"""The CONFIG register word: one layout (``CONFIG_LAYOUT``) for the RTL, the UART
protocol and the host, including the dataflow."""

from __future__ import annotations

import numpy as np

from oasa.config import ArrayConfig
from oasa.fpga.protocol import PROTOCOL_VERSION, Identity
from oasa.hw.registers import CONFIG_LAYOUT, config_from_word, config_word


def _random_configs(n: int = 200):
    rng = np.random.default_rng(11)
    for _ in range(n):
        act, wgt = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        cfg = ArrayConfig(
            rows=int(rng.integers(1, 65)),
            cols=int(rng.integers(1, 65)),
            act_bits=act,
            weight_bits=wgt,
            act_signed=bool(rng.integers(2)),
            acc_bits=32,
            overflow=str(rng.choice(["wrap", "saturate"])),
            dataflow=str(rng.choice(["os", "ws"])),
            preload=bool(rng.integers(2)),
        )
        yield cfg.replace(acc_bits=int(rng.integers(cfg.product_bits, 33)))


def test_the_word_round_trips():
    for cfg in _random_configs():
        assert config_from_word(config_word(cfg), cfg) == cfg


def test_the_fields_sit_where_the_register_map_says():
    """Positions written out by hand from the documented map, not from the layout."""
    for cfg in _random_configs(50):
        want = (
            cfg.rows
            | cfg.cols << 7
            | cfg.acc_bits << 14
            | cfg.act_bits << 20
            | cfg.weight_bits << 24
            | int(cfg.act_signed) << 28
            | int(cfg.overflow == "saturate") << 29
            | int(cfg.dataflow == "ws") << 30
            | int(cfg.preload) << 31
        )  # dataflow [30]: 0 output-stationary, 1 weight-stationary; preload [31]
        assert config_word(cfg) == want
    assert CONFIG_LAYOUT.size == 32


def test_the_identity_carries_the_word_and_the_protocol_version():
    for cfg in _random_configs(20):
        ident = Identity.from_bytes(Identity.of(cfg).to_bytes())
        assert ident.version == PROTOCOL_VERSION == 3
        assert ident.config == config_word(cfg) and ident.to_config() == cfg
        assert f"{cfg.rows}x{cfg.cols} array" in ident.describe()


def test_a_build_without_preload_says_so():
    """Bit 31 clear: the host must not ask this build to continue partial sums."""
    word = config_word(ArrayConfig()) & ~(1 << 31)
    assert config_from_word(word) == ArrayConfig(preload=False)
    assert config_word(ArrayConfig()) >> 31 == 1

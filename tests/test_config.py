import pytest

from oasa.config import ArrayConfig, ConfigError


def test_defaults():
    cfg = ArrayConfig()
    assert (cfg.rows, cfg.cols, cfg.act_bits, cfg.act_signed) == (8, 8, 4, False)
    assert (cfg.weight_bits, cfg.acc_bits, cfg.overflow) == (4, 16, "wrap")
    assert cfg.name == "r8c8_a4w4p16_wrap"


@pytest.mark.parametrize(
    "act_bits, act_signed, weight_bits",
    [(a, s, w) for a in range(2, 9) for s in (False, True) for w in range(2, 9)],
)
def test_product_bits_is_minimal(act_bits, act_signed, weight_bits):
    cfg = ArrayConfig(
        act_bits=act_bits, act_signed=act_signed, weight_bits=weight_bits, acc_bits=32
    )
    xs = range(cfg.act_min, cfg.act_max + 1)
    ws = range(cfg.weight_min, cfg.weight_max + 1)
    products = [x * w for x in xs for w in ws]
    p = cfg.product_bits
    assert all(-(2 ** (p - 1)) <= v < 2 ** (p - 1) for v in products)
    assert not all(-(2 ** (p - 2)) <= v < 2 ** (p - 2) for v in products)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"rows": 0}, "rows=0"),
        ({"cols": 65}, "cols=65"),
        ({"acc_bits": 7}, "acc_bits=7"),
        ({"acc_bits": 33}, "acc_bits=33"),
        ({"overflow": "clip"}, "'clip'"),
        ({"act_bits": 9}, "act_bits=9"),
        ({"rows": 2.5}, "rows must be an integer"),
        ({"act_signed": 1}, "act_signed"),
    ],
)
def test_rejects_bad_values_with_the_value_and_range(changes, words):
    with pytest.raises(ConfigError, match=words):
        ArrayConfig(**changes)


def test_json_round_trip():
    cfg = ArrayConfig(rows=2, cols=3, act_signed=True, acc_bits=20, overflow="saturate")
    assert ArrayConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        ArrayConfig.from_dict({"rows": 2, "depth": 3})

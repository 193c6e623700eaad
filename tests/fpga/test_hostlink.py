"""The UART host link end to end: the host driver talks to the simulated design, bit by
bit through its UART pins, and every layer is checked against the golden model."""

import time

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from oasa.config import ArrayConfig
from oasa.fpga.host import (
    BoardAccelerator,
    ConfigMismatchError,
    LinkError,
    LinkTimeout,
    PortError,
    decode_words,
    encode_words,
)
from oasa.fpga.hostlink import crc8_step
from oasa.fpga.protocol import (
    SYNC,
    Buffer,
    Identity,
    Op,
    Status,
    command,
    crc8,
    identify_body,
    reply,
    word_bytes,
)
from oasa.hw.layouts import act_beat_layout, params_layout, result_word_layout
from oasa.hw.registers import REG
from oasa.sim import golden
from oasa.sim.accel_image import BufferFitError, build_image
from oasa.sim.calls import plan_calls, plan_cycles
from oasa.sim.cycles import accelerator_cycles
from oasa.sim.layer import compare, run_gemm

BAUD = 115200
CLK = 4 * BAUD  # the smallest divider: 40 cycles a byte
#: Replies start within about 60 bit times (a frame gap and a status): 5 ms is 576.
TIMEOUT = 0.005
CFG = ArrayConfig(
    rows=2, cols=2, acc_bits=10, act_depth=64, wgt_depth=64, res_depth=64, param_depth=8
)


def simserial(cfg=CFG, **kw):
    from oasa.fpga.simserial import SimulatedSerial

    return SimulatedSerial(cfg, clk_hz=CLK, baud=BAUD, timeout=TIMEOUT, **kw)


# -- protocol, host side ----------------------------------------------------------------------


def test_crc8_is_the_standard_crc8():
    assert crc8(b"123456789") == 0xF4  # the published check value of CRC-8 (poly 0x07)
    assert crc8(b"") == 0


def test_a_message_followed_by_its_crc_checks_to_zero():
    rng = np.random.default_rng(0)
    for n in (1, 2, 9, 100):
        msg = bytes(rng.integers(0, 256, n).tolist())
        assert crc8(msg + bytes([crc8(msg)])) == 0


def test_command_frame_layout():
    frame = command(Op.WRITE_REG, REG["K"], 0x01020304)
    header = bytes([0x02, 0x03, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00])
    assert frame == bytes([SYNC]) + header + bytes([crc8(header)])
    frame = command(Op.WRITE_BUF, Buffer.PARAM, 0x0A0B0C, 2, b"\x11\x22")
    header = bytes([0x04, 0x02, 0x0C, 0x0B, 0x0A, 0x00, 0x02, 0x00])
    assert frame == bytes([SYNC]) + header + bytes([crc8(header), 0x11, 0x22, crc8(b"\x11\x22")])


def test_reply_frame_layout():
    assert reply(Status.CHECKSUM) == bytes([0x04, crc8(b"\x04")])
    assert reply(Status.OK, b"\x07\x00\x00\x00") == b"\x00\x07\x00\x00\x00" + bytes(
        [crc8(b"\x00\x07\x00\x00\x00")]
    )


@pytest.mark.parametrize(
    "cfg",
    [CFG, ArrayConfig(rows=3, cols=5, act_bits=3, act_signed=True, acc_bits=13, shift_bits=5)],
    ids=lambda c: c.name,
)
def test_words_on_the_wire_are_the_hardware_bit_layout(cfg):
    """Each word's bytes are the little-endian bits of the Amaranth layout's constant."""
    rng = np.random.default_rng(1)
    n = 5
    act = rng.integers(cfg.act_min, cfg.act_max + 1, (n, cfg.rows))
    bias = rng.integers(cfg.bias_min, cfg.bias_max + 1, (n, cfg.cols))
    mult = rng.integers(0, cfg.mult_max + 1, (n, cfg.cols))
    shift = rng.integers(0, cfg.shift_max + 1, (n, cfg.cols))
    value = rng.integers(cfg.acc_min, cfg.acc_max + 1, (n, cfg.cols))
    ovf = rng.integers(0, 2, (n, cfg.cols))

    def layout_bytes(layout, init, buffer):
        bits = layout.const(init).as_value().value
        return bits.to_bytes(word_bytes(cfg, buffer), "little")

    act_layout = act_beat_layout(cfg).members["data"]
    assert encode_words(cfg, Buffer.ACT, act) == b"".join(
        layout_bytes(act_layout, a.tolist(), Buffer.ACT) for a in act
    )
    assert encode_words(cfg, Buffer.PARAM, bias, mult, shift) == b"".join(
        layout_bytes(
            params_layout(cfg),
            {"bias": b.tolist(), "mult": m.tolist(), "shift": s.tolist()},
            Buffer.PARAM,
        )
        for b, m, s in zip(bias, mult, shift, strict=True)
    )
    res = b"".join(
        layout_bytes(result_word_layout(cfg), {"value": v.tolist(), "ovf": f.tolist()}, Buffer.RES)
        for v, f in zip(value, ovf, strict=True)
    )
    got_value, got_ovf = decode_words(cfg, Buffer.RES, res)
    np.testing.assert_array_equal(got_value, value)
    np.testing.assert_array_equal(got_ovf, ovf)


def test_identity_round_trip_and_description():
    ident = Identity.from_bytes(identify_body(CFG))
    assert ident == Identity.of(CFG)
    assert ident.describe().startswith("2x2 array, a4 w4 p10 wrap, buffers act 64 wgt 64")


def test_gateware_crc_step_equals_the_host_crc():
    m = Module()
    crc, byte = Signal(8), Signal(8)
    out = Signal(8)
    m.d.comb += out.eq(crc8_step(crc, byte))
    seen = []

    async def bench(ctx):
        for c in (0x00, 0x01, 0x80, 0xA7, 0xFF):
            for b in range(256):
                ctx.set(crc, c)
                ctx.set(byte, b)
                seen.append((c, b, ctx.get(out)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert all(got == crc8(bytes([b]), c) for c, b, got in seen)


# -- the device's replies, frame by frame ---------------------------------------------------


@pytest.fixture(scope="module")
def line():
    ser = simserial()
    yield ser
    ser.close()


def exchange(ser, frame, n, inject_at=None):
    ser.reset_input_buffer()
    if inject_at is not None:
        ser.inject_framing_error(inject_at)
    ser.write(frame)
    ser.flush()
    return ser.read(n)


def frame_with(frame, index, value):
    b = bytearray(frame)
    b[index] = value
    return bytes(b)


ERROR_CASES = {
    # name: (bytes sent, framing error injected at, expected status)
    "unknown opcode": (command(0x7F), None, Status.BAD_OPCODE),
    "stray byte": (b"\x00", None, Status.BAD_OPCODE),
    "header checksum": (
        frame_with(command(Op.READ_REG, REG["M"]), 9, crc8(b"x")),
        None,
        Status.CHECKSUM,
    ),
    "payload checksum": (
        command(Op.WRITE_BUF, Buffer.ACT, 0, 1, b"\x12")[:-1] + b"\x00",
        None,
        Status.CHECKSUM,
    ),
    "read-only register": (command(Op.WRITE_REG, REG["CYCLES"], 5), None, Status.BAD_ARGUMENT),
    "no such register": (command(Op.READ_REG, 0xF), None, Status.BAD_ARGUMENT),
    "register out of the bus": (command(Op.READ_REG, 0x13), None, Status.BAD_ARGUMENT),
    "write past the buffer": (
        command(Op.WRITE_BUF, Buffer.ACT, 63, 2, b"\x01\x02"),
        None,
        Status.BAD_ARGUMENT,
    ),
    "write zero words": (command(Op.WRITE_BUF, Buffer.WGT, 0, 0), None, Status.BAD_ARGUMENT),
    "write the result buffer": (
        command(Op.WRITE_BUF, Buffer.RES, 0, 1, b"\x00\x00\x00"),
        None,
        Status.BAD_ARGUMENT,
    ),
    "read the activation buffer": (
        command(Op.READ_BUF, Buffer.ACT, 0, 1),
        None,
        Status.BAD_ARGUMENT,
    ),
    "read past the buffer": (command(Op.READ_BUF, Buffer.RES, 60, 5), None, Status.BAD_ARGUMENT),
    "truncated header": (command(Op.PING)[:5], None, Status.TRUNCATED),
    "truncated payload": (
        command(Op.WRITE_BUF, Buffer.ACT, 0, 3, b"\x01\x02\x03")[:-2],
        None,
        Status.TRUNCATED,
    ),
    "framing error in the header": (command(Op.READ_REG, REG["K"]), 3, Status.FRAMING),
    "framing error on the sync byte": (command(Op.PING), 0, Status.FRAMING),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_every_malformed_frame_gets_one_error_reply_and_the_link_recovers(line, case):
    frame, inject_at, status = ERROR_CASES[case]
    # the reply comes once the line is quiet; nothing follows it
    assert exchange(line, frame, 3, inject_at) == reply(status)
    # the next command is understood
    assert exchange(line, command(Op.PING), 22) == reply(Status.OK, identify_body(CFG))


def test_registers_and_ping_over_raw_frames(line):
    assert exchange(line, command(Op.WRITE_REG, REG["K"], 0x1234), 3) == reply(Status.OK)
    assert exchange(line, command(Op.READ_REG, REG["K"]), 6) == reply(
        Status.OK, (0x1234).to_bytes(4, "little")
    )
    # rows [6:0], cols [13:7], acc_bits [19:14], act_bits [23:20], weight_bits [27:24],
    # preload [31]
    config = (2 | 2 << 7 | 10 << 14 | 4 << 20 | 4 << 24 | 1 << 31).to_bytes(4, "little")
    assert exchange(line, command(Op.READ_REG, REG["CONFIG"]), 6) == reply(Status.OK, config)


def test_buffers_are_refused_while_a_layer_runs():
    cfg = CFG.replace(act_depth=4096, wgt_depth=4096)
    with simserial(cfg) as ser:
        # a long layer on whatever the buffers hold: K = 4000 keeps the array busy ~4000 cycles
        for name, value in (("M", 2), ("K", 4000), ("N", 2), ("MODE", 0)):
            assert exchange(ser, command(Op.WRITE_REG, REG[name], value), 2) == reply(Status.OK)
        assert exchange(ser, command(Op.WRITE_REG, REG["CTRL"], 1), 2) == reply(Status.OK)
        write = command(Op.WRITE_BUF, Buffer.ACT, 0, 1, b"\x33")
        assert exchange(ser, write, 2) == reply(Status.BUSY)
        assert exchange(ser, command(Op.READ_BUF, Buffer.RES, 0, 1), 2) == reply(Status.BUSY)
        busy = exchange(ser, command(Op.READ_REG, REG["STATUS"]), 6)
        assert busy == reply(Status.OK, (1).to_bytes(4, "little"))


# -- layers end to end against the golden model -------------------------------------------------

END_TO_END = [
    # (config, requantize, relu)
    (ArrayConfig(rows=2, cols=2, acc_bits=8, act_depth=64, wgt_depth=64, res_depth=64,
                 param_depth=8), False, False),
    (ArrayConfig(rows=2, cols=3, acc_bits=10, overflow="saturate", act_depth=64, wgt_depth=64,
                 res_depth=64, param_depth=8), True, True),
    (ArrayConfig(rows=3, cols=2, act_signed=True, acc_bits=9, act_depth=64, wgt_depth=64,
                 res_depth=64, param_depth=8), True, False),
]  # fmt: skip


def random_layer(cfg, rng, *, overflow: bool):
    m, k, n = (int(v) for v in rng.integers(1, 6, 3))
    if overflow:
        # Each row's activations are one extreme and each column's weights one extreme, so
        # the twelve products of a dot product share a sign and leave a narrow accumulator.
        k = 12
        extremes = [v for v in (cfg.act_min, cfg.act_max) if v]
        x = np.repeat(rng.choice(extremes, (m, 1)), k, axis=1)
        w = np.repeat(rng.choice([cfg.weight_min, cfg.weight_max], (1, n)), k, axis=0)
    else:
        x = rng.integers(cfg.act_min, cfg.act_max + 1, (m, k))
        w = rng.integers(cfg.weight_min, cfg.weight_max + 1, (k, n))
    params = dict(
        bias=rng.integers(-200, 200, n),
        mult=rng.integers(1, 1 << cfg.mult_bits, n),
        shift=rng.integers(8, 20, n),
    )
    return x, w, params


@pytest.mark.parametrize("cfg, requant, relu", END_TO_END, ids=[c[0].name for c in END_TO_END])
def test_layers_on_the_simulated_board_equal_the_golden_model(cfg, requant, relu):
    rng = np.random.default_rng(cfg.rows * 10 + cfg.cols)
    flagged = 0
    with simserial(cfg) as ser:
        for overflow in (True, False):
            x, w, params = random_layer(cfg, rng, overflow=overflow)
            kw = dict(cfg=cfg, requant=requant, relu=relu, **params)
            ref = run_gemm(x, w, backend="model", **kw)
            got = run_gemm(x, w, backend="board", port=ser, **kw)
            compare(got, ref)  # outputs, flags, cycles, FLAGGED
            flagged += got.flagged
    assert flagged > 0  # the flags were exercised, not only zeros


def test_board_accelerator_runs_layers_back_to_back():
    cfg = CFG
    rng = np.random.default_rng(5)
    with simserial() as ser, BoardAccelerator(cfg, ser, timeout=TIMEOUT) as board:
        for _ in range(2):
            x, w, params = random_layer(cfg, rng, overflow=True)
            run = board.run(build_image(x, w, cfg=cfg, requant=True, **params))
            ref = run_gemm(x, w, cfg=cfg, backend="model", requant=True, **params)
            np.testing.assert_array_equal(run.out, ref.out)
            np.testing.assert_array_equal(run.overflow, ref.overflow)
            assert run.cycles == accelerator_cycles(cfg, *x.shape, w.shape[1])
            assert run.flagged == ref.flagged > 0


# -- link failures -------------------------------------------------------------------------------


def test_framing_error_is_a_clear_link_error_and_the_link_recovers():
    rng = np.random.default_rng(9)
    with simserial() as ser, BoardAccelerator(CFG, ser, timeout=TIMEOUT) as board:
        ser.inject_framing_error(at=4)
        with pytest.raises(
            LinkError,
            match=r"refused WRITE_REG M \(FRAMING\): its UART saw a framing error: check the "
            r"baud rate \(115200\) and the cable, then retry",
        ):
            board.write_reg("M", 3)
        board.write_reg("M", 3)
        assert board.read_reg("M") == 3
        x, w, _ = random_layer(CFG, rng, overflow=False)
        run = board.run(build_image(x, w, cfg=CFG))
        np.testing.assert_array_equal(run.out, run_gemm(x, w, cfg=CFG).out)


def test_silent_board_times_out_quickly_with_advice():
    started = time.perf_counter()
    with simserial() as ser:
        ser.connected = False
        with pytest.raises(
            LinkTimeout,
            match=r"^no reply from the board on simulated:r2c2_a4w4p10_wrap@115200 within "
            r"0.00\d+ s after PING: check the port, the baud rate \(115200\) and that the oasa "
            r"bitstream is loaded$",
        ):
            BoardAccelerator(CFG, ser, timeout=TIMEOUT)
    assert time.perf_counter() - started < 5


def test_wrong_baud_rate_is_a_link_error_naming_the_baud_rate():
    with (
        simserial(host_baud=2 * BAUD) as ser,
        pytest.raises(LinkError, match=r"baud rate \(230400\)"),
    ):
        BoardAccelerator(CFG, ser, timeout=TIMEOUT)


def test_a_board_of_another_configuration_is_named():
    with simserial() as ser:
        with pytest.raises(
            ConfigMismatchError,
            match=r"runs a different build: 2x2 array, a4 w4 p10 wrap, .*; expected 2x2 array, "
            r"a4 w4 p12 wrap, .*: load the bitstream built for this configuration",
        ):
            BoardAccelerator(CFG.replace(acc_bits=12), ser, timeout=TIMEOUT)
        with pytest.raises(ConfigMismatchError, match=r"res 64, .*expected .* res 128"):
            BoardAccelerator(CFG.replace(res_depth=128), ser, timeout=TIMEOUT)


def test_a_missing_port_is_a_clear_error():
    with pytest.raises(
        PortError,
        match=r"^cannot open serial port /dev/oasa-no-such-port at 115200 baud \(.*\): check "
        r"that the board is plugged in",
    ):
        BoardAccelerator(CFG, "/dev/oasa-no-such-port")


def test_a_k_longer_than_the_board_buffers_runs_as_continuing_calls():
    """K = 70 on buffers of 64 words: two calls over the link, the second continuing the
    first's partial sums (MODE bit 2), equal to the golden model's single pass."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 16, (2, 70))
    w = rng.integers(-8, 8, (70, 2))
    g = golden.gemm(x, w, cfg=CFG)
    with simserial() as ser:
        r = run_gemm(x, w, cfg=CFG, backend="board", port=ser)
    np.testing.assert_array_equal(r.out, g.out)
    np.testing.assert_array_equal(r.overflow, g.overflow)
    assert r.calls == 2 and r.cycles == plan_cycles(CFG, plan_calls(CFG, 2, 70, 2))


def test_a_layer_too_big_for_the_board_buffers_is_refused_before_sending():
    with simserial() as ser:
        w = np.ones((70, 2), dtype=np.int64)
        x = np.ones((70, 1), dtype=np.int64)  # 70 result rows in one image
        with pytest.raises(BufferFitError, match="result buffer needs 70 words but holds 64"):
            build_image(x, w[:1], cfg=CFG)
        assert ser.bytes_written == 0


def test_the_soc_builds_the_accelerator_it_is_given():
    from oasa.fpga.soc import UARTAccelerator
    from oasa.hw.accelerator import Accelerator

    built = []

    class Marked(Accelerator):
        def elaborate(self, platform):
            built.append(self.cfg)
            return super().elaborate(platform)

    from amaranth.back import rtlil

    rtlil.convert(UARTAccelerator(CFG, clk_hz=CLK, baud=BAUD, accelerator=Marked))
    assert built == [CFG]


def test_board_backend_needs_a_port():
    with pytest.raises(ValueError, match="the board backend needs a port"):
        run_gemm(np.ones((1, 1)), np.ones((1, 1)), cfg=CFG, backend="board")


# -- the network runner and the command line ----------------------------------------------------

NET_ARRAY = {
    "rows": 2,
    "cols": 3,
    "act_depth": 64,
    "wgt_depth": 64,
    "res_depth": 64,
    "param_depth": 8,
}


def test_network_on_the_simulated_board_equals_golden_inference():
    from test_netfile import small_network

    from oasa.sim import network
    from oasa.sim.netrun import run_network_rtl

    net = small_network(acc_bits=9, overflow="saturate")  # narrow: some dot products overflow
    x = network.quantize_input(net, np.random.default_rng(0).random((2, *net.input_shape)))
    cfg = net.weighted[0][1].cfg.replace(**NET_ARRAY)
    with simserial(cfg) as ser:
        run = run_network_rtl(net, x, backend="board", overrides=NET_ARRAY, batch=2, port=ser)
    ref = network.run_network(net, x)
    np.testing.assert_array_equal(run.result.logits, ref.logits)
    for got, want in zip(run.result.layers, ref.layers, strict=True):
        np.testing.assert_array_equal(got.out, want.out)
        if want.overflow is not None:
            np.testing.assert_array_equal(got.overflow, want.overflow)
    assert sum(s.flagged for s in run.stats) == ref.overflow_counts()["flagged"] > 0


def test_oasa_sim_and_run_on_the_board_backend(tmp_path, capsys, monkeypatch):
    from test_netrun import digits_shaped_network

    from oasa.cli import main
    from oasa.fpga import host
    from oasa.fpga.simserial import SimulatedSerial
    from oasa.sim import netfile

    shape = [f"--{k.replace('_', '-')}={v}" for k, v in NET_ARRAY.items()]
    # no port, or a port for another backend: one line, exit 2
    assert main(["sim", "--backend", "board", *shape]) == 2
    assert "--backend board needs --port" in capsys.readouterr().err
    assert main(["sim", "--backend", "model", "--port", "/dev/ttyUSB1"]) == 2
    assert "--port is for --backend board" in capsys.readouterr().err
    assert main(["sim", "--backend", "board", "--port", "/dev/oasa-no-such-port"]) == 2
    assert "cannot open serial port /dev/oasa-no-such-port" in capsys.readouterr().err

    # the port opens a simulated board of the last configuration appended (every open: the
    # command first asks the board for its build, then runs on it)
    boards = []

    def open_simulated(port, baud, timeout):
        return SimulatedSerial(boards[-1], clk_hz=4 * baud, baud=baud, timeout=timeout)

    monkeypatch.setattr(host, "_open_serial", open_simulated)
    boards.append(ArrayConfig(**NET_ARRAY, acc_bits=10))
    # no array options: the board's build (from PING) is the configuration
    args = ["--m", "3", "--k", "5", "--n", "4"]
    assert main(["sim", "--backend", "board", "--port", "/dev/sim", *args]) == 0
    out = capsys.readouterr().out
    assert "the board on /dev/sim runs: 2x3 array" in out and "10-bit accumulators" in out
    assert "board     matches the golden model: results, flags and cycles" in out

    net = digits_shaped_network(acc_bits=9, overflow="saturate")
    path = tmp_path / "net.npz"
    netfile.save(net, path)
    boards.append(net.weighted[0][1].cfg.replace(**NET_ARRAY))
    run = ["run", str(path), "--backend", "board", "--port", "/dev/sim", "--images", "1"]
    assert main([*run, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "predictions, logits and flags equal the golden model's" in out
    assert "ran on the board in" in out

    # a board of another build: bad input (pick or build the right board), one line
    # naming both, exit 2
    boards.append(ArrayConfig(**NET_ARRAY, acc_bits=12))
    assert main([*run, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oasa: error: layer 0 (conv) needs 4-bit unsigned activations x ")
    assert "9-bit accumulators" in err and "the board runs" in err and "12-bit accumulators" in err
    assert err.count("\n") == 1

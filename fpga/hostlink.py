"""The gateware end of the host link: command frames in, accelerator accesses, replies out.

One finite-state machine parses a frame (see :mod:`oasa.fpga.protocol`), acts on it
through the accelerator's register bus and buffer ports, and sends the reply. It keeps
one shift register the width of the widest buffer word, used both to assemble words
written by the host and to send result words back, so the cost beyond that register is a
few counters: it is meant to sit next to the array in an iCE40UP5K.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from oasa.config import ArrayConfig
from oasa.fpga.protocol import (
    HEADER_BYTES,
    HEADER_LAYOUT,
    SYNC,
    Buffer,
    Op,
    Status,
    buffer_depth,
    crc8,
    identify_body,
    readable_registers,
    word_bytes,
    writable_registers,
)
from oasa.hw.accelerator import host_interface

__all__ = ["HostLinkBridge", "crc8_step"]


def crc8_step(crc: Value, byte: Value) -> Value:
    """The CRC-8 of :mod:`~oasa.fpga.protocol` after one more byte, as an XOR network.

    The CRC of one byte is linear in ``crc ^ byte``, so each output bit is the XOR of the
    input bits whose own CRC has that bit set (taken from :func:`~oasa.fpga.protocol.crc8`,
    so the gateware and the host cannot disagree).
    """
    v = crc ^ byte
    column = [crc8(bytes([1 << j])) for j in range(8)]
    return Cat(Cat(*(v[j] for j in range(8) if column[j] >> i & 1)).xor() for i in range(8))


def _any_of(value: Value, choices) -> Value:
    return Cat(*(value == c for c in choices)).any()


class HostLinkBridge(wiring.Component):
    """Parses host-link frames from a byte stream and drives the accelerator's host side.

    Parameters
    ----------
    cfg : ArrayConfig
        The accelerator's configuration (buffer widths and depths).
    gap_cycles : int
        Quiet time that ends a broken frame: after an error found mid-frame, or a frame
        that stops half way, the reply waits until no byte has arrived for this long.

    Members
    -------
    i_data : In(stream.Signature(8))           bytes from the UART receiver
    framing_error : In(1)                      the receiver's framing-error pulse
    o_data : Out(stream.Signature(8))          reply bytes to the UART transmitter
    reg : In(RegisterBus())                    the accelerator's register bus (driven here)
    host_act, host_wgt, host_param : In(memory.WritePort.Signature(...))  buffer writes
    host_res : In(memory.ReadPort.Signature(...))                          result reads
    busy : In(1)                               a layer is running: buffer access is refused
    link_error : Out(1)                        the last reply was an error
    """

    def __init__(self, cfg: ArrayConfig, *, gap_cycles: int):
        if gap_cycles < 1:
            raise ValueError(f"gap_cycles must be at least 1, got {gap_cycles}")
        self.cfg = cfg
        self.gap_cycles = int(gap_cycles)
        super().__init__(
            {
                "i_data": In(stream.Signature(8)),
                "framing_error": In(1),
                "o_data": Out(stream.Signature(8)),
                **{name: member.flip() for name, member in host_interface(cfg).items()},
                "busy": In(1),
                "link_error": Out(1),
            }
        )

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        bufs = (Buffer.ACT, Buffer.WGT, Buffer.PARAM, Buffer.RES)
        nbytes = {b: word_bytes(cfg, b) for b in bufs}
        ports = {
            Buffer.ACT: self.host_act,
            Buffer.WGT: self.host_wgt,
            Buffer.PARAM: self.host_param,
            Buffer.RES: self.host_res,
        }
        for b, port in ports.items():  # the wire format is the memory's bit layout
            assert Shape.cast(port.data.shape()).width <= 8 * nbytes[b]
        width = 8 * max(nbytes.values())
        ident = identify_body(cfg)

        rx, tx = self.i_data, self.o_data
        byte = rx.payload
        got = rx.valid  # the receiver cannot be held back, so every byte is taken at once
        m.d.comb += rx.ready.eq(1)

        hdr = Signal(8 * HEADER_BYTES)
        head = HEADER_LAYOUT(hdr)
        crc = Signal(8)
        crc_next = crc8_step(crc, byte)
        count = Signal(16)  # words still to move
        addr = Signal(max(cfg.address_bits(b.name.lower()) for b in bufs) + 1)
        shift = Signal(width)  # a buffer word, moving through in bytes from bit 0
        nb = Signal(range(max(len(ident), width // 8, 4) + 1))  # bytes done of the item
        status = Signal(8)
        body = Signal(range(4))  # what follows an OK status: 0 none, 1 reg, 2 id, 3 words
        fe_seen = Signal()  # a framing error since the frame began
        quiet = Signal(range(self.gap_cycles + 1))
        gap = quiet == self.gap_cycles

        with m.If(got | self.framing_error):
            m.d.sync += quiet.eq(0)
        with m.Elif(~gap):
            m.d.sync += quiet.eq(quiet + 1)

        # -- the header, decoded (valid in DECODE, once the header checksum was right) ------
        buf = head.arg
        last_byte = nb == Array(Const(nbytes[b] - 1) for b in bufs)[buf[:2]]
        depth = Array(Const(buffer_depth(cfg, b)) for b in bufs)[buf[:2]]
        # The header's checks are registered: the header holds from HEADER_CRC on, so in
        # DECODE they describe it, and the add-and-compare is off the status decode path.
        in_range, reg_ok_w, reg_ok_r = Signal(), Signal(), Signal()
        m.d.sync += [
            in_range.eq((head.count != 0) & (head.word + head.count <= depth)),
            reg_ok_w.eq(_any_of(head.arg, writable_registers())),
            reg_ok_r.eq(_any_of(head.arg, readable_registers())),
        ]
        m.d.comb += [
            self.reg.addr.eq(head.arg),
            self.reg.w_data.eq(head.word),
            self.host_res.addr.eq(addr),
            self.host_res.en.eq(1),
        ]
        # Buffer write enables come from flip-flops, set in SETTLE for the one WRITE cycle:
        # an enable reaches every block RAM or LUT-RAM cell of its buffer (152 LUT-RAMs for
        # the parameters of 16 columns), and decoded from the state and the header it set
        # Fmax on the ECP5.
        write_en = {
            b: Signal(name=f"write_{b.name.lower()}")
            for b in (Buffer.ACT, Buffer.WGT, Buffer.PARAM)
        }
        m.d.sync += [w.eq(0) for w in write_en.values()]
        for b, en in write_en.items():
            port = ports[b]
            lo = width - 8 * nbytes[b]  # a word of n bytes ends up in the top n bytes
            m.d.comb += [
                port.en.eq(en),
                port.addr.eq(addr),
                port.data.eq(shift[lo : lo + Shape.cast(port.data.shape()).width]),
            ]

        def reply(s: Status, what: int = 0) -> None:
            m.d.sync += [status.eq(s), body.eq(what)]
            m.next = "STATUS"

        def discard(s: Status) -> None:
            m.d.sync += status.eq(s)
            m.next = "DISCARD"

        # The word register is as wide as the widest buffer word (hundreds of bits on a
        # 16-column array), so it changes only on registered strobes: its clock enable is
        # one flip-flop (``word_en``, set with every strobe; alone it loads the result
        # word) and its input select three more, not the FSM's decode or an OR of strobes
        # (which, spread over the whole register, set Fmax on the ECP5). Each strobe acts
        # one cycle after the FSM asks; bytes are at least 40 cycles apart on the line, so
        # nothing waits for it except WRITE, which comes after SETTLE.
        shift_in, shift_out, load_reg = Signal(), Signal(), Signal()
        word_en = Signal()

        def strobe(*which: Signal) -> list:
            return [s.eq(1) for s in which] + [word_en.eq(1)]

        # Register writes, too, go out one cycle after the decode, from a flip-flop (a write
        # can start a layer: the sequencer's launch logic hangs off this enable). The
        # address and data come from the header, which holds until the next frame.
        reg_write = Signal()
        m.d.sync += reg_write.eq(0)
        m.d.comb += self.reg.w_en.eq(reg_write)
        byte_in = Signal(8)
        # The result word is registered once out of the block RAM (whose clock-to-output
        # delay, with the word register's input select behind it, set Fmax on the ECP5).
        res_word = Signal.like(self.host_res.data.as_value())
        m.d.sync += res_word.eq(self.host_res.data.as_value())
        m.d.sync += [s.eq(0) for s in (shift_in, shift_out, load_reg, word_en)]
        with m.If(word_en):
            with m.If(shift_in):
                m.d.sync += shift.eq(Cat(shift[8:], byte_in))
            with m.Elif(shift_out):
                m.d.sync += shift.eq(shift >> 8)
            with m.Elif(load_reg):
                m.d.sync += shift.eq(self.reg.r_data)
            with m.Else():
                m.d.sync += shift.eq(res_word)

        with m.FSM():
            # -- receiving ---------------------------------------------------------------
            with m.State("IDLE"):
                m.d.sync += [crc.eq(0), nb.eq(0), fe_seen.eq(0)]
                with m.If(self.framing_error):
                    discard(Status.FRAMING)
                with m.Elif(got):
                    with m.If(byte == SYNC):
                        m.next = "HEADER"
                    with m.Else():
                        discard(Status.BAD_OPCODE)
            with m.State("HEADER"):
                with m.If(got):
                    m.d.sync += [hdr.eq(Cat(hdr[8:], byte)), crc.eq(crc_next), nb.eq(nb + 1)]
                    with m.If(nb == HEADER_BYTES - 1):
                        m.next = "HEADER_CRC"
                with m.Elif(gap):
                    reply(Status.TRUNCATED)
            with m.State("HEADER_CRC"):
                with m.If(got):
                    m.d.sync += [crc.eq(0), nb.eq(0)]
                    with m.If(crc_next != 0):
                        discard(Status.CHECKSUM)  # the header is untrusted: a payload may follow
                    with m.Else():
                        m.next = "DECODE"
                with m.Elif(gap):
                    reply(Status.TRUNCATED)
            with m.State("DECODE"):
                m.d.sync += [addr.eq(head.word), count.eq(head.count)]
                with m.Switch(head.op):
                    with m.Case(Op.PING):
                        reply(Status.OK, 2)
                    with m.Case(Op.WRITE_REG):
                        with m.If(reg_ok_w):
                            m.d.sync += reg_write.eq(1)
                            reply(Status.OK)
                        with m.Else():
                            reply(Status.BAD_ARGUMENT)
                    with m.Case(Op.READ_REG):
                        m.d.sync += strobe(load_reg)
                        with m.If(reg_ok_r):
                            reply(Status.OK, 1)
                        with m.Else():
                            reply(Status.BAD_ARGUMENT)
                    with m.Case(Op.WRITE_BUF):
                        with m.If((buf > Buffer.PARAM) | ~in_range):
                            discard(Status.BAD_ARGUMENT)
                        with m.Elif(self.busy):
                            discard(Status.BUSY)
                        with m.Else():
                            m.next = "PAYLOAD"
                    with m.Case(Op.READ_BUF):
                        with m.If((buf != Buffer.RES) | ~in_range):
                            reply(Status.BAD_ARGUMENT)
                        with m.Elif(self.busy):
                            reply(Status.BUSY)
                        with m.Else():
                            reply(Status.OK, 3)
                    with m.Default():
                        discard(Status.BAD_OPCODE)
            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.sync += [
                        *strobe(shift_in),
                        byte_in.eq(byte),
                        crc.eq(crc_next),
                        nb.eq(nb + 1),
                    ]
                    with m.If(last_byte):
                        m.next = "SETTLE"
                with m.Elif(gap):
                    reply(Status.TRUNCATED)
            with m.State("SETTLE"):  # the last byte moves into the word register
                m.d.sync += [write_en[b].eq(buf == b) for b in write_en]
                m.next = "WRITE"
            with m.State("WRITE"):  # the buffer's write enable is set (see write_en)
                # Bytes are at least ten bit times apart: none can arrive in this cycle.
                m.d.sync += [addr.eq(addr + 1), count.eq(count - 1), nb.eq(0)]
                m.next = "PAYLOAD"
                with m.If(count == 1):
                    m.next = "PAYLOAD_CRC"
            with m.State("PAYLOAD_CRC"):
                with m.If(got):
                    reply(Mux(crc_next == 0, Status.OK, Status.CHECKSUM))
                with m.Elif(gap):
                    reply(Status.TRUNCATED)
            with m.State("DISCARD"), m.If(gap):
                m.next = "STATUS"
                m.d.sync += body.eq(0)

            # -- replying ----------------------------------------------------------------
            # A framing error anywhere in the frame outranks what the parser concluded.
            send = Mux(fe_seen, Status.FRAMING, status)
            with m.State("STATUS"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(send)]
                with m.If(tx.ready):
                    m.d.sync += [crc.eq(crc8_step(Const(0, 8), send)), status.eq(send), nb.eq(0)]
                    m.next = "CRC"
                    with m.If(send == Status.OK), m.Switch(body):
                        with m.Case(1):
                            m.next = "SEND_REG"
                        with m.Case(2):
                            m.next = "SEND_ID"
                        with m.Case(3):
                            m.next = "READ"
            with m.State("SEND_REG"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(shift[:8])]
                with m.If(tx.ready):
                    m.d.sync += [
                        *strobe(shift_out),
                        crc.eq(crc8_step(crc, shift[:8])),
                        nb.eq(nb + 1),
                    ]
                    with m.If(nb == 3):
                        m.next = "CRC"
            with m.State("SEND_ID"):
                rom = Array(Const(b, 8) for b in ident)[nb]
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(rom)]
                with m.If(tx.ready):
                    m.d.sync += [crc.eq(crc8_step(crc, rom)), nb.eq(nb + 1)]
                    with m.If(nb == len(ident) - 1):
                        m.next = "CRC"
            with m.State("READ"):
                m.next = "READ_REG"  # one cycle of read latency
            with m.State("READ_REG"):
                m.next = "LOAD"  # and one through res_word
            with m.State("LOAD"):
                m.d.sync += [*strobe(), nb.eq(0)]  # no other strobe: load the result word
                m.next = "SEND_WORD"
            with m.State("SEND_WORD"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(shift[:8])]
                with m.If(tx.ready):
                    m.d.sync += [
                        *strobe(shift_out),
                        crc.eq(crc8_step(crc, shift[:8])),
                        nb.eq(nb + 1),
                    ]
                    with m.If(nb == nbytes[Buffer.RES] - 1):
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                        m.next = "READ"
                        with m.If(count == 1):
                            m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc)]
                with m.If(tx.ready):
                    m.d.sync += self.link_error.eq(status != Status.OK)
                    m.next = "IDLE"

        # A framing error marks the frame being received (IDLE clears the mark, so one
        # during a reply is forgotten: the host is not supposed to send then).
        with m.If(self.framing_error):
            m.d.sync += fe_seen.eq(1)
        return m

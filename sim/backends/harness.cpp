// oasa Verilator harness: a shared library that drives the generated Accelerator.
//
// Python (sim/backends/verilator_accel.py) loads it with ctypes and makes a handful of
// calls per layer; every clock cycle runs here, so Python is never in the per-cycle loop.
// Buffer words travel as little-endian arrays of 32-bit chunks, the layout Verilator uses
// for wide signals (VlWide), so one set of templates serves every port width.

#include <cstdint>
#include <memory>

#include "verilated.h"
#include "Voasa_accel.h"
#include "Voasa_accel___024root.h"
#ifdef OASA_TRACE
#include "verilated_vcd_c.h"
#endif

namespace {

template <typename T>
void set_bits(T& sig, const uint32_t* src, int n) {
    uint64_t v = src[0];
    if (n > 1) v |= static_cast<uint64_t>(src[1]) << 32;
    sig = static_cast<T>(v);
}

template <std::size_t N>
void set_bits(VlWide<N>& sig, const uint32_t* src, int n) {
    for (std::size_t i = 0; i < N; ++i) sig[i] = (static_cast<int>(i) < n) ? src[i] : 0;
}

template <typename T>
void get_bits(const T& sig, uint32_t* dst, int n) {
    uint64_t v = static_cast<uint64_t>(sig);
    dst[0] = static_cast<uint32_t>(v);
    if (n > 1) dst[1] = static_cast<uint32_t>(v >> 32);
}

template <std::size_t N>
void get_bits(const VlWide<N>& sig, uint32_t* dst, int n) {
    for (int i = 0; i < n; ++i) dst[i] = (static_cast<std::size_t>(i) < N) ? sig[i] : 0;
}

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Voasa_accel> top;
    uint64_t cycles = 0;
#ifdef OASA_TRACE
    std::unique_ptr<VerilatedVcdC> vcd;
#endif

    void tick() {
        top->clk = 0;
        top->eval();
#ifdef OASA_TRACE
        if (vcd) vcd->dump(ctx->time());
        ctx->timeInc(5);
#endif
        top->clk = 1;
        top->eval();
#ifdef OASA_TRACE
        if (vcd) vcd->dump(ctx->time());
        ctx->timeInc(5);
#endif
        ++cycles;
    }
};

}  // namespace

extern "C" {

// Create the model; `vcd_path` may be null (no waveform).
void* oasa_open(const char* vcd_path) {
    auto* s = new Sim;
    s->ctx = std::make_unique<VerilatedContext>();
    s->top = std::make_unique<Voasa_accel>(s->ctx.get());
#ifdef OASA_TRACE
    if (vcd_path) {
        s->ctx->traceEverOn(true);
        s->vcd = std::make_unique<VerilatedVcdC>();
        s->top->trace(s->vcd.get(), 99);
        s->vcd->open(vcd_path);
    }
#else
    (void)vcd_path;
#endif
    s->top->eval();  // registers start at their initial values (a reset-less build)
    return s;
}

void oasa_close(void* h) {
    auto* s = static_cast<Sim*>(h);
#ifdef OASA_TRACE
    if (s->vcd) s->vcd->close();
#endif
    s->top->final();
    delete s;
}

uint64_t oasa_total_cycles(void* h) { return static_cast<Sim*>(h)->cycles; }

// Write `count` words to buffer `buf` (0 act, 1 wgt, 2 param) from word `base`, one per
// cycle through the host write port. Each word is `n` 32-bit chunks.
void oasa_write(void* h, int buf, uint32_t base, uint32_t count, const uint32_t* words, int n) {
    auto* s = static_cast<Sim*>(h);
    auto* t = s->top.get();
    for (uint32_t i = 0; i < count; ++i) {
        const uint32_t* w = words + static_cast<std::size_t>(i) * n;
        switch (buf) {
            case 0: t->host_act___05Faddr = base + i; set_bits(t->host_act___05Fdata, w, n); t->host_act___05Fen = 1; break;
            case 1: t->host_wgt___05Faddr = base + i; set_bits(t->host_wgt___05Fdata, w, n); t->host_wgt___05Fen = 1; break;
            default: t->host_param___05Faddr = base + i; set_bits(t->host_param___05Fdata, w, n); t->host_param___05Fen = 1; break;
        }
        s->tick();
    }
    t->host_act___05Fen = 0;
    t->host_wgt___05Fen = 0;
    t->host_param___05Fen = 0;
}

// The same, straight into the simulated memories (no clock cycles): the buffers' internal
// names come from the build (-DOASA_MEM_ACT=... etc.).
void oasa_poke(void* h, int buf, uint32_t base, uint32_t count, const uint32_t* words, int n) {
    auto* root = static_cast<Sim*>(h)->top->rootp;
    for (uint32_t i = 0; i < count; ++i) {
        const uint32_t* w = words + static_cast<std::size_t>(i) * n;
        switch (buf) {
            case 0: set_bits(root->OASA_MEM_ACT[base + i], w, n); break;
            case 1: set_bits(root->OASA_MEM_WGT[base + i], w, n); break;
            default: set_bits(root->OASA_MEM_PARAM[base + i], w, n); break;
        }
    }
}

// Copy `count` result words from `base` straight out of the simulated result memory.
void oasa_peek(void* h, uint32_t base, uint32_t count, uint32_t* out, int n) {
    auto* root = static_cast<Sim*>(h)->top->rootp;
    for (uint32_t i = 0; i < count; ++i)
        get_bits(root->OASA_MEM_RES[base + i], out + static_cast<std::size_t>(i) * n, n);
}

// Read `count` result words from `base` through the host read port (pipelined: one word
// per cycle after the first).
void oasa_read(void* h, uint32_t base, uint32_t count, uint32_t* out, int n) {
    auto* s = static_cast<Sim*>(h);
    auto* t = s->top.get();
    t->host_res___05Fen = 1;
    for (uint32_t i = 0; i < count; ++i) {
        t->host_res___05Faddr = base + i;
        s->tick();
        get_bits(t->host_res___05Fdata, out + static_cast<std::size_t>(i) * n, n);
    }
}

void oasa_reg_write(void* h, uint32_t addr, uint32_t value) {
    auto* s = static_cast<Sim*>(h);
    s->top->reg___05Faddr = addr;
    s->top->reg___05Fw_data = value;
    s->top->reg___05Fw_en = 1;
    s->tick();
    s->top->reg___05Fw_en = 0;
}

uint32_t oasa_reg_read(void* h, uint32_t addr) {
    auto* s = static_cast<Sim*>(h);
    s->top->reg___05Faddr = addr;
    s->top->eval();
    return s->top->reg___05Fr_data;
}

// Write CTRL.start (register `ctrl`) and clock until `done`; returns the cycles from the
// start write to the first cycle `done` is seen, or 0 after `max_cycles` without it.
uint64_t oasa_run(void* h, uint32_t ctrl, uint64_t max_cycles) {
    auto* s = static_cast<Sim*>(h);
    oasa_reg_write(h, ctrl, 1);
    uint64_t n = 0;
    while (!s->top->done) {
        if (++n > max_cycles) return 0;
        s->tick();
    }
    return n;
}

}  // extern "C"

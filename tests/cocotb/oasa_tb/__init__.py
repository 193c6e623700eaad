"""oasa_tb: the shared cocotb driver layer of the oasa benches.

Simulator side (imported inside cocotb): :mod:`.tb` (clock, reset, the per-cycle loop),
:mod:`.packing` (payload codecs derived from :mod:`oasa.hw.layouts`), :mod:`.streams`
(stream source and sink agents with pause and back-pressure patterns, protocol checks),
:mod:`.scoreboard` (in-order comparison with the golden model), :mod:`.coverage`
(counters that the pytest session sums up), :mod:`.core` (GEMM driver for ``ArrayCore``).

Pytest side: :mod:`.build` (Verilog generation, cached simulator builds, running a bench)
and :mod:`.configs` (the covering set of configurations).
"""

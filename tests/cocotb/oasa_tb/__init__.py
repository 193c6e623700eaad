"""oasa_tb: the shared cocotb driver layer of the oasa benches.

Simulator side (imported inside cocotb): :mod:`.tb` (configuration from ``OASA_CFG``,
seed, clock, reset, one drive/sample loop per cycle), :mod:`.packing` (payload codecs
derived from :mod:`oasa.hw.layouts`), :mod:`.streams` (stream source and sink agents
with named pause and back-pressure patterns, stream-rule checks), :mod:`.scoreboard`
(in-order comparison with the golden model), :mod:`.coverage` (counters the pytest
session sums up), :mod:`.adversarial` (worst-case stimulus against the data-free overflow
bound, for the overflow and accelerator benches), and one driver per DUT: :mod:`.pe`,
:mod:`.core` (GEMMs through ``ArrayCore``), :mod:`.stage` (``OutputStage``),
:mod:`.accel` (the ``Accelerator``'s host).

Pytest side: :mod:`.build` (Verilog generation, cached simulator builds, running a
bench), :mod:`.duts` (one build function per toplevel), :mod:`.configs` (the covering
set of configurations), :mod:`.matrix` (which simulator runs which configuration) and
:mod:`.summary` (the coverage summary).

A new bench (e.g. the accelerator) adds ``tests/cocotb/<dut>/{bench.py,
test_cocotb_<dut>.py}``, a ``build_<dut>`` in :mod:`.duts`, and, for its ports, agents
from :mod:`.streams` (or a new agent with the same ``idle/drive/sample`` methods).
"""

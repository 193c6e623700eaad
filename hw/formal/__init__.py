"""Formal proofs of the oasa arithmetic contract (DESIGN.md section 2).

Harnesses (:mod:`.harness`) wrap the real RTL blocks with free inputs and an independent
shadow model; the runner (:mod:`.run`) writes them as RTLIL with a SymbiYosys script and
proves them by k-induction with yowasp-sby and z3. :mod:`oasa.hw.broken` holds
deliberately wrong variants of the RTL blocks, to show that the same harnesses catch real
bugs.
"""

from oasa.hw.formal.harness import Harness
from oasa.hw.formal.run import (
    PROPERTIES,
    FormalToolError,
    ProofResult,
    Property,
    applicable,
    prove_config,
    run_property,
)

__all__ = [
    "PROPERTIES",
    "FormalToolError",
    "Harness",
    "ProofResult",
    "Property",
    "applicable",
    "prove_config",
    "run_property",
]

"""The Hypothesis settings both fuzz suites share.

``OASA_FUZZ_EXAMPLES`` sets the examples per property (default 25, seconds in all).
Without it the examples are the same every run, so a failure in ``make test`` replays;
with it, each run explores new ones.
"""

import os

from hypothesis import HealthCheck, settings

__all__ = ["FUZZ"]

FUZZ = settings(
    max_examples=int(os.environ.get("OASA_FUZZ_EXAMPLES", "25")),
    deadline=None,
    derandomize="OASA_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)

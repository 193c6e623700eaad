"""pytest's doctest collection of quant/: skip the torch-only module when torch is absent."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["qat.py"]

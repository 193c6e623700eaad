import sys
from pathlib import Path

# Shared helpers (reference.py) live next to the tests.
sys.path.insert(0, str(Path(__file__).parent))

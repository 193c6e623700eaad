"""``python -m oasa.cli``: the ``oasa`` command."""

import sys

from oasa.cli import main

sys.exit(main())

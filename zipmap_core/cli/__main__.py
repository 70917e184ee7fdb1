"""`python -m zipmap_core.cli ...`: what the `zipmap` command runs (the split-run launcher uses it)."""

import sys

from . import main

sys.exit(main())

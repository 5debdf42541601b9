"""`python -m edgetl …` (also what `torchrun -m edgetl train …` runs)."""

import sys

from edgetl.cli import main

sys.exit(main())

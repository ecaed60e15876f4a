"""``python -m ltkd ...`` runs the ``ltkd`` command line (where the console script is not on PATH)."""

import sys

from ltkd.cli import main

sys.exit(main())

"""`python -m hps ...` runs the `hps` command line."""

import sys

from .cli import main

sys.exit(main())

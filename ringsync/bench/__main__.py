"""`python -m ringsync.bench`: the benchmark without the `ringsync` entry point."""

import sys

from ringsync.bench.run import main

sys.exit(main())

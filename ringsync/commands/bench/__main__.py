"""`python -m ringsync.commands.bench`: the benchmark without the `ringsync` entry point."""

import sys

from ringsync.commands.bench.run import main

sys.exit(main())

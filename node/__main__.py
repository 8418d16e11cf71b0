"""`python -m node --config FILE`: the same as `ringsync node`."""

import argparse
import sys
from pathlib import Path

from node.main import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m node")
    parser.add_argument("--config", required=True, type=Path)
    sys.exit(run(parser.parse_args().config))

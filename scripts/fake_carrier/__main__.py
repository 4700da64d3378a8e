"""`python -m scripts.fake_carrier --port 12112`: serve the fake carrier, faults from FAKE_CARRIER_* env vars."""

from __future__ import annotations

import argparse
import os

from .faults import Faults
from .server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m scripts.fake_carrier", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    args = parser.parse_args(argv)
    serve(args.host, args.port, Faults.from_env(os.environ))


if __name__ == "__main__":
    main()

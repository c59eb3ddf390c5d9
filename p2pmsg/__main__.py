"""``python -m p2pmsg`` and the ``p2pmsg`` console script: see :mod:`p2pmsg.cli`."""

from __future__ import annotations

import sys

from .cli import main as _cli_main

__all__ = ["main"]


def main() -> None:
    """Console-script entry point: run the CLI and exit with its code."""
    sys.exit(_cli_main())


if __name__ == "__main__":
    main()

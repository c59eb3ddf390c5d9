"""The ``p2pmsg`` command line: :func:`main` (console script and ``python -m p2pmsg``).

Commands live in small modules by what they touch: :mod:`~p2pmsg.cli.init_cmds`
(org/node set-up), :mod:`~p2pmsg.cli.node_cmds` (run, status, peers),
:mod:`~p2pmsg.cli.store_cmds` (topics, log, append, verify, backup). Exit codes are
in :mod:`~p2pmsg.cli.exitcodes`.
"""

from .main import build_parser as build_parser
from .main import main as main

__all__ = ["build_parser", "main"]

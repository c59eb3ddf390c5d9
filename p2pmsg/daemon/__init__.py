"""The headless daemon: configuration, logging, metrics, run state and the run loop.

Start here: :func:`~p2pmsg.daemon.config.load_config` then
:func:`~p2pmsg.daemon.run.run_daemon` (what ``p2pmsg run`` does). docs/operations.md
is the operator's guide.
"""

from .config import ConfigError as ConfigError
from .config import DaemonConfig as DaemonConfig
from .config import load_config as load_config
from .run import run_daemon as run_daemon
from .state import NodeRunningError as NodeRunningError

__all__ = ["ConfigError", "DaemonConfig", "NodeRunningError", "load_config", "run_daemon"]

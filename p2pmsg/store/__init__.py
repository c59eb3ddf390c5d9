"""Storage backends. ``SqliteStore`` is the default; ``MemoryStore`` the reference."""

from .base import AppendResult as AppendResult
from .base import LogHead as LogHead
from .base import PayloadState as PayloadState
from .base import Store as Store
from .memory import MemoryStore as MemoryStore
from .sqlite import SqliteStore as SqliteStore

__all__ = ["AppendResult", "LogHead", "MemoryStore", "PayloadState", "SqliteStore", "Store"]

"""Placeholder replaced by the SqliteStore implementation."""

from __future__ import annotations

from .memory import MemoryStore as SqliteStore

__all__ = ["SqliteStore"]

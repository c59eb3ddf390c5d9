"""Test helpers shipped as library code, for transport authors and applications.

:func:`check_transport` is the conformance suite every
:class:`~p2pmsg.net.base.Transport` must pass (the memory transport is the
reference and runs it in tests/test_net_memory.py).
"""

from .transport_checks import TransportPair as TransportPair
from .transport_checks import check_transport as check_transport

__all__ = ["TransportPair", "check_transport"]

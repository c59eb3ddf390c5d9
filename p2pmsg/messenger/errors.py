"""Errors of the messenger facade, inside p2pmsg's one hierarchy::

    P2PMsgError
    └── LocalProtocolError
        ├── NotPermitted (p2pmsg.messaging)   the room rules forbid what you asked
        ├── RekeyRequired (p2pmsg.messaging)  handled inside the messenger (rekeys)
        ├── UnknownRoom                       no valid room is known for that topic
        └── UnknownDevice                     a bare device key no known org certifies

All of them mean "you called me wrong"; nothing a peer sends raises them.
"""

from __future__ import annotations

from ..errors import LocalProtocolError

__all__ = ["UnknownDevice", "UnknownRoom"]


class UnknownRoom(LocalProtocolError):
    """No valid room creation entry is stored for this topic (yet).

    Either the topic is wrong or its entries have not replicated here: check that
    the node replicates it (:meth:`~p2pmsg.messenger.Messenger.missing_topics`)."""


class UnknownDevice(LocalProtocolError):
    """A member was given as a bare device key and no known organisation certifies it.

    Pass a :class:`~p2pmsg.messaging.MemberSpec` (device, org) instead, or add the
    organisation to the messenger's ``orgs``."""

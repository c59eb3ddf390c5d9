"""The application API: a typed, trio-native messenger on top of a running node.

Start here: :func:`open_messenger` (``async with``) on a node opened with
:func:`p2pmsg.open_node` whose key is the device key, then ``create_room``,
``send_text``, ``messages`` and ``async for msg in m.live(room)``. docs/api.md walks
through it; :mod:`.bootstrap` has the pure set-up helpers (org control log, planned
rooms, the topics a node must replicate); :mod:`.keyring` the epoch-key store.
"""

from .bootstrap import RoomPlan as RoomPlan
from .bootstrap import messenger_topics as messenger_topics
from .bootstrap import org_control_items as org_control_items
from .bootstrap import plan_room as plan_room
from .errors import UnknownDevice as UnknownDevice
from .errors import UnknownRoom as UnknownRoom
from .keyring import Keyring as Keyring
from .keyring import MemoryKeyring as MemoryKeyring
from .messenger import Messenger as Messenger
from .messenger import Room as Room
from .messenger import RoomRef as RoomRef
from .messenger import open_messenger as open_messenger

__all__ = [
    "Keyring",
    "MemoryKeyring",
    "Messenger",
    "Room",
    "RoomPlan",
    "RoomRef",
    "UnknownDevice",
    "UnknownRoom",
    "messenger_topics",
    "open_messenger",
    "org_control_items",
    "plan_room",
]

"""Embedding p2pmsg in a clinic app: two organisations, one room, live messages.

Runs standalone in a few seconds on the in-memory transport:
``python examples/embed.py``. docs/api.md explains every call.
"""

import trio

from p2pmsg import Identity, MemoryStore, NodeConfig, Role, issue_certificate, open_node
from p2pmsg.messaging import MemberSpec
from p2pmsg.messenger import messenger_topics, open_messenger, org_control_items, plan_room
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.policy import AllowAllPolicy

# --- provided by each organisation's admin and deployment --------------------------
klinikum, reha = Identity.generate(), Identity.generate()      # org root keys
doctor, therapist = Identity.generate(), Identity.generate()   # one device each
net, now = MemoryNetwork(), 1_700_000_000_000
room = plan_room(doctor, klinikum.public_key,                  # fixes the room's topic
                 [MemberSpec(therapist.public_key, reha.public_key)], created_ms=now)
TOPICS = messenger_topics([klinikum.public_key, reha.public_key], [room.topic])


def node_config(me: Identity, root: Identity, name: str, peers: list[PeerHint]) -> NodeConfig:
    store = MemoryStore()   # SqliteStore(path) in production
    cert = issue_certificate(root, me.public_key, Role.MEMBER, name, 0, 2**50)
    items = org_control_items(root, [cert], start_ms=now)
    store.append([e for e, _ in items], {e.id: p for e, p in items})
    return NodeConfig(identity=me, store=store, topics=TOPICS, policy=AllowAllPolicy(),
                      transports=[net.transport(name, me.public_key)], peers=peers)


# --- the app -------------------------------------------------------------------------
async def therapist_app(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_node(node_config(therapist, reha, "therapist", [])) as node, \
            open_messenger(node, reha.public_key, orgs=[klinikum.public_key]) as m:
        task_status.started()
        async for msg in m.live(room.topic):                    # decrypted, as they arrive
            print("therapist sees:", msg.content)
            return


async def main() -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(therapist_app)
        peer = PeerHint(therapist.public_key, "memory://therapist")
        async with open_node(node_config(doctor, klinikum, "doctor", [peer])) as node, \
                open_messenger(node, klinikum.public_key, orgs=[reha.public_key]) as m:
            await m.wait_certified([therapist.public_key])     # its certificate arrived
            await m.create_room_from(room, name="Reha-Übergabe")
            await m.send_text(room.topic, "Übergabe: Mobilisation ab morgen")
            print("doctor's rooms:", [r.name for r in m.rooms()])
            print("doctor sees:", [x.content for x in m.messages(room.topic)])
            with trio.fail_after(10):
                while nursery.child_tasks:      # until the therapist got the message
                    await trio.sleep(0.05)


if __name__ == "__main__":
    trio.run(main)

"""FHIR bridge: a pharmacy system tells a clinic "prescription ready for pickup".

Stage 3 of the federation demo in miniature: the pharmacy's integration (a bridge
from its dispensing system) sends a structured FHIR R4 ``Communication`` through
p2pmsg to a room it shares with the clinic, with a plain-text fallback for clients
that do not understand FHIR; the clinic's system reads the structured resource and
acts on it. Runs standalone in a few seconds on the in-memory transport:
``python examples/fhir_bridge.py`` (exit code 0 when the clinic got it). With a
daemon, the same message is one ``POST /v1/rooms/{room}/messages`` with
``{"kind": "fhir", ...}`` (docs/http-api.md).
"""

from __future__ import annotations

import json
import time

import trio

from p2pmsg import Identity, MemoryStore, NodeConfig, Role, issue_certificate, open_node
from p2pmsg.messaging import FhirCommunication, MemberSpec, Message
from p2pmsg.messenger import messenger_topics, open_messenger, org_control_items, plan_room
from p2pmsg.net.base import PeerHint
from p2pmsg.net.memory import MemoryNetwork
from p2pmsg.policy import AllowAllPolicy

# --- deployment: two organisations, one device (node) each, one planned room ---------
pharmacy, clinic = Identity.generate(), Identity.generate()          # org root keys
bridge, clinic_desk = Identity.generate(), Identity.generate()       # devices
now = int(time.time() * 1000)
net = MemoryNetwork()
room = plan_room(bridge, pharmacy.public_key,
                 [MemberSpec(clinic_desk.public_key, clinic.public_key)], created_ms=now)
TOPICS = messenger_topics([pharmacy.public_key, clinic.public_key], [room.topic])


def node_config(me: Identity, root: Identity, name: str, peers: list[PeerHint]) -> NodeConfig:
    store = MemoryStore()
    cert = issue_certificate(root, me.public_key, Role.MEMBER, name, 0, 2**50)
    items = org_control_items(root, [cert], start_ms=now)
    store.append([e for e, _ in items], {e.id: p for e, p in items})
    return NodeConfig(identity=me, store=store, topics=TOPICS, policy=AllowAllPolicy(),
                      transports=[net.transport(name, me.public_key)], peers=peers)


def pickup_notice(prescription: str, patient: str, ready_at: str) -> dict[str, object]:
    """A FHIR R4 Communication: the pharmacy tells the prescriber a medication is ready."""
    return {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
            "code": "notification"}]}],
        "priority": "routine",
        "subject": {"reference": f"Patient/{patient}"},
        "about": [{"reference": f"MedicationRequest/{prescription}"}],
        "sent": ready_at,
        "sender": {"display": "Apotheke am Markt"},
        "payload": [{"contentString": "Prescription ready for pickup"}],
    }


# --- the clinic's side: reads structured messages and acts on them -------------------
async def clinic_system(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                        ) -> None:
    async with open_node(node_config(clinic_desk, clinic, "clinic", [])) as node, \
            open_messenger(node, clinic.public_key, orgs=[pharmacy.public_key]) as m:
        task_status.started()
        async for msg in m.live(room.topic):
            handle(msg)
            return


def handle(msg: Message) -> None:
    content = msg.content
    if isinstance(content, FhirCommunication):
        resource = json.loads(content.resource_json)
        assert resource["resourceType"] == "Communication"
        about = resource["about"][0]["reference"]
        print(f"clinic: FHIR {content.fhir_version} Communication about {about}: "
              f"{resource['payload'][0]['contentString']} (status {resource['status']})")
        print(f"clinic: a client without FHIR shows: {content.fallback_text!r}")
    else:
        raise SystemExit(f"clinic: expected a FHIR Communication, got {type(content).__name__}")


# --- the pharmacy's bridge: sends the notice -----------------------------------------
async def main() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(clinic_system)
            peer = PeerHint(clinic_desk.public_key, "memory://clinic")
            async with open_node(node_config(bridge, pharmacy, "pharmacy", [peer])) as node, \
                    open_messenger(node, pharmacy.public_key, orgs=[clinic.public_key]) as m:
                await m.wait_certified([clinic_desk.public_key])
                await m.create_room_from(room, name="Klinik Nord / Apotheke")
                notice = pickup_notice("rx-4711", "pat-0815",
                                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                await m.send_fhir(room.topic, json.dumps(notice),
                                  "Rezept rx-4711 liegt zur Abholung bereit",
                                  profile="http://hl7.org/fhir/StructureDefinition/Communication")
                print("pharmacy: sent prescription-ready notice")
                while nursery.child_tasks:          # until the clinic handled it
                    await trio.sleep(0.02)


if __name__ == "__main__":
    trio.run(main)

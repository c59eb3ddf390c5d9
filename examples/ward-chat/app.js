// Ward chat: a vanilla-JS client of the p2pmsg local API (docs/http-api.md).
// Token: from the URL fragment (#token=...&room=...), kept in sessionStorage, or asked
// for. Live updates: GET /v1/events read with fetch() so the bearer token travels in a
// header (EventSource cannot send one); Last-Event-ID resumes after a reconnect.
"use strict";

const state = { token: "", device: "", room: "", rooms: [], messages: new Map(), lastEventId: "" };
const $ = (id) => document.getElementById(id);
const short = (hex) => (hex || "").slice(0, 8);

function readToken() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) {
    sessionStorage.setItem("p2pmsg-token", frag.get("token"));
    if (frag.get("room")) state.room = frag.get("room");
    history.replaceState(null, "", location.pathname + location.search); // hide the token
  }
  state.token = sessionStorage.getItem("p2pmsg-token") || window.prompt("API token") || "";
  sessionStorage.setItem("p2pmsg-token", state.token);
}

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + state.token, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { ...options, headers, body: options.body === undefined
    ? undefined : JSON.stringify(options.body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.status + " " + res.statusText);
  return data;
}

function showError(err) { $("error").textContent = err ? String(err.message || err) : ""; }

async function loadRooms() {
  state.rooms = (await api("/v1/rooms")).rooms;
  const list = $("rooms");
  list.replaceChildren(...state.rooms.map((room) => {
    const li = document.createElement("li");
    li.dataset.room = room.id;
    li.textContent = room.name || "Room " + short(room.id);
    li.title = room.members.length + " members";
    li.classList.toggle("selected", room.id === state.room);
    li.addEventListener("click", () => selectRoom(room.id));
    return li;
  }));
  if (!state.room && state.rooms.length) await selectRoom(state.rooms[0].id);
  else if (state.room) await selectRoom(state.room);
}

async function selectRoom(id) {
  state.room = id;
  for (const li of $("rooms").children) li.classList.toggle("selected", li.dataset.room === id);
  const room = state.rooms.find((r) => r.id === id);
  $("room-title").textContent = room ? (room.name || "Room " + short(id)) : "Room " + short(id);
  state.messages = new Map();
  const page = await api(`/v1/rooms/${id}/messages?limit=200`);
  for (const m of page.messages) state.messages.set(m.id, m);
  render();
  $("compose-text").disabled = $("compose-send").disabled = false;
}

function describe(m) {
  if (m.status === "redacted") return ["gone", "(deleted)"];
  if (m.status !== "ok") return ["gone", "(" + m.status + ")"];
  if (m.kind === "text" || m.kind === "reply") return ["", m.content.text];
  if (m.kind === "fhir") return ["FHIR", m.content.fallback_text];
  if (m.content && m.content.name !== undefined) return [m.kind, m.content.name || m.content.mime];
  return ["gone", "(" + (m.kind || "unknown") + ")"];
}

function render() {
  const list = $("messages");
  list.replaceChildren(...[...state.messages.values()].map((m) => {
    const li = document.createElement("li");
    li.dataset.id = m.id;
    li.classList.toggle("mine", m.author === state.device);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = short(m.author) + " " + new Date(m.time_ms).toLocaleTimeString();
    li.append(meta);
    const [badge, text] = describe(m);
    if (badge && badge !== "gone") {
      const b = document.createElement("span");
      b.className = "badge";
      b.textContent = badge;
      li.append(b);
    }
    const body = document.createElement("span");
    body.className = "text" + (badge === "gone" ? " gone" : "");
    body.textContent = text + (m.edited ? " (edited)" : "");   // never innerHTML
    li.append(body);
    const reactions = Object.entries(m.reactions || {});
    if (reactions.length) li.append(" " + reactions.map(([k, who]) => k + who.length).join(" "));
    return li;
  }));
  list.scrollTop = list.scrollHeight;
}

async function send(event) {
  event.preventDefault();
  const input = $("compose-text");
  const text = input.value.trim();
  if (!text || !state.room) return;
  try {
    await api(`/v1/rooms/${state.room}/messages`, { method: "POST", body: { kind: "text", text } });
    input.value = "";
    showError(null);
  } catch (err) { showError(err); }
}

function handleEvent(type, data) {
  if (type === "ready") { $("live").textContent = "live"; $("live").className = "on"; return; }
  if (type === "reset") { loadRooms().catch(showError); return; }
  if (type !== "message") return;
  const ev = JSON.parse(data);
  if (!state.rooms.some((r) => r.id === ev.room)) { loadRooms().catch(showError); return; }
  if (ev.room === state.room) { state.messages.set(ev.message.id, ev.message); render(); }
}

async function listen() {
  for (;;) {
    try {
      const headers = { Authorization: "Bearer " + state.token };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const res = await fetch("/v1/events", { headers });
      if (!res.ok) throw new Error("events: " + res.status);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const [field, ...rest] = line.split(": ");
            const value2 = rest.join(": ");
            if (field === "event") type = value2;
            else if (field === "data") data += value2;
            else if (field === "id") state.lastEventId = value2;
          }
          if (block.replace(/^:.*$/gm, "").trim()) handleEvent(type, data);
        }
      }
    } catch (err) { showError(err); }
    $("live").textContent = "reconnecting"; $("live").className = "off";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function main() {
  readToken();
  $("compose").addEventListener("submit", send);
  try {
    const status = await api("/v1/status");
    state.device = status.device;
    $("me").textContent = "device " + short(status.device);
    await loadRooms();
  } catch (err) { showError(err); }
  listen();
}

main();

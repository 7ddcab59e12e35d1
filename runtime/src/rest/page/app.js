// herald's operator page: reads the node's REST API, then follows GET /api/events (server-sent
// events) so that it changes as the node does. It changes nothing. Every value is put into the
// page as text (textContent), never as markup: register names come from users.
"use strict";

const MAX_ROWS = 1000;
const POLL_MS = 2000;
const RETRY_MS = 1000;

const state = {
  token: sessionStorage.getItem("herald-token") || "",
  registers: new Map(),
  sortKey: "registerId",
  sortDir: 1,
  filter: "",
};

const $ = (id) => document.getElementById(id);

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

class NeedsToken extends Error {}

async function getJson(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (response.status === 401) throw new NeedsToken();
  if (response.status === 404) return null;
  if (!response.ok && response.status !== 503) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function text(element, value) {
  element.textContent = value === null || value === undefined ? "—" : String(value);
  return element;
}

function el(tag, value, className) {
  const element = document.createElement(tag);
  if (value !== undefined) text(element, value);
  if (className) element.className = className;
  return element;
}

function time(ms) {
  if (!ms) return "—";
  const date = new Date(ms);
  const ago = Math.round((Date.now() - ms) / 1000);
  const when = ago >= 0 ? ago + " s ago" : "in " + -ago + " s";
  return date.toISOString().replace("T", " ").slice(0, 19) + " (" + when + ")";
}

function show(id, visible) {
  $(id).hidden = !visible;
}

// A definition list from [label, value, level?] rows; level "bad" or "warn" marks a value.
function fill(dl, rows) {
  dl.replaceChildren();
  for (const [label, value, level] of rows) {
    dl.append(el("dt", label), el("dd", value, level || ""));
  }
}

function renderHealth(health) {
  if (!health) return;
  text($("node-id"), health.nodeId);
  text($("roles"), (health.roles || []).join(", "));
  const badge = $("health");
  const status = health.status || "unknown";
  badge.className = "badge" + (status === "healthy" ? "" : " bad");
  text(badge, status === "healthy" ? "healthy" : status.toUpperCase());
  const reasons = $("health-reasons");
  reasons.replaceChildren();
  for (const reason of health.reasons || []) reasons.append(el("li", reason, "bad"));
  const body = $("actors").tBodies[0];
  body.replaceChildren();
  for (const actor of health.actors || []) {
    const row = el("tr");
    row.append(
      el("td", actor.kind),
      el("td", actor.running ? "yes" : "NO", actor.running ? "" : "bad"),
      el("td", actor.restarts, actor.restarts ? "warn" : ""),
      el("td", actor.lastFailure),
    );
    body.append(row);
  }
  show("health-panel", true);
}

function renderSync(sync) {
  if (!sync) return;
  const pool = sync.pool;
  show("pool-panel", !!pool);
  if (pool) {
    const store = (pool.store && pool.store.state) || "unknown";
    fill($("pool"), [
      ["local ads", pool.localAds],
      ["remote ads", pool.remoteAds],
      ["store", store, store === "healthy" ? "" : "bad"],
      ["unwritten", pool.dirtyAds, pool.dirtyAds ? "warn" : ""],
      ["unverified", pool.unverifiedAds, pool.unverifiedAds ? "warn" : ""],
      ["store repairs", pool.storeRepairs],
      ["loaded", pool.loaded ? "yes" : "not yet", pool.loaded ? "" : "warn"],
    ].concat(gossipRows(pool.gossip)));
  }
  const resync = sync.resync;
  show("resync-panel", !!resync);
  if (resync) {
    fill($("resync"), [
      ["status", resync.status, resync.status === "inSync" ? "" : "warn"],
      ["peer", resync.pool],
      ["last success", time(resync.lastSuccess)],
      ["registers pushed", resync.lastPushed],
      ["failures in a row", resync.consecutiveFailures, resync.consecutiveFailures ? "bad" : ""],
      ["last error", resync.lastError, resync.lastError ? "bad" : ""],
      ["next full sync", time(resync.nextFullSync)],
    ]);
  }
  const replica = sync.replica;
  if (replica) {
    const checkpoint = replica.checkpoint || {};
    show("replica-panel", true);
    fill($("replica"), [
      ["version", checkpoint.version],
      ["history", checkpoint.historyId],
      ["blueprints", replica.totalBlueprints + " (" + replica.activeBlueprints + " active)"],
      ["last sync", (replica.lastSyncKind || "—") + ", " + time(replica.lastSyncAt)],
      ["syncing", replica.syncing ? "yes" : "no"],
      ["diverged", replica.diverged, replica.diverged ? "bad" : ""],
      ["last error", replica.lastError, replica.lastError ? "bad" : ""],
    ]);
  }
}

function renderConnection(connection) {
  show("connection-panel", !!connection);
  if (!connection) return;
  const level = connection.state === "Connected" ? "" : connection.state === "Isolated" ? "bad" : "warn";
  fill($("connection"), [
    ["state", connection.state, level],
    ["hub", connection.hubId],
    ["session", connection.sessionId],
    ["missed heartbeats", connection.missedHeartbeats, connection.missedHeartbeats ? "warn" : ""],
    ["latency", connection.lastLatencyMs === null ? null : connection.lastLatencyMs + " ms"],
    ["failovers", connection.failovers],
    ["since", time(connection.since)],
    ["last error", connection.lastError, connection.lastError ? "bad" : ""],
  ]);
}

function renderSystemRegister(view) {
  if (!view) return;
  show("replica-panel", true);
  const body = $("blueprints").tBodies[0];
  body.replaceChildren();
  for (const blueprint of view.blueprints || []) {
    const row = el("tr");
    row.append(
      el("td", blueprint.blueprintId),
      el("td", blueprint.version),
      el("td", blueprint.isActive ? "yes" : "deprecated", blueprint.isActive ? "" : "warn"),
    );
    body.append(row);
  }
  if ($("replica").children.length === 0) {
    fill($("replica"), [
      ["version", view.version],
      ["history", view.historyId],
      ["blueprints", view.totalBlueprints],
    ]);
  }
}

function renderMembers(members) {
  show("cluster-panel", !!members);
  if (!members) return;
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const member of members) {
    const level = member.state === "ready" ? "" : member.state === "connecting" ? "warn" : "bad";
    const row = el("tr", undefined, level);
    row.append(
      el("td", member.nodeId + (member.self ? " (this node)" : "")),
      el("td", (member.roles || []).join(", ")),
      el("td", member.address),
      el("td", member.state, "state"),
      el("td", member.self ? "—" : member.lastSeenMs + " ms ago"),
      el("td", member.currentHub),
    );
    body.append(row);
  }
}

// The gossip of public ads with the cluster's other peers (absent outside a cluster).
function gossipRows(gossip) {
  if (!gossip) return [];
  return [
    ["gossiped ads", gossip.remoteAds],
    ["from peers", gossip.origins],
    ["stale", gossip.staleAds, gossip.staleAds ? "warn" : ""],
    ["partitioned", gossip.partitioned ? "yes" : "no", gossip.partitioned ? "bad" : ""],
  ];
}

function flags(ad) {
  const out = [];
  if (ad.local) out.push("local");
  if (ad.verified === false) out.push("unverified");
  if (ad.stale) out.push("stale");
  return out.join(" ");
}

function sortValue(ad, key) {
  if (key === "flags") return flags(ad);
  const value = ad[key];
  return value === null || value === undefined ? "" : value;
}

function renderRegisters() {
  const filter = state.filter.toLowerCase();
  let rows = [...state.registers.values()];
  if (filter) {
    rows = rows.filter((ad) =>
      ad.registerId.includes(filter) || (ad.name || "").toLowerCase().includes(filter));
  }
  const { sortKey, sortDir } = state;
  rows.sort((a, b) => {
    const x = sortValue(a, sortKey);
    const y = sortValue(b, sortKey);
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
  });
  const body = $("registers").tBodies[0];
  const fragment = document.createDocumentFragment();
  for (const ad of rows.slice(0, MAX_ROWS)) {
    const row = el("tr");
    row.dataset.registerId = ad.registerId;
    const flagText = flags(ad);
    row.append(
      el("td", ad.registerId),
      el("td", ad.name, "name"),
      el("td", ad.latestVersion),
      el("td", ad.latestDocketVersion),
      el("td", ad.peerCount),
      el("td", ad.fullReplicaPeerCount),
      el("td", flagText, /stale|unverified/.test(flagText) ? "warn" : ""),
    );
    fragment.append(row);
  }
  body.replaceChildren(fragment);
  text($("registers-count"), "(" + state.registers.size + ")");
  text($("registers-more"), rows.length > MAX_ROWS
    ? "Showing " + MAX_ROWS + " of " + rows.length + " matching registers: filter to narrow."
    : rows.length + " shown.");
  for (const th of $("registers").tHead.rows[0].cells) {
    th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
  }
  show("registers-panel", true);
}

function setRegisters(list) {
  if (!list) return;
  state.registers = new Map(list.map((ad) => [ad.registerId, ad]));
  renderRegisters();
}

// One server-sent event: apply what it carries.
function apply(type, data) {
  switch (type) {
    case "snapshot":
      renderHealth(data.health);
      renderSync(data.sync);
      renderConnection(data.connection);
      renderSystemRegister(data.systemRegister);
      renderMembers(data.members);
      setRegisters(data.registers);
      break;
    case "registers":
      for (const ad of data.upserted || []) state.registers.set(ad.registerId, ad);
      for (const id of data.removed || []) state.registers.delete(id);
      renderRegisters();
      break;
    case "health": renderHealth(data); break;
    case "sync": renderSync(data); break;
    case "connection": renderConnection(data); break;
    case "systemRegister": renderSystemRegister(data); break;
    case "members": renderMembers(data); break;
    default: return;
  }
  text($("updated"), "updated " + new Date().toISOString().slice(11, 19));
}

async function loadAll() {
  const [health, sync, connection, view, members, registers] = await Promise.all([
    getJson("/health"),
    getJson("/api/sync/status"),
    getJson("/api/connection/status"),
    getJson("/api/system-register"),
    getJson("/api/cluster/members"),
    getJson("/api/registers/available"),
  ]);
  apply("snapshot", { health, sync, connection, systemRegister: view, members, registers });
}

function live(label, level) {
  const badge = $("live");
  badge.className = "badge" + (level ? " " + level : "");
  text(badge, label);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Follows GET /api/events (fetch, so that the token can be sent), resuming from the last event
// id after a break; polls when the node has no events endpoint.
async function follow() {
  let lastId = null;
  for (;;) {
    try {
      const request = headers();
      if (lastId) request["Last-Event-ID"] = lastId;
      const response = await fetch("/api/events", { headers: request, cache: "no-store" });
      if (response.status === 401) throw new NeedsToken();
      if (response.status === 404) {
        live("polling");
        await sleep(POLL_MS);
        await loadAll();
        continue;
      }
      if (!response.ok || !response.body) throw new Error("events: HTTP " + response.status);
      live("live");
      $("error").hidden = true;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trimStart();
            else if (line.startsWith("id:")) lastId = line.slice(3).trim();
          }
          if (data) apply(type, JSON.parse(data));
        }
      }
    } catch (err) {
      if (err instanceof NeedsToken) return askToken();
      $("error").hidden = false;
      text($("error"), "Lost the node: " + err.message);
    }
    live("reconnecting…", "warn");
    await sleep(RETRY_MS);
  }
}

function askToken() {
  live("needs token", "warn");
  $("token-form").hidden = false;
}

async function start() {
  try {
    await loadAll();
  } catch (err) {
    if (err instanceof NeedsToken) return askToken();
    $("error").hidden = false;
    text($("error"), "Cannot read the node: " + err.message);
  }
  follow();
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("input", (event) => {
    state.filter = event.target.value.trim();
    renderRegisters();
  });
  for (const th of $("registers").tHead.rows[0].cells) {
    th.addEventListener("click", () => {
      state.sortDir = state.sortKey === th.dataset.key ? -state.sortDir : 1;
      state.sortKey = th.dataset.key;
      renderRegisters();
    });
  }
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value;
    sessionStorage.setItem("herald-token", state.token);
    $("token-form").hidden = true;
    start();
  });
  start();
});

// Reviewer page of the Streamgate admin process. No build step, no dependencies, no external requests:
// the page talks only to this origin's /api/ with the reviewer's bearer token, and renders every value
// with textContent (requester-controlled text such as justifications is never interpreted as HTML).
"use strict";

const TOKEN_KEY = "streamgate.admin.token";
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

const state = { token: null, me: null, selected: null, timer: null };

function flash(message, isError) {
  const box = $("flash");
  box.textContent = message;
  box.className = isError ? "error" : "";
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { "Authorization": "Bearer " + state.token, "Accept": "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401) {
    signOut((data && data.message) || "Your session ended; sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.message) || ("HTTP " + response.status));
  }
  return data;
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

function duration(seconds) {
  if (seconds % 86400 === 0) return seconds / 86400 + " d";
  if (seconds % 3600 === 0) return seconds / 3600 + " h";
  if (seconds % 60 === 0) return seconds / 60 + " min";
  return seconds + " s";
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function requesterText(a) {
  return a.requester.email ? a.requester.sub + " <" + a.requester.email + ">" : a.requester.sub;
}

function resourceText(a) {
  return a.resource.kind + " " + a.resource.name;
}

function renderPending(list) {
  const body = $("pending-table").tBodies[0];
  body.replaceChildren();
  for (const a of list) {
    const row = document.createElement("tr");
    row.dataset.id = a.id;
    if (state.selected === a.id) row.classList.add("selected");
    cell(row, when(a.created_at));
    cell(row, requesterText(a));
    cell(row, a.action);
    cell(row, resourceText(a));
    cell(row, a.rule);
    cell(row, a.justification || "");
    row.addEventListener("click", () => select(a.id));
    body.appendChild(row);
  }
  $("pending-count").textContent = list.length ? "(" + list.length + ")" : "";
  $("pending-empty").hidden = list.length > 0;
}

function renderDecided(list) {
  const body = $("decided-table").tBodies[0];
  body.replaceChildren();
  for (const a of list) {
    const row = document.createElement("tr");
    row.dataset.id = a.id;
    cell(row, when(a.decided_at));
    const status = cell(row, a.status);
    status.className = "status status-" + a.status;
    cell(row, requesterText(a));
    cell(row, a.action);
    cell(row, resourceText(a));
    cell(row, a.decided_by || "");
    cell(row, a.reason || "");
    cell(row, a.grant_active ? when(a.grant_expires_at) : "");
    row.addEventListener("click", () => select(a.id));
    body.appendChild(row);
  }
  $("decided-empty").hidden = list.length > 0;
}

function renderDetails(a) {
  $("details").hidden = false;
  $("details-id").textContent = a.id;
  const status = $("details-status");
  status.textContent = a.status;
  status.className = "status status-" + a.status;
  const fields = [
    ["Requester", requesterText(a)],
    ["Requester groups", a.requester.groups.join(", ")],
    ["Action", a.action],
    ["Resource", resourceText(a)],
    ["Rule", a.rule],
    ["Reviewers", a.reviewers.join(", ")],
    ["Justification", a.justification || "(none given)"],
    ["Client", [a.client.client_id, a.client.address].filter(Boolean).join(" from ") || "-"],
    ["Requested", when(a.created_at)],
    ["Grant length", duration(a.grant_ttl_seconds)],
  ];
  if (a.decided_by) fields.push(["Decided by", a.decided_by], ["Decided", when(a.decided_at)]);
  if (a.reason) fields.push(["Reason", a.reason]);
  if (a.grant_expires_at) fields.push(["Grant until", when(a.grant_expires_at)]);
  const list = $("details-fields");
  list.replaceChildren();
  for (const [label, value] of fields) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  $("approve-button").hidden = !a.can_decide;
  $("deny-button").hidden = !a.can_decide;
  $("revoke-button").hidden = !a.can_revoke;
  $("decision").hidden = !(a.can_decide || a.can_revoke);
  const note = $("details-note");
  note.hidden = true;
  if (a.status === "pending" && !a.can_decide) {
    note.textContent = a.is_requester
      ? "You filed this request; another reviewer has to decide it."
      : "You are not one of its reviewers.";
    note.hidden = false;
  }
}

async function select(id) {
  state.selected = id;
  history.replaceState(null, "", "#request=" + encodeURIComponent(id));
  for (const row of document.querySelectorAll("tbody tr[data-id]")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
  try {
    renderDetails(await api("GET", "/api/approvals/" + encodeURIComponent(id)));
  } catch (error) {
    if (error.status !== 401) flash("Cannot show request " + id + ": " + error.message, true);
  }
}

async function refresh() {
  try {
    const [pending, decided] = await Promise.all([
      api("GET", "/api/approvals?status=pending&limit=200"),
      api("GET", "/api/approvals?status=approved,denied,revoked,expired&limit=50"),
    ]);
    renderPending(pending.approvals);
    renderDecided(decided.approvals);
    if (state.selected) {
      const all = pending.approvals.concat(decided.approvals);
      const current = all.find((a) => a.id === state.selected);
      if (current) renderDetails(current);
    }
  } catch (error) {
    if (error.status !== 401) flash("Refreshing failed: " + error.message, true);
  }
}

async function decide(verb) {
  const id = state.selected;
  const reason = $("reason-input").value.trim();
  if (!reason) {
    flash("Please give a reason.", true);
    $("reason-input").focus();
    return;
  }
  const buttons = ["approve-button", "deny-button", "revoke-button"].map($);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const result = await api("POST", "/api/approvals/" + encodeURIComponent(id) + "/" + verb, { reason });
    $("reason-input").value = "";
    flash("Request " + id + " is now " + result.status + ".", false);
    renderDetails(result);
    await refresh();
  } catch (error) {
    if (error.status !== 401) flash("Could not " + verb + " request " + id + ": " + error.message, true);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  const me = state.me;
  $("whoami").textContent = "Signed in as " + me.sub + (me.groups.length ? " (" + me.groups.join(", ") + ")" : "");
}

function showLogin() {
  $("app").hidden = true;
  $("session").hidden = true;
  $("details").hidden = true;
  $("login").hidden = false;
}

function signOut(message) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  showLogin();
  flash(message || "", Boolean(message));
}

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("GET", "/api/whoami");
  } catch (error) {
    if (error.status !== 401) signOut("Sign-in failed: " + error.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  flash("", false);
  showApp();
  await refresh();
  const match = /^#request=(.+)$/.exec(location.hash);
  if (match) await select(decodeURIComponent(match[1]));
  state.timer = setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
    $("token-input").value = "";
    if (token) signIn(token);
  });
  $("logout-button").addEventListener("click", () => signOut(""));
  $("approve-button").addEventListener("click", () => decide("approve"));
  $("deny-button").addEventListener("click", () => decide("deny"));
  $("revoke-button").addEventListener("click", () => decide("revoke"));
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved); else showLogin();
});

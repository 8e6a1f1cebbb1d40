"use strict";
// Admin settings stand-in: Enterprise Connect for the org (local development, no build step).
// Same session handling as the profile page: /app/session?as=&org=&roles=admin mints the JWT.

const SESSION_KEY = "solarnexus.session";
const STATUS_LABELS = {
  requested: "Requested", connected: "Connected", failed: "Failed", skipped: "Skipped",
  cancelled: "Cancelled", disconnected: "Disconnected",
};
const REASONS = {
  unknown_email: "No such mailbox in your domain",
  not_in_domain: "Not in your company's domain",
  already_connected: "Connected their calendar themselves",
  already_connected_by_admin: "Already connected by an administrator",
  no_writable_calendar: "No calendar SolarNexus can write to",
  enterprise_connect_ended: "Enterprise Connect ended",
  disconnected_by_member_or_deactivated: "Disconnected by the member (or deactivated)",
};
const OUTCOMES = {
  access_denied: "Your domain administrator did not allow it, so nothing was connected.",
  state_used: "That authorization was already used. Please start again.",
  state_expired: "The authorization took too long. Please start again.",
  invalid_state: "The authorization could not be verified. Please start again.",
  state_not_for_this_browser: "The authorization was started in another browser. Please start again here.",
};
let session = null;
let pollTimer = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, credentials: "include",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${resp.status}`);
  return data;
}

function notice(kind, text) {
  const box = document.getElementById("notice");
  box.replaceChildren(el("span", { id: "notice-text" }, text));
  box.className = kind;
  box.hidden = false;
}

const orgPath = () => `/v1/orgs/${encodeURIComponent(session.org_id)}/enterprise-connect`;

async function start() {
  const data = await api("POST", orgPath(), { return_to: "/crew" });
  window.location.assign(data.authorization_url);
}

async function requestMembers(event) {
  event.preventDefault();
  const members = document.getElementById("members").value.split("\n").map((line) => line.trim())
    .filter(Boolean).map((line) => { const [user_id, email] = line.split(/\s+/); return { user_id, email }; });
  try {
    const data = await api("POST", `${orgPath()}/members`, { members });
    notice("success", `Asked for ${data.requested} member(s); Cronofy calls back for each one.`);
  } catch (error) {
    notice("error", error.message);
  }
  refresh();
}

async function end() {
  if (!window.confirm("End Enterprise Connect? Members connected by it are disconnected.")) return;
  try {
    const data = await api("DELETE", orgPath());
    notice("success", `Enterprise Connect ended: ${data.disconnecting} member(s) being disconnected.`);
  } catch (error) {
    notice("error", error.message);
  }
  refresh();  // either way: show the state as it now is
}

function memberTable(members) {
  const rows = members.map((m) => el("tr", { "data-user": m.user_id, class: `member member-${m.status}` },
    el("td", {}, m.user_id), el("td", {}, m.email),
    el("td", { class: "member-status", "data-status": m.status }, STATUS_LABELS[m.status] || m.status),
    el("td", {}, m.reason ? (REASONS[m.reason] || m.reason) : (m.calendar_name || ""))));
  return el("table", { id: "members-table", class: "details" },
    el("thead", {}, el("tr", {}, el("th", {}, "User"), el("th", {}, "Calendar e-mail"), el("th", {}, "Status"),
      el("th", {}, "Detail"))), el("tbody", {}, rows));
}

let refreshes = 0;

async function refresh() {
  clearTimeout(pollTimer);
  const mine = ++refreshes;
  const status = await api("GET", orgPath());
  if (mine !== refreshes) return;  // a newer refresh started meanwhile: an older answer never wins
  const panel = document.getElementById("ec-panel");
  const state = el("p", {}, "Enterprise Connect: ",
    el("span", { id: "ec-state", "data-state": status.state },
      { not_connected: "Not connected", active: "Active", ended: "Ended" }[status.state]));
  const parts = [state];
  if (status.state !== "active") {
    parts.push(el("p", {}, "Your Google Workspace or Microsoft 365 administrator authorizes SolarNexus once; then you "
      + "connect crew members' calendars without each of them clicking Connect."),
    el("button", { type: "button", id: "ec-start", onclick: start }, "Connect the whole crew"));
  } else {
    parts.push(el("form", { id: "members-form", onsubmit: requestMembers },
      el("label", { for: "members" }, "One crew member per line: user id and calendar e-mail"),
      el("textarea", { id: "members", rows: 4, cols: 50 }),
      el("p", {}, el("button", { type: "submit", id: "ec-request" }, "Connect these members"))),
    el("button", { type: "button", id: "ec-end", onclick: end }, "End Enterprise Connect"));
  }
  if (status.members.length) parts.push(memberTable(status.members));
  panel.replaceChildren(...parts);
  if (status.members.some((m) => m.status === "requested" || m.connection_state === "syncing")) {
    pollTimer = setTimeout(refresh, 1000);
  }
}

// ---- open conflicts per member (GET /v1/orgs/{org_id}/calendar-health, issue 23) ----

const when = (iso) => new Date(iso).toLocaleString([], { weekday: "short", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit" });

async function showConflicts() {
  const box = document.getElementById("conflicts-panel");
  let health;
  try {
    health = await api("GET", `/v1/orgs/${encodeURIComponent(session.org_id)}/calendar-health`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "warning", id: "conflicts-error" }, error.message));
    return;
  }
  const rows = health.members.flatMap((m) => m.conflicts.map((c) => el("tr",
    { class: "conflict", "data-user": m.user_id, "data-milestone": c.milestone_id, "data-conflict": c.conflict_id },
    el("td", {}, m.user_id), el("td", {}, c.milestone_id),
    el("td", {}, `${when(c.milestone_start)} – ${when(c.milestone_end)}`),
    el("td", { class: "conflict-overlap" }, `${when(c.overlap.start)} – ${when(c.overlap.end)}`))));
  const summary = el("p", { id: "conflicts-summary" }, rows.length
    ? `${health.summary.conflicts} open conflict(s)` : "No conflicts: every assigned job is clear on its crew's calendars.");
  const parts = [summary];
  if (rows.length) {
    parts.push(el("table", { id: "conflicts-table", class: "details" },
      el("thead", {}, el("tr", {}, el("th", {}, "Member"), el("th", {}, "Milestone"), el("th", {}, "Scheduled"),
        el("th", {}, "Their own busy time"))), el("tbody", {}, rows)));
  }
  parts.push(el("div", { class: "actions" },
    el("button", { type: "button", id: "conflicts-refresh", onclick: showConflicts }, "Refresh")));
  box.replaceChildren(...parts);
}

async function main() {
  const params = new URLSearchParams(window.location.search);
  if (params.get("as") && params.get("org")) {
    const query = new URLSearchParams({ as: params.get("as"), org: params.get("org"),
      roles: params.get("roles") || "admin,member" });
    const resp = await fetch(`/app/session?${query}`);
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(await resp.json()));
  }
  session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  if (!session) { notice("error", "Sign in first: /app/crew?as=USER&org=ORG"); return; }
  document.getElementById("who").textContent = `${session.user_id} · ${session.org_id}`;
  const outcome = params.get("enterprise_connect");
  if (outcome === "connected") notice("success", "Enterprise Connect is authorized for your organization.");
  else if (outcome === "error") notice("error", OUTCOMES[params.get("reason")] || "Something went wrong.");
  await Promise.all([refresh(), showConflicts()]);
}

main().catch((error) => notice("error", error.message));

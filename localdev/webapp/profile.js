"use strict";
// The Calendar Integration section of the SolarNexus profile page (local stand-in, no build step).
// It calls the Calendar API on the same origin with the session JWT (Authorization: Bearer) and
// credentials: "include", since POST /v1/calendar/connect sets the cookie that binds the OAuth
// flow to this browser and the callback checks it.

const SESSION_KEY = "solarnexus.session";
const POLL_MS = 1000;
const PROVIDERS = [["google", "Google"], ["microsoft", "Microsoft"], ["apple", "Apple"]];
const STATE_LABELS = {
  not_connected: "Not connected",
  pending_calendar: "Choose a calendar",
  syncing: "Syncing",
  connected: "Connected",
  needs_reauth: "Sync stopped",
  disconnecting: "Disconnecting",
};
// The reasons the OAuth callback can send back (README, "How the connection works").
const REASONS = {
  access_denied: "You did not allow access to your calendar, so nothing was connected.",
  invalid_state: "The authorization could not be verified. Please start again.",
  state_expired: "The authorization took too long. Please start again.",
  state_used: "That authorization was already used. Please start again.",
  state_not_for_this_browser: "The authorization was started in another browser. Please start again here.",
  code_exchange_failed: "The calendar service did not accept the authorization. Please start again.",
  calendar_service_unavailable: "The calendar service is unavailable right now. Please try again later.",
  no_writable_calendar: "That account has no calendar SolarNexus can add events to, so nothing was connected.",
  already_connected: "A calendar is already connected. Disconnect it before connecting another one.",
  account_in_use: "That calendar account is already connected by another SolarNexus user. Each person connects their own calendar account.",
  internal_error: "Something went wrong. Please try again.",
};

let session = null;
let pollTimer = null;
let generation = 0; // bumped when the person takes over the panel (edit, confirm): stale polls are dropped
let lastState = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const panel = () => document.getElementById("calendar-panel");
const providerLabel = (value) => (PROVIDERS.find(([v]) => v === value) || [value, value || "—"])[1];
const formatTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || (body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error.code : null;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    credentials: "include",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiFailure(resp.status, data);
  return data;
}

function showNotice(kind, text, dismissible = true) {
  const box = document.getElementById("notice");
  box.replaceChildren(el("span", { id: "notice-text" }, text));
  if (dismissible) box.append(el("button", { type: "button", id: "ok", onclick: hideNotice }, "OK"));
  box.className = kind;
  box.hidden = false;
}

function hideNotice() {
  document.getElementById("notice").hidden = true;
}

function takeOver() {
  clearTimeout(pollTimer);
  generation += 1;
}

// ---- session (local development: /app/session mints a JWT the way SolarNexus sign-in would) ----

async function loadSession(params) {
  const as = params.get("as");
  const org = params.get("org");
  if (as && org) {
    const query = new URLSearchParams({ as, org });
    if (params.get("roles")) query.set("roles", params.get("roles"));
    const resp = await fetch(`/app/session?${query}`);
    if (!resp.ok) throw new ApiFailure(resp.status, await resp.json().catch(() => null));
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(await resp.json()));
  }
  const saved = sessionStorage.getItem(SESSION_KEY);
  return saved ? JSON.parse(saved) : null;
}

// ---- the panel, one view per connection state ----

function stateLine(state) {
  return el("p", {}, "Status: ",
    el("span", { class: "state", id: "connection-state", "data-state": state }, STATE_LABELS[state] || state));
}

function details(status) {
  const list = el("dl", { class: "details", id: "connection-details" });
  const row = (label, value, id) => list.append(el("dt", {}, label), el("dd", id ? { id } : {}, value ?? "—"));
  row("Calendar", status.calendar ? status.calendar.name : "Not chosen yet", "calendar-name");
  row("Account", status.profile_name, "profile-name");
  row("Provider", providerLabel(status.provider), "provider");
  if (status.connected_by === "enterprise_connect") row("Connected by", "your administrator", "connected-by");
  row("Connected", formatTime(status.connected_at));
  if (status.last_sync_at) row("Last synced", formatTime(status.last_sync_at), "last-sync");
  const backfill = status.backfill;
  if (status.state === "syncing" && backfill) {
    const progress = backfill.status === "pending"
      ? "Preparing…"
      : el("span", {}, el("progress", { max: Math.max(backfill.total, 1), value: backfill.done }),
        ` ${backfill.done} of ${backfill.total} milestones`);
    row("Progress", progress, "sync-progress");
  }
  if (status.last_error) row("Problem", el("span", { class: "warning" }, status.last_error), "last-error");
  return list;
}

function connectStart(label) {
  const box = el("div", { id: "connect-box" });
  const start = el("button", { type: "button", class: "primary", id: "connect" }, label);
  start.addEventListener("click", () => box.replaceChildren(providerForm(box, label)));
  box.append(
    el("p", {}, "Show your assigned, scheduled SolarNexus milestones (going back 30 days) on your Google, ",
      "Microsoft or Apple calendar, and let the scheduler see when you are busy."),
    el("div", { class: "actions" }, start));
  return box;
}

function providerForm(box, label) {
  const form = el("form", { id: "provider-form" });
  const choices = el("fieldset", { id: "provider-choices" }, el("legend", {}, "Select your calendar provider"));
  for (const [value, text] of PROVIDERS) {
    choices.append(el("label", { class: "choice" },
      el("input", { type: "radio", name: "provider", value, id: `provider-${value}`, checked: value === "google" }),
      ` ${text}`));
  }
  const next = el("button", { type: "submit", class: "primary", id: "continue" }, "Continue");
  const cancel = el("button", { type: "button", id: "cancel-connect" }, "Cancel");
  cancel.addEventListener("click", () => box.replaceWith(connectStart(label)));
  form.append(
    choices,
    el("p", { class: "muted" }, "You will be asked to allow access to your calendar. SolarNexus uses Cronofy, a ",
      "trusted calendar service, for this; neither sees your calendar password."),
    el("div", { class: "actions" }, next, cancel));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    next.disabled = true;
    try {
      const provider = new FormData(form).get("provider");
      const { authorization_url: url } = await api("POST", "/v1/calendar/connect", { provider });
      window.location.assign(url);
    } catch (error) {
      next.disabled = false;
      showNotice("error", error.message);
    }
  });
  return form;
}

async function picker(status, switching) {
  let calendars;
  try {
    calendars = (await api("GET", "/v1/calendar/calendars")).calendars;
  } catch (error) {
    return el("p", { class: "warning", id: "picker-error" }, error.message);
  }
  const form = el("form", { id: "calendar-picker" });
  const choices = el("fieldset", { id: "calendar-choices" }, el("legend", {}, "Calendar to connect"));
  const current = status.calendar ? status.calendar.id : null;
  for (const calendar of calendars) {
    choices.append(el("label", { class: "choice" },
      el("input", {
        type: "radio", name: "calendar_id", value: calendar.id, class: "calendar-choice",
        "data-name": calendar.name, checked: current ? calendar.id === current : calendar.primary,
      }),
      ` ${calendar.name}`, calendar.primary ? el("span", { class: "muted" }, " (primary)") : null));
  }
  const save = el("button", { type: "submit", class: "primary", id: "save" }, "Save");
  const actions = el("div", { class: "actions" }, save);
  if (switching) actions.append(el("button", { type: "button", id: "cancel-edit", onclick: refresh }, "Cancel"));
  form.append(
    el("p", {}, switching
      ? "Choose another calendar: every SolarNexus event moves to it."
      : "Select the calendar you want to connect and click Save."),
    choices, actions);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const calendarId = new FormData(form).get("calendar_id");
    if (!calendarId) {
      showNotice("error", "Choose a calendar first.");
      return;
    }
    save.disabled = true;
    try {
      const updated = await api("PUT", "/v1/calendar/connection", { calendar_id: calendarId });
      hideNotice();
      await show(updated);
    } catch (error) {
      save.disabled = false;
      showNotice("error", error.message);
    }
  });
  return form;
}

function disconnectButton(container) {
  return el("button", {
    type: "button", class: "danger", id: "disconnect", onclick: () => askDisconnect(container),
  }, "Disconnect My Calendar");
}

function askDisconnect(container) {
  if (document.getElementById("confirm-disconnect")) return;
  takeOver();
  const yes = el("button", { type: "button", class: "danger primary", id: "confirm-disconnect-yes" },
    "Disconnect and remove events");
  const no = el("button", { type: "button", id: "confirm-disconnect-no", onclick: refresh }, "Cancel");
  const box = el("div", { class: "confirm", id: "confirm-disconnect", role: "alertdialog" },
    el("p", {}, "All SolarNexus events will be removed from your calendar. You can connect it again later."),
    el("div", { class: "actions" }, yes, no));
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      await show(await api("DELETE", "/v1/calendar/connection"));
    } catch (error) {
      yes.disabled = false;
      showNotice("error", error.message);
    }
  });
  container.append(box);
}

async function render(status) {
  const state = status.state;
  const view = [stateLine(state)];
  const actions = el("div", { class: "actions" });
  const below = el("div", {}, actions);
  switch (state) {
    case "not_connected":
      view.push(connectStart("Connect SolarNexus to My Calendar"));
      break;
    case "pending_calendar":
      view.push(details(status), await picker(status, false));
      actions.append(disconnectButton(below));
      view.push(below);
      break;
    case "syncing":
    case "connected": {
      const edit = el("button", { type: "button", id: "edit" }, "Edit");
      edit.addEventListener("click", async () => {
        takeOver();
        panel().replaceChildren(stateLine(state), details(status), await picker(status, true));
      });
      actions.append(edit, disconnectButton(below));
      if (state === "syncing") {
        view.push(el("p", { class: "muted" }, "Your scheduled milestones are being added to this calendar. ",
          "This may take a minute or two."));
      }
      view.push(details(status), below);
      break;
    }
    case "needs_reauth":
      view.push(
        el("p", { class: "warning", id: "reauth-message" },
          "Your calendar stopped syncing. Connect it again to resume; SolarNexus events are restored."),
        details(status), connectStart("Connect My Calendar"));
      actions.append(disconnectButton(below));
      view.push(below);
      break;
    case "disconnecting":
      view.push(el("p", { id: "disconnecting-message" }, "Removing SolarNexus events from your calendar…"));
      break;
    default:
      view.push(el("p", {}, `Unknown state ${state}.`));
  }
  panel().replaceChildren(...view);
}

async function show(status) {
  clearTimeout(pollTimer);
  const gen = generation;
  if (lastState === "disconnecting" && status.state === "not_connected") {
    showNotice("success", "Your calendar is disconnected and SolarNexus events were removed from it.");
  }
  lastState = status.state;
  await render(status);
  if (gen === generation && (status.state === "syncing" || status.state === "disconnecting")) {
    pollTimer = setTimeout(refresh, POLL_MS);
  }
}

async function refresh() {
  takeOver();
  const gen = generation;
  let status;
  try {
    status = await api("GET", "/v1/calendar/connection");
  } catch (error) {
    if (gen === generation) panel().replaceChildren(el("p", { class: "warning", id: "load-error" }, error.message));
    return;
  }
  if (gen === generation) await show(status);
}

// ---- org admins: the team's sync health (GET /v1/orgs/{org_id}/calendar-health) ----

async function showHealth() {
  const section = document.getElementById("sync-health");
  if (!(session.roles || []).includes("admin")) return;
  section.hidden = false;
  const box = document.getElementById("health-panel");
  let health;
  try {
    health = await api("GET", `/v1/orgs/${encodeURIComponent(session.org_id)}/calendar-health`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "warning", id: "health-error" }, error.message));
    return;
  }
  const s = health.summary;
  const rows = health.members.map((m) => el("tr", { "data-user": m.user_id, class: m.stale ? "stale" : null },
    el("td", {}, m.user_id),
    el("td", {}, el("span", { class: "state", "data-state": m.state }, STATE_LABELS[m.state] || m.state)),
    el("td", {}, `${providerLabel(m.provider)}${m.calendar_name ? ` · ${m.calendar_name}` : ""}`),
    el("td", {}, formatTime(m.last_sync_at)),
    el("td", {}, m.last_error ? `${m.last_error.reason} (${formatTime(m.last_error.at)})` : "—"),
    el("td", {}, m.backfill ? `${m.backfill.done}/${m.backfill.total}` : "—"),
    el("td", {}, String(m.managed_events)),
    el("td", { class: "stale-flag" }, m.stale ? "Out of date" : "Current")));
  box.replaceChildren(
    el("p", { id: "health-summary" }, `${s.members} connected member(s): ${s.stale} out of date, `
      + `${s.needs_reauth} need to reconnect, ${s.with_errors} with errors.`),
    el("table", { class: "health", id: "health-table" },
      el("thead", {}, el("tr", {}, ...["Member", "Status", "Calendar", "Last sync", "Last error", "Backfill",
        "Events", "Busy data"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)),
    el("div", { class: "actions" }, el("button", { type: "button", id: "health-refresh", onclick: showHealth },
      "Refresh")));
}

function showOutcome(params) {
  const outcome = params.get("calendar_sync");
  if (outcome === "connected") {
    showNotice("success", "Authentication successful. Your calendar is connected.");
  } else if (outcome === "choose_calendar") {
    showNotice("success", "Authentication successful. Select the calendar you want to connect and click Save.",
      false);
  } else if (outcome === "error") {
    const reason = params.get("reason") || "unknown";
    showNotice("error", REASONS[reason] || `Your calendar could not be connected (${reason}).`);
  }
}

async function main() {
  const params = new URLSearchParams(window.location.search);
  try {
    session = await loadSession(params);
  } catch (error) {
    panel().replaceChildren(el("p", { class: "warning" }, `Could not sign in: ${error.message}`));
    return;
  }
  if (!session) {
    panel().replaceChildren(el("p", { id: "no-session" }, "No session. Open ",
      el("code", {}, "/app/profile?as=USER_ID&org=ORG_ID"), " to sign in as a SolarNexus user (local only)."));
    return;
  }
  document.getElementById("who").textContent = `Signed in as ${session.user_id} (${session.org_id})`;
  showOutcome(params);
  // The outcome is shown once; a reload shows the current state only.
  if (window.location.search) window.history.replaceState(null, "", window.location.pathname);
  await refresh();
  await showHealth();
}

document.addEventListener("DOMContentLoaded", main);

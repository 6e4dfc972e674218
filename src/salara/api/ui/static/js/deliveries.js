// Deliveries: per webhook endpoint, the events not delivered (pending, failed, dead) with every attempt;
// retry one, or replay every event since a time. Needs the admin right; reads /v1/webhooks.
import { can, problem, request } from "./api.js";
import { $, badge, clock, el, fill } from "./dom.js";

// A delivery's states as GET /v1/webhooks/{name}/deliveries filters them, and the count of each in the endpoint's counts.
const STATUSES = [
  ["", "every state", null],
  ["pending", "pending", "pending"],
  ["ready", "waiting for a retry", "retrying"],
  ["sending", "being sent", "sending"],
  ["dead", "dead", "dead"],
  ["delivered", "delivered", "delivered"],
];
const wanted = {};

function attempts(list) {
  if (!list || list.length === 0) return el("span", { class: "muted" }, "not tried yet");
  return el(
    "ol",
    { class: "attempts" },
    list.map((a) =>
      el(
        "li",
        {},
        `${clock(a.at)} `,
        badge(a.http_status ? String(a.http_status) : "error"),
        a.latency_ms === null || a.latency_ms === undefined ? "" : ` ${a.latency_ms} ms`,
        a.error ? el("div", { class: "muted" }, a.error) : "",
        a.answer ? el("div", { class: "answer" }, a.answer) : "",
      ),
    ),
  );
}

async function retry(endpoint, delivery, button, note) {
  button.disabled = true;
  const id = delivery.event_id ?? delivery.id;
  const answer = await request(
    `/v1/webhooks/${encodeURIComponent(endpoint)}/deliveries/${encodeURIComponent(id)}/retry`,
    { method: "POST" },
  );
  fill(note, answer.status < 300 ? "queued again" : problem(answer));
  button.disabled = answer.status < 300;
}

function deliveryRow(endpoint, delivery) {
  const note = el("div", { class: "muted" });
  const cell = el("td", { class: "actions" });
  if (can("admin")) {
    const button = el("button", { type: "button", class: "secondary", "data-action": "replay" }, "Replay");
    button.addEventListener("click", () => retry(endpoint, delivery, button, note));
    cell.append(button);
  }
  cell.append(note);
  return el(
    "tr",
    { "data-delivery": delivery.id },
    el("td", { class: "num" }, String(delivery.id)),
    el("td", {}, delivery.type ?? ""),
    el("td", {}, delivery.call_id ?? ""),
    el("td", {}, badge(delivery.status)),
    el("td", {}, attempts(delivery.attempts)),
    cell,
  );
}

async function loadDeliveries(endpoint, table, after = null) {
  const status = wanted[endpoint] || "";
  const query = new URLSearchParams({ limit: "100" });
  if (status) query.set("status", status);
  if (after !== null) query.set("after", String(after));
  const answer = await request(`/v1/webhooks/${encodeURIComponent(endpoint)}/deliveries?${query}`);
  const body = table.querySelector("tbody");
  if (after === null) fill(body);
  table.querySelector("tfoot")?.remove();
  if (answer.status !== 200) {
    fill(body, el("tr", {}, el("td", { colspan: 6, class: "error" }, problem(answer))));
    return;
  }
  body.append(...answer.body.deliveries.map((d) => deliveryRow(endpoint, d)));
  if (answer.body.next !== null && answer.body.next !== undefined) {
    const more = el("button", { type: "button", class: "secondary" }, "More");
    more.addEventListener("click", () => loadDeliveries(endpoint, table, answer.body.next));
    table.append(el("tfoot", {}, el("tr", {}, el("td", { colspan: 6 }, more))));
  }
}

function replaySince(endpoint) {
  const input = el("input", { type: "datetime-local", "aria-label": "since" });
  const note = el("span", { class: "muted" });
  const form = el("form", { class: "filter" }, el("label", {}, "Replay every event since"), input);
  if (can("admin")) {
    form.append(el("button", { type: "submit", "data-action": "replay-since" }, "Replay since"));
  }
  form.append(note);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.value) return;
    const since = new Date(input.value).toISOString();
    const answer = await request(`/v1/webhooks/${encodeURIComponent(endpoint)}/replay`, { method: "POST", body: { since } });
    fill(note, answer.status < 300 ? "replay queued" : problem(answer));
  });
  return form;
}

function endpointBox(endpoint) {
  const counts = endpoint.counts || {};
  const table = el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ["Id", "Type", "Call", "Status", "Attempts", ""].map((h) => el("th", {}, h)))),
    el("tbody"),
  );
  const choice = el(
    "select",
    { "aria-label": "status" },
    STATUSES.map(([value, label, key]) =>
      el(
        "option",
        { value, selected: (wanted[endpoint.name] || "") === value },
        key === null ? label : `${label} (${counts[key] ?? 0})`,
      ),
    ),
  );
  choice.addEventListener("change", () => {
    wanted[endpoint.name] = choice.value;
    loadDeliveries(endpoint.name, table);
  });
  const box = el(
    "div",
    { class: "endpoint", "data-endpoint": endpoint.name },
    el("h3", {}, endpoint.name, " ", el("span", { class: "muted" }, endpoint.url ?? "")),
    el(
      "p",
      { class: "muted" },
      endpoint.enabled ? "enabled" : `disabled (${endpoint.disabled_reason ?? "410 Gone"})`,
      `; events: ${(endpoint.events || []).join(", ") || "all"}; payload: ${endpoint.payload ?? "-"}`,
    ),
    el("div", { class: "filter" }, el("label", {}, "Show"), choice),
    table,
    replaySince(endpoint.name),
  );
  loadDeliveries(endpoint.name, table);
  return box;
}

async function load() {
  const answer = await request("/v1/webhooks");
  if (answer.status !== 200) {
    fill($("#deliveries-body"), el("p", { class: "error" }, problem(answer)));
    return;
  }
  const endpoints = answer.body.webhooks;
  fill($("#deliveries-body"), endpoints.length ? endpoints.map(endpointBox) : el("p", { class: "empty" }, "No webhook endpoint configured."));
}

export function show() {
  load();
}

export function hide() {}

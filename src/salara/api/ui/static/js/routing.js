// Routing: the last decisions (caller, CRM answer, each candidate with its state) and the CRM circuit breaker.
import { problem, request } from "./api.js";
import { $, badge, clock, el, fill } from "./dom.js";

let timer = null;

function crm(answer) {
  const parts = [];
  if (answer.exten) parts.push(el("div", {}, `${answer.source}: ${answer.exten}`));
  if (answer.caller_name) parts.push(el("div", { class: "crm-name" }, `name: ${answer.caller_name}`));
  if (answer.error) parts.push(el("div", { class: "muted crm-error" }, answer.error));
  return parts.length ? parts : "-";
}

function candidates(list) {
  return el(
    "ul",
    { class: "candidates" },
    list.map((c) =>
      el(
        "li",
        { "data-exten": c.exten, "data-verdict": c.verdict },
        `${c.exten} (${c.source}) `,
        c.state_text === null ? el("span", { class: "muted" }, "state unknown ") : `${c.state_text} `,
        badge(c.verdict),
      ),
    ),
  );
}

function row(decision) {
  return el(
    "tr",
    { "data-decision": decision.id, "data-call-id": decision.call_id ?? "" },
    el("td", { class: "num" }, clock(decision.at)),
    el("td", { class: "caller" }, decision.caller || "(withheld)"),
    el("td", {}, crm(decision.crm)),
    el("td", {}, candidates(decision.candidates)),
    el("td", { class: "destination" }, decision.destination ?? "(stays)"),
    el("td", {}, badge(decision.source)),
    el("td", { class: "num" }, `${decision.elapsed_ms.toFixed(1)} ms`),
  );
}

function breaker(state) {
  if (!state) return "This salara routes no calls (no FastAGI router).";
  const words = [`CRM circuit breaker: `, badge(state.state), ` ${state.consecutive_failures} of ${state.failures_to_open} failures in a row`];
  if (state.retry_in_s !== null) words.push(`; a trial lookup in ${state.retry_in_s.toFixed(0)} s`);
  return words;
}

async function load() {
  const answer = await request("/v1/routing/decisions?limit=200");
  if (answer.status !== 200) {
    fill($("#breaker"), el("span", { class: "error" }, problem(answer)));
    return;
  }
  fill($("#breaker"), breaker(answer.body.breaker));
  fill($("#routing-table tbody"), answer.body.decisions.map(row));
  $("#routing-empty").hidden = answer.body.decisions.length > 0;
}

export function show() {
  load();
  timer = setInterval(load, 3000);
}

export function hide() {
  clearInterval(timer);
}

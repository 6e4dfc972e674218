// Recent calls: the ended calls salara keeps, with their outcome; filter by number.
import { problem, request } from "./api.js";
import { $, badge, clock, duration, el, fill } from "./dom.js";

let timer = null;

function row(call) {
  const outcome = call.outcome || {};
  return el(
    "tr",
    { "data-call-id": call.id },
    el("td", { class: "num" }, clock(call.created_at)),
    el("td", { class: "from" }, call.from ?? "-"),
    el("td", { class: "to" }, call.to ?? "-"),
    el("td", { class: "caller-name" }, call.caller_name ?? ""),
    el("td", { class: "outcome" }, badge(outcome.result)),
    el("td", { class: "reason" }, outcome.reason ?? ""),
    el("td", { class: "num" }, duration(call.duration_s)),
    el("td", { class: "num" }, duration(call.talk_s)),
  );
}

async function load() {
  const number = $("#recent-number").value.trim();
  const query = number ? `?number=${encodeURIComponent(number)}` : "";
  const answer = await request(`/ui/api/calls/recent${query}`);
  if (answer.status !== 200) {
    fill($("#recent-table tbody"), el("tr", {}, el("td", { colspan: 8, class: "error" }, problem(answer))));
    return;
  }
  fill($("#recent-table tbody"), answer.body.calls.map(row));
  $("#recent-empty").hidden = answer.body.calls.length > 0;
}

export function show() {
  $("#recent-filter").onsubmit = (event) => {
    event.preventDefault();
    load();
  };
  load();
  timer = setInterval(load, 3000);
}

export function hide() {
  clearInterval(timer);
}

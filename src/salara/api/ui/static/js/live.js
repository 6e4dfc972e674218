// Live calls: the server sends the active calls on every change (Server-Sent Events).
import { can, problem, request } from "./api.js";
import { $, badge, clock, duration, el, fill } from "./dom.js";

let source = null;
let ticker = null;
let retry = null;
let calls = [];
let transferring = null;

function since(iso) {
  return (Date.now() - new Date(iso).getTime()) / 1000;
}

function callerName(call) {
  const named = call.channels.find((c) => c.caller_name);
  return named ? named.caller_name : "";
}

async function hangUp(call, button) {
  button.disabled = true;
  const answer = await request(`/v1/calls/${encodeURIComponent(call.id)}`, { method: "DELETE" });
  if (answer.status !== 204) {
    button.disabled = false;
    fill($("#live-status"), `hang up refused: ${problem(answer)}`);
  }
}

function openTransfer(call) {
  transferring = call.id;
  fill($("#transfer-call"), call.id);
  fill($("#transfer-error"));
  $("#transfer-to").value = "";
  $("#transfer-context").value = "";
  $("#transfer-dialog").showModal();
}

async function transfer(event) {
  event.preventDefault();
  const body = { to: $("#transfer-to").value.trim() };
  const context = $("#transfer-context").value.trim();
  if (context) body.context = context;
  const answer = await request(`/v1/calls/${encodeURIComponent(transferring)}/transfer`, { method: "POST", body });
  if (answer.status === 202) $("#transfer-dialog").close();
  else fill($("#transfer-error"), problem(answer));
}

function row(call) {
  const actions = el("td", { class: "actions" });
  if (can("call")) {
    const hang = el("button", { type: "button", class: "danger", "data-action": "hangup" }, "Hang up");
    hang.addEventListener("click", () => hangUp(call, hang));
    const move = el("button", { type: "button", class: "secondary", "data-action": "transfer" }, "Transfer");
    move.addEventListener("click", () => openTransfer(call));
    actions.append(hang, move);
  }
  const channels = el("ul", { class: "candidates" }, call.channels.map((c) => el("li", {}, `${c.name} `, badge(c.state))));
  return el(
    "tr",
    { "data-call-id": call.id },
    el("td", { class: "num" }, clock(call.created_at)),
    el("td", { class: "from" }, call.from ?? "-"),
    el("td", { class: "to" }, call.to ?? "-"),
    el("td", { class: "caller-name" }, callerName(call)),
    el("td", {}, badge(call.state)),
    el("td", { class: "num duration", "data-since": call.answered_at || call.created_at }, duration(since(call.answered_at || call.created_at))),
    el("td", {}, channels),
    actions,
  );
}

function render() {
  fill($("#live-table tbody"), calls.map(row));
  $("#live-empty").hidden = calls.length > 0;
  $("#live-table .actions-head").hidden = !can("call");
}

function tick() {
  for (const cell of document.querySelectorAll("#live-table td.duration")) {
    cell.textContent = duration(since(cell.dataset.since));
  }
}

function connect() {
  source = new EventSource("/ui/api/calls/live");
  source.addEventListener("calls", (event) => {
    const data = JSON.parse(event.data);
    calls = data.calls;
    fill($("#live-status"), data.ami ? "live" : "AMI not connected");
    render();
  });
  source.addEventListener("error", () => {
    fill($("#live-status"), "reconnecting...");
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      retry = setTimeout(connect, 3000);
    }
  });
}

export function show() {
  $("#transfer-form").onsubmit = transfer;
  $("#transfer-cancel").onclick = () => $("#transfer-dialog").close();
  render();
  connect();
  ticker = setInterval(tick, 1000);
}

export function hide() {
  if (source) source.close();
  source = null;
  clearInterval(ticker);
  clearTimeout(retry);
}

// The console: sign-in, then one view at a time (#live, #recent, ...), as the token's rights allow.
import { can, problem, request, session, take, whenSignedOut } from "./api.js";
import { $, fill } from "./dom.js";
import * as deliveries from "./deliveries.js";
import * as health from "./health.js";
import * as live from "./live.js";
import * as recent from "./recent.js";
import * as routing from "./routing.js";

const VIEWS = { live, recent, deliveries, routing, health };
const RIGHT = { live: "state", recent: "state", routing: "state", health: "state", deliveries: "admin" };
let current = null;

function allowed(name) {
  return name in VIEWS && can(RIGHT[name]);
}

function showView() {
  let name = location.hash.replace(/^#/, "");
  if (!allowed(name)) name = Object.keys(VIEWS).find(allowed) || null;
  if (current && current !== name) {
    VIEWS[current].hide();
    $(`#view-${current}`).hidden = true;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    link.hidden = !allowed(link.dataset.view);
    link.classList.toggle("current", link.dataset.view === name);
  }
  if (name && current !== name) {
    $(`#view-${name}`).hidden = false;
    VIEWS[name].show();
  }
  current = name;
}

function signedIn(who) {
  take(who);
  $("#sign-in").hidden = true;
  $("#nav").hidden = false;
  fill($("#who"), session.tokens ? `${session.name} (${session.rights.join(", ")})` : "loopback (no token configured)");
  $("#sign-out").hidden = !session.tokens;
  showView();
}

function signedOut() {
  if (current) {
    VIEWS[current].hide();
    $(`#view-${current}`).hidden = true;
    current = null;
  }
  $("#nav").hidden = true;
  $("#sign-out").hidden = true;
  fill($("#who"));
  $("#sign-in").hidden = false;
  $("#token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const answer = await request("/ui/api/session", { method: "POST", body: { token: $("#token").value.trim() } });
  $("#token").value = "";
  if (answer.status === 200) {
    fill($("#sign-in-error"));
    signedIn(answer.body);
  } else {
    fill($("#sign-in-error"), problem(answer));
  }
}

async function signOut() {
  await request("/ui/api/session", { method: "DELETE" });
  take({ name: null, rights: [], csrf: null, tokens: true });
  signedOut();
}

async function start() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", showView);
  whenSignedOut(signedOut);
  const answer = await request("/ui/api/session");
  if (answer.status === 200) signedIn(answer.body);
  else signedOut();
}

start();

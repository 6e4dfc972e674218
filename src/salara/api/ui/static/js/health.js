// Health: AMI, Asterisk, the outbox, the breaker, and CRM latency over the last hour as small SVG charts.
import { problem, request } from "./api.js";
import { $, badge, clock, duration, el, fill, svg } from "./dom.js";

let timer = null;
const WIDTH = 480;
const HEIGHT = 160;
const PAD = { left: 48, right: 10, top: 10, bottom: 24 };

function fact(name, ...value) {
  return [el("dt", {}, name), el("dd", {}, ...value)];
}

function chart(title, points, now) {
  const box = el("div", { class: "chart", "data-series": title });
  box.append(el("h4", {}, title));
  const plot = svg("svg", { width: WIDTH, height: HEIGHT, viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img" });
  const start = now - 3600;
  const top = Math.max(1, ...points.map((p) => p.max_ms));
  const x = (t) => PAD.left + ((t - start) / 3600) * (WIDTH - PAD.left - PAD.right);
  const y = (ms) => HEIGHT - PAD.bottom - (ms / top) * (HEIGHT - PAD.top - PAD.bottom);
  for (const fraction of [0, 0.5, 1]) {
    const ms = top * fraction;
    plot.append(svg("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(ms), y2: y(ms) }));
    plot.append(svg("text", { x: 4, y: y(ms) + 4 }, `${ms.toFixed(ms < 10 ? 1 : 0)} ms`));
  }
  plot.append(svg("line", { class: "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: HEIGHT - PAD.bottom, y2: HEIGHT - PAD.bottom }));
  for (const minutes of [60, 30, 0]) {
    plot.append(svg("text", { x: x(now - minutes * 60) - 14, y: HEIGHT - 6 }, minutes ? `-${minutes} min` : "now"));
  }
  if (points.length === 0) {
    plot.append(svg("text", { x: WIDTH / 2 - 40, y: HEIGHT / 2 }, "nothing measured"));
  } else {
    const line = (key) => points.map((p) => `${x(p.at + 30).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    plot.append(svg("polyline", { class: "max", points: line("max_ms") }));
    plot.append(svg("polyline", { class: "mean", points: line("mean_ms") }));
    for (const p of points) {
      plot.append(svg("circle", { cx: x(p.at + 30), cy: y(p.mean_ms), r: 2.5, fill: "#2457c5" }, svg("title", {}, `${clock(p.at)}: ${p.count} x, mean ${p.mean_ms} ms, max ${p.max_ms} ms`)));
    }
  }
  box.append(plot);
  const count = points.reduce((sum, p) => sum + p.count, 0);
  box.append(el("div", { class: "muted" }, `${count} in the last hour; solid: mean, dashed: maximum`));
  return box;
}

async function load() {
  const answer = await request("/ui/api/health");
  if (answer.status !== 200) {
    fill($("#health-list"), el("dd", { class: "error" }, problem(answer)));
    return;
  }
  const h = answer.body;
  const outbox = h.outbox;
  const breaker = h.breaker;
  fill(
    $("#health-list"),
    fact("AMI", badge(h.ami.ready ? "ok" : "bad"), ` ${h.ami.ready ? "connected to" : "not connected to"} ${h.ami.host}:${h.ami.port}`),
    fact("AMI last error", h.ami.last_error ?? "none"),
    fact("AMI logins / disconnects", `${h.ami.logins} / ${h.ami.disconnects}`),
    ...h.pbxs.map((p) =>
      fact(`PBX ${p.name}`, badge(p.ready ? "ok" : "bad"), ` ${p.ready ? "connected to" : "not connected to"} ${p.host}:${p.port}${p.last_error ? `: ${p.last_error}` : ""}`),
    ),
    fact("Asterisk", h.asterisk_version ?? "unknown"),
    fact("Active calls", String(h.calls_active)),
    fact("Outbox depth", outbox ? String(outbox.depth ?? outbox.error) : "no outbox (no [url] dest_url_event)"),
    fact("Oldest pending event", outbox && outbox.oldest_pending_age_s !== null ? duration(outbox.oldest_pending_age_s) : "-"),
    fact("CRM circuit breaker", breaker ? [badge(breaker.state), ` ${breaker.consecutive_failures} of ${breaker.failures_to_open} failures`] : "no routing"),
  );
  fill($("#latency-charts"), chart("CRM lookup", h.latency.lookup, h.at), chart("Webhook delivery", h.latency.delivery, h.at));
}

export function show() {
  load();
  timer = setInterval(load, 5000);
}

export function hide() {
  clearInterval(timer);
}

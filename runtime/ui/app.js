// chutebox status page and playground: plain DOM, no framework, nothing loaded from elsewhere.
// The key a user gives stays in this tab's sessionStorage and travels only in request headers.
"use strict";

const KEY = "chutebox-key";
const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);

function apiKey() { return sessionStorage.getItem(KEY) || ""; }
function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: "Bearer " + key } : {};
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function defs(pairs) {
  const dl = el("dl");
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    dl.append(el("dt", name), el("dd", value));
  }
  return dl;
}

function trafficText(t) {
  if (!t) return null;
  const ttft = t.ttft_p50_ms === null ? "–" : t.ttft_p50_ms + " ms";
  return `${t.requests_per_s} req/s · ${t.tokens_per_s} tok/s · TTFT p50 ${ttft} · ` +
    `429s ${t.rejected_429} (last ${t.window_s}s)`;
}

function routingText(r) {
  if (!r) return null;
  const routed = Object.entries(r.routed).map(([i, n]) => `#${i} ${n}`).join(", ");
  let text = `${r.policy} · ${r.affinity_hits} affinity hits`;
  if (Object.keys(r.engine_blocks).length) text += ` (${r.exact_hits} from engine KV events)`;
  text += ` · ${r.spills} spills · ${r.tracked_blocks} blocks tracked`;
  return routed ? `${text} · routed ${routed}` : text;
}

function replicaItem(r) {
  const parts = [`#${r.index}`, r.state];
  if (r.url) parts.push(`at ${r.url}`);
  else if (r.gpus !== undefined) parts.push(r.gpus === "cpu" ? "CPU" : `GPUs ${r.gpus}`);
  if (r.nodes > 1) parts.push(`${r.nodes} nodes`);
  if (r.tensor_parallel !== undefined && !r.url) parts.push(`TP×PP ${r.tensor_parallel}×${r.pipeline_parallel}`);
  if (r.outstanding !== undefined) parts.push(`${r.outstanding} in flight`);
  if (r.restarts) parts.push(`restarts ${r.restarts}`);
  const item = el("li", parts.join(" · "));
  item.dataset.state = r.state;
  if (r.detail) item.append(el("div", r.detail, "muted"));
  return item;
}

function chuteCard(c) {
  const card = el("article", null, "card");
  card.dataset.chute = c.name;
  card.setAttribute("aria-label", "chute " + c.name);
  const title = el("h3", c.name + " ");
  title.append(el("span", c.state, "state " + c.state));
  card.append(title);
  const rows = [["engine", c.engine]];
  if (c.model !== undefined) {
    rows.push(["model", c.model + (c.revision ? "@" + c.revision.slice(0, 12) : "")]);
    if (c.cords) rows.push(["cords", c.cords.map((x) => `${x.method} ${x.url}`).join(", ")]);
    else rows.push(["routes", (c.routes || []).join(", ")]);
    const k = c.concurrency;
    rows.push(["concurrency", `${k.in_use} / ${k.limit} in use · ${k.queued} queued`]);
    rows.push(["traffic", trafficText(c.traffic)]);
    if (!c.cords) rows.push(["routing", routingText(c.routing)]);  // cords are not routed by prompt
    const p = c.price_per_million;
    if (p.prompt || p.completion) rows.push(["price / 1M", `${p.prompt} in · ${p.completion} out`]);
    rows.push(["detail", c.detail]);
  }
  card.append(defs(rows));
  const replicas = el("ul");
  replicas.setAttribute("aria-label", "replicas");
  c.replicas.forEach((r) => replicas.append(replicaItem(r)));
  card.append(el("div", "replicas", "muted"), replicas);
  if (c.plan && c.plan.length) {
    const plan = el("ul");
    plan.setAttribute("aria-label", "plan");
    c.plan.forEach((reason) => plan.append(el("li", reason)));
    card.append(el("div", "plan", "muted"), plan);
  }
  return card;
}

function fillSelect(select, names) {
  const current = [...select.options].map((o) => o.value).join("\n");
  if (current === names.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
  if (names.includes(chosen)) select.value = chosen;
}

function serving(doc, route) {
  return doc.chutes.filter((c) => (c.routes || []).includes(route)).map((c) => c.name);
}

function render(doc) {
  $("version").textContent = "v" + doc.version;
  const overall = $("overall");
  overall.textContent = doc.status.replace("_", " ");
  overall.className = "pill " + doc.status;
  $("chutes").replaceChildren(...doc.chutes.map(chuteCard));
  $("key-note").textContent = doc.full
    ? "Full view: models, plan, concurrency and traffic."
    : "Public view: names and states. Give a key to see the rest and to use the playground.";
  const chat = serving(doc, "/v1/chat/completions");
  fillSelect($("chat-model"), chat);
  $("chat-form").hidden = doc.full && chat.length === 0;  // the full view knows there is none
  const embed = serving(doc, "/v1/embeddings");
  const image = serving(doc, "/v1/images/generations");
  fillSelect($("embed-model"), embed);
  fillSelect($("image-model"), image);
  $("embed-form").hidden = embed.length === 0;
  $("image-form").hidden = image.length === 0;
  renderCords(doc);
  renderUsage(doc.usage);
}

// Tokens (prompt + output) per minute for each key and chute, drawn as lines over the hour.
const COLORS = ["#3d63dd", "#1f7a3f", "#a86400", "#b3261e", "#7b3fc4", "#0b7f8a"];

function svg(tag, attrs) {
  // The chart's own namespace: the page's <svg> element was parsed into it.
  const node = document.createElementNS($("usage-chart").namespaceURI, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function usageLines(usage) {
  const lines = new Map();
  for (const row of usage.series) {
    const name = `${row.key} · ${row.chute}`;
    if (!lines.has(name)) {
      lines.set(name, { key: row.key, chute: row.chute, points: new Map(),
                        requests: 0, input: 0, output: 0, cached: 0 });
    }
    const line = lines.get(name);
    line.points.set(row.minute, row.input_tokens + row.output_tokens);
    line.requests += row.requests;
    line.input += row.input_tokens;
    line.output += row.output_tokens;
    line.cached += row.cached_tokens;
  }
  return [...lines.values()];
}

function renderUsage(usage) {
  const panel = $("usage");
  panel.hidden = !usage || usage.series.length === 0;
  if (panel.hidden) return;
  const lines = usageLines(usage);
  const now = Math.floor(Date.now() / 60000) * 60;
  const first = now - (usage.minutes - 1) * 60;
  const top = Math.max(1, ...lines.flatMap((l) => [...l.points.values()]));
  const [w, h, left, bottom] = [640, 180, 48, 20];
  const x = (minute) => left + ((minute - first) / 60) * ((w - left - 8) / (usage.minutes - 1));
  const y = (tokens) => 8 + (1 - tokens / top) * (h - bottom - 8);
  const chart = $("usage-chart");
  const parts = [
    svg("line", { x1: left, y1: y(0), x2: w - 8, y2: y(0), stroke: "#d7dce5" }),
    svg("text", { x: left - 6, y: y(top) + 4, "text-anchor": "end" }),
    svg("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end" }),
    svg("text", { x: left, y: h - 4 }),
    svg("text", { x: w - 8, y: h - 4, "text-anchor": "end" }),
  ];
  parts[1].textContent = String(top);
  parts[2].textContent = "0";
  parts[3].textContent = `${usage.minutes} min ago`;
  parts[4].textContent = "now";
  lines.forEach((line, i) => {
    const points = [];
    for (let minute = first; minute <= now; minute += 60) {
      points.push(`${x(minute).toFixed(1)},${y(line.points.get(minute) || 0).toFixed(1)}`);
    }
    const color = COLORS[i % COLORS.length];
    const path = svg("polyline", { points: points.join(" "), fill: "none", stroke: color,
                                   "stroke-width": 2 });
    const title = svg("title", {});
    title.textContent = `${line.key} · ${line.chute}`;
    path.append(title);
    parts.push(path);
  });
  chart.replaceChildren(...parts);
  $("usage-table").tBodies[0].replaceChildren(...lines.map((line, i) => {
    const row = el("tr");
    const key = el("td");
    const swatch = el("span", "", "swatch");
    swatch.style.background = COLORS[i % COLORS.length];
    key.append(swatch, line.key);
    row.append(key, el("td", line.chute), el("td", String(line.requests)),
               el("td", String(line.input)), el("td", String(line.output)),
               el("td", String(line.cached)));
    return row;
  }));
}

// A custom chute's cords: one form, its fields built from the chosen cord's body schema.
let cords = new Map();

function renderCords(doc) {
  cords = new Map();
  for (const c of doc.chutes) {
    for (const cord of c.cords || []) cords.set(`${cord.method} ${cord.url}`, cord);
  }
  const select = $("cord-choice");
  const before = select.value;
  fillSelect(select, [...cords.keys()]);
  $("cord-form").hidden = cords.size === 0;
  if (select.value !== before || !$("cord-fields").childElementCount) cordFields();
}

function cordFields() {
  const cord = cords.get($("cord-choice").value);
  const schema = (cord && cord.body_schema) || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) => {
    const id = "cord-field-" + name;
    const label = el("label", name + (required.has(name) ? " *" : ""));
    label.htmlFor = id;
    const input = el("input");
    input.id = id;
    input.name = name;
    input.dataset.type = prop.type || "string";
    if (prop.type === "boolean") input.type = "checkbox";
    else if (prop.type === "integer" || prop.type === "number") {
      input.type = "number";
      input.step = prop.type === "integer" ? "1" : "any";
    } else input.type = "text";
    if (prop.default !== undefined && prop.default !== null) {
      if (prop.type === "boolean") input.checked = prop.default;
      else input.value = String(prop.default);
    }
    if (prop.description) input.title = prop.description;
    const row = el("div", null, "field");
    row.append(label, input);
    return row;
  });
  $("cord-fields").replaceChildren(...fields);
}

function cordBody() {
  const body = {};
  for (const input of $("cord-fields").querySelectorAll("input")) {
    const type = input.dataset.type;
    if (type === "boolean") body[input.name] = input.checked;
    else if (input.value === "") continue;
    else if (type === "integer" || type === "number") body[input.name] = Number(input.value);
    else body[input.name] = input.value;
  }
  return body;
}

async function callCord(event) {
  event.preventDefault();
  const cord = cords.get($("cord-choice").value);
  if (!cord) return;
  const output = $("cord-output");
  const state = $("cord-state");
  $("cord-image").hidden = $("cord-audio").hidden = true;
  output.textContent = "";
  state.textContent = "calling…";
  const init = { method: cord.method, headers: { "Content-Type": "application/json", ...authHeaders() } };
  if (cord.method !== "GET") init.body = JSON.stringify(cordBody());
  const reply = await fetch(cord.url, init);
  const type = reply.headers.get("content-type") || "";
  if (type.startsWith("image/") || type.startsWith("audio/")) {
    const url = URL.createObjectURL(await reply.blob());
    const media = type.startsWith("image/") ? $("cord-image") : $("cord-audio");
    media.src = url;
    media.hidden = false;
  } else if (type.includes("json")) {
    output.textContent = JSON.stringify(await reply.json(), null, 2);
  } else {
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      output.textContent += decoder.decode(value, { stream: true });
    }
  }
  state.textContent = `${reply.status} ${type}`;
}

async function refresh() {
  try {
    const reply = await fetch("/status", { headers: authHeaders(), cache: "no-store" });
    render(await reply.json());
  } catch (err) {
    $("overall").textContent = "gateway unreachable";
    $("overall").className = "pill not_ready";
  }
}

async function errorText(reply) {
  try {
    const body = await reply.json();
    return (body.error && body.error.message) || JSON.stringify(body);
  } catch (err) {
    return "HTTP " + reply.status;
  }
}

async function postJSON(path, body, signal) {
  return fetch(path, {
    method: "POST", signal,
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify(body),
  });
}

// Reads an OpenAI SSE stream, calling `onDelta` with each piece of text as it arrives.
async function readStream(reply, onDelta) {
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) onDelta(choice.delta.content);
        }
      }
    }
  }
}

async function chat(event) {
  event.preventDefault();
  const output = $("chat-output");
  const state = $("chat-state");
  output.textContent = "";
  state.textContent = "waiting…";
  $("chat-send").disabled = true;
  try {
    const reply = await postJSON("/v1/chat/completions", {
      model: $("chat-model").value, stream: true, max_tokens: 128,
      messages: [{ role: "user", content: $("chat-input").value }],
    });
    if (!reply.ok) throw new Error(await errorText(reply));
    state.textContent = "streaming…";
    await readStream(reply, (text) => { output.textContent += text; });
    state.textContent = "done";
  } catch (err) {
    state.textContent = "error: " + err.message;
  } finally {
    $("chat-send").disabled = false;
  }
}

async function embed(event) {
  event.preventDefault();
  const output = $("embed-output");
  output.textContent = "…";
  const reply = await postJSON("/v1/embeddings", {
    model: $("embed-model").value, input: $("embed-input").value,
  });
  if (!reply.ok) { output.textContent = "error: " + await errorText(reply); return; }
  const vector = (await reply.json()).data[0].embedding;
  output.textContent = `${vector.length} dimensions: ` +
    vector.slice(0, 8).map((x) => x.toFixed(4)).join(", ") + ", …";
}

async function image(event) {
  event.preventDefault();
  const state = $("image-state");
  state.textContent = "generating…";
  const reply = await postJSON("/v1/images/generations", {
    model: $("image-model").value, prompt: $("image-input").value, response_format: "b64_json",
  });
  if (!reply.ok) { state.textContent = "error: " + await errorText(reply); return; }
  const data = (await reply.json()).data || [];
  if (!data.length) { state.textContent = "no image in the reply"; return; }
  $("image-output").src = "data:image/png;base64," + data[0].b64_json;
  $("image-output").hidden = false;
  state.textContent = "done";
}

function start() {
  $("key").value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    refresh();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("key").value = "";
    refresh();
  });
  $("chat-form").addEventListener("submit", chat);
  $("embed-form").addEventListener("submit", embed);
  $("image-form").addEventListener("submit", image);
  $("cord-choice").addEventListener("change", cordFields);
  $("cord-form").addEventListener("submit", callCord);
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);

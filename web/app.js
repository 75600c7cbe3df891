// sluice dashboard: sign in with a key, pick a metric, see its series (final windows drawn
// apart from open ones), updated live over /v1/live; a top-N table re-ranked as updates come.
// Plain ES module, no build step; the chart is uPlot (vendored, web/vendor/).

const KEY = "sluice.key";
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY), metrics: [], metric: null, answer: null,
  plot: null, socket: null, retry: 0, generation: 0 };

/// Shows what went wrong and what to do, in words.
function problem(text) {
  const box = $("problem");
  box.textContent = text || "";
  box.hidden = !text;
}

/// A request to the API with the key; refusals become messages a person can act on.
async function api(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Authorization: `Bearer ${state.key}` } });
  } catch (error) {
    throw new Error("sluice cannot be reached: check that it is running; this page retries by itself.");
  }
  const body = await response.json().catch(() => null);
  if (response.ok) return body;
  const said = body?.error?.message || response.statusText;
  if (response.status === 401) {
    signOut();
    throw new Error(`This key is not accepted (${said}). Sign in with a read key of your tenant.`);
  }
  if (response.status === 403) throw new Error(`This key may not read metrics: ${said}`);
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "a few";
    throw new Error(`Too many requests for this key: wait ${wait} s. (${said})`);
  }
  if (response.status === 503) throw new Error(`sluice is busy or starting: ${said}. Retrying shortly.`);
  throw new Error(`${response.status}: ${said}`);
}

function signOut() {
  sessionStorage.removeItem(KEY);
  state.key = null;
  state.socket?.close();
  show();
}

function show() {
  const signedIn = Boolean(state.key);
  $("sign-in").hidden = signedIn;
  $("explorer").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  if (!signedIn) $("key").focus();
}

async function loadMetrics() {
  const answer = await api("/v1/metrics");
  state.metrics = answer.metrics;
  const list = $("metrics");
  list.replaceChildren(...state.metrics.map((metric) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = metric.name;
    button.addEventListener("click", () => choose(metric.name));
    item.append(button);
    return item;
  }));
  if (!state.metrics.length) $("metric-name").textContent = "No metrics are defined yet.";
}

function choose(name) {
  state.metric = state.metrics.find((m) => m.name === name);
  for (const button of $("metrics").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(button.textContent === name));
  }
  $("metric-name").textContent = name;
  $("controls").hidden = false;
  const values = $("value");
  values.replaceChildren(...state.metric.values.map((value) => new Option(value.name, value.name)));
  refresh();
}

function query() {
  const params = new URLSearchParams({
    from: `now-${$("range").value}`, to: "now", resolution: $("resolution").value,
    top: $("top").value, by: $("value").value,
  });
  const filter = $("filter").value.trim();
  if (filter) params.append("filter", filter);
  return `/v1/metrics/${encodeURIComponent(state.metric.name)}?${params}`;
}

async function refresh() {
  if (!state.metric) return;
  const generation = ++state.generation;
  try {
    const answer = await api(query());
    if (generation !== state.generation) return;
    problem(null);
    state.answer = answer;
    draw();
    subscribe();
  } catch (error) {
    problem(error.message);
  }
}

/// The answer as uPlot's columns: x (seconds), then one series per key, and where the open
/// windows begin (they are shaded).
function columns(answer, value) {
  const column = answer.columns.indexOf(value);
  const starts = new Set();
  for (const series of answer.series) for (const point of series.points) starts.add(point[0]);
  const xs = [...starts].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  let openFrom = Infinity;
  const data = [xs.map((x) => x / 1000)];
  for (const series of answer.series) {
    const ys = new Array(xs.length).fill(null);
    for (const point of series.points) {
      ys[at.get(point[0])] = point[column];
      if (!point[2]) openFrom = Math.min(openFrom, point[0]);
    }
    data.push(ys);
  }
  return { data, openFrom };
}

function label(key) {
  const parts = Object.entries(key).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(", ") : "(all)";
}

const COLOURS = ["#1f5fa8", "#c0392b", "#1e8449", "#8e44ad", "#d35400", "#117a8b", "#7d6608",
  "#a93226", "#2e4053", "#b9770e"];

function draw() {
  const answer = state.answer;
  const value = $("value").value;
  const { data, openFrom } = columns(answer, value);
  const chart = $("chart");
  const points = data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null).length, 0);
  chart.dataset.points = String(points);
  chart.dataset.series = String(answer.series.length);
  const utc = $("utc").checked;
  const options = {
    width: Math.max(300, chart.clientWidth || 600), height: 320,
    tzDate: utc ? (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : (ts) => new Date(ts * 1000),
    series: [{}, ...answer.series.map((series, i) => ({
      label: label(series.key), stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
    }))],
    axes: [{}, { label: value }],
    hooks: { drawClear: [(u) => shadeOpen(u, openFrom / 1000)] },
  };
  state.plot?.destroy();
  state.plot = new uPlot(options, data, chart);
  $("legend").textContent = openFrom === Infinity
    ? "Every window shown is final."
    : "Shaded: open windows, which can still change.";
  topTable();
}

function shadeOpen(u, from) {
  if (!Number.isFinite(from)) return;
  const left = u.valToPos(from, "x", true);
  const ctx = u.ctx;
  ctx.save();
  ctx.fillStyle = "rgba(224, 123, 0, 0.12)";
  ctx.fillRect(left, u.bbox.top, u.bbox.left + u.bbox.width - left, u.bbox.height);
  ctx.restore();
}

/// The keys ranked by the chosen value summed over the range.
function topTable() {
  const answer = state.answer;
  const value = $("value").value;
  const column = answer.columns.indexOf(value);
  const rows = answer.series.map((series) => ({
    key: label(series.key),
    total: series.points.reduce((sum, p) => sum + (typeof p[column] === "number" ? p[column] : 0), 0),
  })).sort((a, b) => b.total - a.total);
  const table = $("top-table");
  table.hidden = rows.length === 0;
  $("top-value").textContent = `${value} (sum)`;
  table.tBodies[0].replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    const key = document.createElement("td");
    key.textContent = row.key;
    const total = document.createElement("td");
    total.className = "number";
    total.textContent = Number.isInteger(row.total) ? String(row.total) : row.total.toFixed(2);
    tr.append(key, total);
    return tr;
  }));
}

/// Live updates of the raw windows: each update replaces its window's point, or adds it.
function subscribe() {
  state.socket?.close();
  if ($("resolution").value !== "raw") return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/live?key=${encodeURIComponent(state.key)}`);
  state.socket = socket;
  const filter = $("filter").value.trim();
  socket.addEventListener("open", () => {
    state.retry = 0;
    socket.send(JSON.stringify({ type: "subscribe", id: "chart", metric: state.metric.name,
      filters: filter ? [filter] : [] }));
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "update") apply(message.windows);
    if (message.type === "error") problem(`Live updates: ${message.message}`);
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket || !state.key) return;
    if (event.code === 4001) {
      problem("This key was revoked: sign in with another key.");
      signOut();
      return;
    }
    const wait = Math.min(30, 2 ** state.retry++);
    problem(`Live updates stopped (${event.code}); reconnecting in ${wait} s.`);
    setTimeout(() => { if (state.socket === socket) refresh(); }, wait * 1000);
  });
}

function apply(windows) {
  const answer = state.answer;
  if (!answer) return;
  const from = Date.now() - { "1h": 3600e3, "24h": 86400e3, "7d": 604800e3 }[$("range").value];
  for (const window of windows) {
    if (window.start < from) continue;
    const name = JSON.stringify(window.key);
    let series = answer.series.find((s) => JSON.stringify(s.key) === name);
    if (!series) {
      series = { key: window.key, points: [] };
      answer.series.push(series);
    }
    const point = [window.start, window.end, window.final,
      ...answer.columns.slice(3).map((column) => window.values[column] ?? null)];
    const index = series.points.findIndex((p) => p[0] === window.start);
    if (index >= 0) series.points[index] = point;
    else series.points.push(point);
    series.points.sort((a, b) => a[0] - b[0]);
  }
  problem(null);
  draw();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = $("key").value.trim();
  try {
    await loadMetrics();
    sessionStorage.setItem(KEY, state.key);
    problem(null);
    show();
  } catch (error) {
    state.key = null;
    problem(error.message);
    show();
  }
});
$("sign-out").addEventListener("click", signOut);
for (const id of ["range", "resolution", "value", "top", "utc"]) {
  $(id).addEventListener("change", () => (id === "value" || id === "utc" ? state.answer && draw() : refresh()));
}
$("filter").addEventListener("change", refresh);
window.addEventListener("resize", () => state.answer && draw());

show();
if (state.key) loadMetrics().catch((error) => problem(error.message));

// sluice dashboard: sign in with a key, pick a metric, see its series (final windows drawn
// apart from open ones), updated live over /v1/live; a top-N table re-ranked as updates come.
// Plain ES module, no build step; the chart is uPlot (vendored, web/vendor/).

const KEY = "sluice.key";
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY), metrics: [], metric: null, answer: null,
  plot: null, socket: null, retry: 0, generation: 0, admin: false };

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
  state.admin = false;
  clearInterval(state.healthTimer);
  state.socket?.close();
  show();
}

function show() {
  const signedIn = Boolean(state.key);
  $("sign-in").hidden = signedIn;
  $("explorer").hidden = !signedIn || state.admin;
  $("health").hidden = !signedIn || !state.admin;
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
  state.plot?.destroy();
  state.plot = chartInto($("chart"), state.answer, $("value").value, $("utc").checked, 320);
  $("legend").textContent = state.plot.openFrom === Infinity
    ? "Every window shown is final."
    : "Shaded: open windows, which can still change.";
  topTable($("top-table"), state.answer, $("value").value);
}

/// Draws `answer`'s series of `value` into `chart` (emptied first); the plot, with where its
/// open windows begin. The chart element carries the counts drawn (`data-points`,
/// `data-series`).
function chartInto(chart, answer, value, utc, height) {
  const { data, openFrom } = columns(answer, value);
  const points = data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null).length, 0);
  chart.replaceChildren();
  chart.dataset.points = String(points);
  chart.dataset.series = String(answer.series.length);
  const options = {
    width: Math.max(260, chart.clientWidth || 600), height,
    tzDate: utc ? (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : (ts) => new Date(ts * 1000),
    series: [{}, ...answer.series.map((series, i) => ({
      label: label(series.key), stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
    }))],
    axes: [{}, { label: value }],
    hooks: { drawClear: [(u) => shadeOpen(u, openFrom / 1000)] },
  };
  const plot = new uPlot(options, data, chart);
  plot.openFrom = openFrom;
  return plot;
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

/// The keys ranked by `value` summed over the range, into `table`.
function topTable(table, answer, value) {
  const column = answer.columns.indexOf(value);
  const rows = answer.series.map((series) => ({
    key: label(series.key),
    total: series.points.reduce((sum, p) => sum + (typeof p[column] === "number" ? p[column] : 0), 0),
  })).sort((a, b) => b.total - a.total);
  table.hidden = rows.length === 0;
  table.querySelector("th:last-child").textContent = `${value} (sum)`;
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

/// The explorer's view as a board panel.
function panelOfView() {
  const filter = $("filter").value.trim();
  return { metric: state.metric.name, value: $("value").value, filters: filter ? [filter] : [],
    range: $("range").value, resolution: $("resolution").value, top: Number($("top").value),
    chart: "line", size: "medium" };
}

async function send(method, path, body) {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${state.key}`,
    "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error(answer?.error?.message || response.statusText);
  return answer;
}

/// Adds the current view to the board named in the form (made if new).
async function saveToBoard(event) {
  event.preventDefault();
  const name = $("board-name").value.trim();
  try {
    const boards = (await api("/v1/boards")).boards;
    const board = boards.find((b) => b.name === name) || { name, panels: [] };
    const panels = [...board.panels, panelOfView()];
    await send("PUT", `/v1/boards/${encodeURIComponent(name)}`, { title: board.title, panels });
    problem(null);
    $("saved").textContent = `Added to board ${name} (${panels.length} panels).`;
    await loadBoards();
  } catch (error) {
    problem(`The board was not saved: ${error.message}`);
  }
}

async function loadBoards() {
  const boards = (await api("/v1/boards")).boards;
  $("boards").replaceChildren(...boards.map((board) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#board=${encodeURIComponent(board.name)}`;
    link.textContent = board.title || board.name;
    item.append(link);
    return item;
  }));
}

/// `#board=NAME[&wall]`: the board's panels, each refreshed every 5 s; `wall` hides the rest of
/// the page (a wall screen).
async function openBoard() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const name = hash.get("board");
  document.body.classList.toggle("wall", hash.has("wall"));
  clearInterval(state.boardTimer);
  $("board").hidden = !name || !state.key;
  $("explorer").hidden = Boolean(name) || !state.key;
  if (!name || !state.key) return;
  try {
    const board = await api(`/v1/boards/${encodeURIComponent(name)}`);
    $("board-title").textContent = board.title || board.name;
    const grid = $("panels");
    grid.replaceChildren();
    const panels = board.panels.map((panel) => {
      const figure = document.createElement("figure");
      figure.className = `panel ${panel.size}`;
      const caption = document.createElement("figcaption");
      caption.textContent = `${panel.metric} · ${panel.value}${panel.filters.length ? ` · ${panel.filters.join(", ")}` : ""} · ${panel.range}`;
      const chart = document.createElement("div");
      chart.className = "panel-chart";
      const table = document.createElement("table");
      table.innerHTML = "<thead><tr><th scope=col>key</th><th scope=col>value</th></tr></thead><tbody></tbody>";
      figure.append(caption, chart, table);
      grid.append(figure);
      return { panel, chart, table };
    });
    const refreshPanels = async () => {
      for (const { panel, chart, table } of panels) {
        const params = new URLSearchParams({ from: `now-${panel.range}`, to: "now",
          resolution: panel.resolution, top: String(panel.top), by: panel.value });
        for (const filter of panel.filters) params.append("filter", filter);
        try {
          const answer = await api(`/v1/metrics/${encodeURIComponent(panel.metric)}?${params}`);
          chart.hidden = panel.chart === "table";
          if (panel.chart !== "table") {
            chart.plot?.destroy();
            const height = { small: 160, medium: 240, large: 360 }[panel.size];
            chart.plot = chartInto(chart, answer, panel.value, $("utc").checked, height);
          }
          topTable(table, answer, panel.value);
          problem(null);
        } catch (error) {
          problem(`Board ${name}: ${error.message}`);
        }
      }
    };
    await refreshPanels();
    state.boardTimer = setInterval(refreshPanels, 5000);
  } catch (error) {
    problem(`Board ${name}: ${error.message}`);
  }
}

/// Signs in: a read key opens the explorer; a key that may not read metrics but may administer
/// opens pipeline health.
async function enter() {
  try {
    await loadMetrics();
    state.admin = false;
  } catch (error) {
    if (!/may not read metrics/.test(error.message)) throw error;
    await api("/v1/admin/metrics");
    state.admin = true;
  }
  sessionStorage.setItem(KEY, state.key);
  problem(null);
  show();
  if (state.admin) {
    await health();
    clearInterval(state.healthTimer);
    state.healthTimer = setInterval(() => health().catch((e) => problem(e.message)), 2000);
  } else {
    await loadBoards();
    await openBoard();
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function when(ms) {
  if (ms == null) return "—";
  const date = new Date(ms);
  return $("utc").checked ? `${date.toISOString().slice(0, 19).replace("T", " ")} UTC` : date.toLocaleString();
}

/// Pipeline health, tenants and keys, and ingest rates from /metrics (two samples apart).
async function health() {
  const { metrics } = await api("/v1/admin/metrics");
  $("pipelines").tBodies[0].replaceChildren(...metrics.map((metric) => {
    const tr = document.createElement("tr");
    const progress = metric.replay
      ? `replay ${(metric.replay.progress * 100).toFixed(0)} % (${metric.replay.state})`
      : metric.backfill_progress != null ? `backfill ${(metric.backfill_progress * 100).toFixed(0)} %` : "—";
    const partitions = metric.partitions
      .map((p) => `p${p.partition}: ${p.committed_offset}/${p.processed_offset}/${p.end_offset}`).join(" · ");
    tr.append(cell(metric.name), cell(metric.error ? `${metric.state}: ${metric.error}` : metric.state),
      cell(String(metric.lag), "number"), cell(when(metric.watermark)), cell(progress), cell(partitions));
    return tr;
  }));
  const { dead_letters: letters } = await api("/v1/admin/dead-letters?limit=20");
  $("letters").tBodies[0].replaceChildren(...letters.map((letter) => {
    const tr = document.createElement("tr");
    tr.append(cell(when(letter.received_at)), cell(letter.tenant), cell(letter.reason),
      cell(`${letter.endpoint} ${letter.path}`), cell(letter.message));
    return tr;
  }));
  const { keys } = await api("/v1/admin/keys");
  $("keys").tBodies[0].replaceChildren(...keys.map((key) => {
    const tr = document.createElement("tr");
    const revoke = document.createElement("td");
    if (key.origin === "api") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Revoke";
      button.addEventListener("click", () => revokeKey(key.id));
      revoke.append(button);
    }
    tr.append(cell(key.tenant || "—"), cell(key.role), cell(`${key.hint}… (${key.id})`), cell(key.label || ""), revoke);
    return tr;
  }));
  await rates();
}

async function rates() {
  const response = await fetch("/metrics", { headers: { Authorization: `Bearer ${state.key}` } });
  if (!response.ok) return;
  const text = await response.text();
  const sum = (name) => text.split("\n").filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  const now = { at: Date.now(), accepted: sum("sluice_ingest_events_accepted_total"),
    rejected: sum("sluice_ingest_events_rejected_total"), duplicates: sum("sluice_ingest_events_deduplicated_total"),
    late: sum("sluice_stream_late_events_total") };
  const before = state.sample;
  state.sample = now;
  if (!before) {
    $("rates").textContent = `Events accepted ${now.accepted}, rejected ${now.rejected}, duplicates ${now.duplicates}, late ${now.late} (rates from the next sample).`;
    return;
  }
  const per = (name) => ((now[name] - before[name]) * 1000 / (now.at - before.at)).toFixed(1);
  $("rates").textContent = `Per second: accepted ${per("accepted")}, rejected ${per("rejected")}, duplicates ${per("duplicates")}, late ${per("late")} · totals: accepted ${now.accepted}, rejected ${now.rejected}.`;
}

async function createKey(event) {
  event.preventDefault();
  const role = $("new-role").value;
  const body = { role, label: $("new-label").value.trim() };
  if (role !== "admin") body.tenant = $("new-tenant").value.trim();
  try {
    const key = await send("POST", "/v1/admin/keys", body);
    $("secret").textContent = `New ${key.role} key ${key.id}: ${key.secret} — copy it now, it is not shown again.`;
    problem(null);
    await health();
  } catch (error) {
    problem(`The key was not created: ${error.message}`);
  }
}

async function revokeKey(id) {
  const response = await fetch(`/v1/admin/keys/${encodeURIComponent(id)}`,
    { method: "DELETE", headers: { Authorization: `Bearer ${state.key}` } });
  if (!response.ok) problem(`The key was not revoked: ${response.status}`);
  await health();
}

$("new-key").addEventListener("submit", createKey);
$("save-board").addEventListener("submit", saveToBoard);
window.addEventListener("hashchange", openBoard);

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = $("key").value.trim();
  try {
    await enter();
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
if (state.key) enter().catch((error) => problem(error.message));

// sluice dashboard: sign in with a key, pick a metric, see its series (final windows drawn
// apart from open ones), updated live over /v1/live; a top-N table re-ranked as updates come;
// boards of such panels; alerts (firing and pending ones, the latest notifications, a count of
// firing ones in the navigation); pipeline health, tenants and keys for an admin key.
// Plain ES module, no build step; the chart is uPlot (vendored, web/vendor/).

const KEY = "sluice.key";
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY), metrics: [], metric: null, answer: null,
  plot: null, live: null, unsubscribe: null, generation: 0, admin: false, drawPending: false };
const SPANS = { "1h": 3600e3, "24h": 86400e3, "7d": 604800e3 };

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
  clearInterval(state.boardTimer);
  clearInterval(state.alertsTimer);
  state.live?.close();
  state.live = null;
  state.unsubscribe = null;
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

function choose(name, value) {
  state.metric = state.metrics.find((m) => m.name === name);
  showAlerts(false);
  $("metric-name").textContent = name;
  $("controls").hidden = false;
  const values = $("value");
  values.replaceChildren(...state.metric.values.map((v) => new Option(v.name, v.name)));
  if (value && state.metric.values.some((v) => v.name === value)) values.value = value;
  refresh();
}

/// The range chosen: a preset up to now, or the custom one (read in UTC or local time, as the
/// UTC box says). `from`/`to` are the query's parameters, `start`/`end` epoch ms (`end` is
/// open for a preset: windows still to come belong to it).
function range() {
  const preset = $("range").value;
  if (preset !== "custom") {
    return { from: `now-${preset}`, to: "now", start: Date.now() - SPANS[preset], end: Infinity };
  }
  const read = (id) => {
    const text = $(id).value;
    if (!text) throw new Error(`Choose the custom range's ${id === "from" ? "start" : "end"}.`);
    return new Date($("utc").checked ? `${text}Z` : text).getTime();
  };
  const start = read("from");
  const end = read("to");
  if (!(start < end)) throw new Error("The custom range ends before it starts: choose a later end.");
  return { from: new Date(start).toISOString(), to: new Date(end).toISOString(), start, end };
}

function query(span) {
  const params = new URLSearchParams({
    from: span.from, to: span.to, resolution: $("resolution").value,
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
    const span = range();
    const answer = await api(query(span));
    if (generation !== state.generation) return;
    problem(null);
    index(answer);
    state.answer = answer;
    state.span = span;
    keepView();
    draw();
    if (!state.drawn) {
      state.drawn = true;
      performance.mark("sluice:first-chart");
    }
    follow();
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
      // A sum that overflowed ("overflow") has no place on the axis: a gap, named in the table.
      ys[at.get(point[0])] = typeof point[column] === "number" ? point[column] : null;
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
  const started = performance.now();
  state.plot = chartInto($("chart"), state.plot, state.answer, $("value").value,
    $("utc").checked, 320);
  $("legend").textContent = state.plot.openFrom === Infinity
    ? "Every window shown is final."
    : "Shaded: open windows, which can still change.";
  topTable($("top-table"), state.answer, $("value").value);
  performance.measure("sluice:draw", { start: started, end: performance.now() });
}

/// Draws `answer`'s series of `value` into `chart`; the plot, with where its open windows begin.
/// `plot` (the chart's previous plot, if any) only gets the new data when it shows the same
/// keys of the same value in the same time zone and size; otherwise it is replaced. The chart
/// element carries the counts drawn (`data-points`, `data-series`).
function chartInto(chart, plot, answer, value, utc, height) {
  const { data, openFrom } = columns(answer, value);
  const points = data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null).length, 0);
  chart.dataset.points = String(points);
  chart.dataset.series = String(answer.series.length);
  const width = Math.max(260, chart.clientWidth || 600);
  const shape = JSON.stringify([value, utc, width, height, answer.series.map((s) => s.key)]);
  if (plot && plot.shape === shape) {
    plot.openFrom = openFrom;
    plot.setData(data);
    return plot;
  }
  plot?.destroy();
  chart.replaceChildren();
  const options = {
    width, height,
    tzDate: utc ? (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : (ts) => new Date(ts * 1000),
    series: [{}, ...answer.series.map((series, i) => ({
      label: label(series.key), stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
    }))],
    axes: [{}, { label: value }],
    // Read at each draw: a plot that gets new data gets its new `openFrom` with it.
    hooks: { drawClear: [(u) => shadeOpen(u, (u.openFrom ?? openFrom) / 1000)] },
  };
  const made = new uPlot(options, data, chart);
  made.shape = shape;
  made.openFrom = openFrom;
  return made;
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

/// A series' values of `column` summed; a sum that overflowed (the API's `"overflow"`) ranks
/// highest, as the API ranks it.
function sumOf(series, column) {
  return series.points.reduce((sum, p) => sum + (typeof p[column] === "number" ? p[column]
    : p[column] === "overflow" ? Infinity : 0), 0);
}

/// The keys ranked by `value` summed over the range, into `table`.
function topTable(table, answer, value) {
  const column = answer.columns.indexOf(value);
  const rows = answer.series.map((series) => ({
    key: label(series.key),
    total: sumOf(series, column),
  })).sort((a, b) => b.total - a.total);
  table.hidden = rows.length === 0;
  table.querySelector("th:last-child").textContent = `${value} (sum)`;
  table.tBodies[0].replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    const key = document.createElement("td");
    key.textContent = row.key;
    const total = document.createElement("td");
    total.className = "number";
    total.textContent = row.total === Infinity ? "overflow"
      : Number.isInteger(row.total) ? String(row.total) : row.total.toFixed(2);
    tr.append(key, total);
    return tr;
  }));
}

/// Live updates over `/v1/live`: subscriptions of (metric, filters) with their listeners, at most
/// 16 on one connection (the server's `api.ws-max-subscriptions` default), more connections
/// beyond. A connection that drops is opened again with a growing wait (1 s to 30 s) and
/// subscribes again; listeners then get `resync()`, since final windows may have passed
/// meanwhile. A revoked key (4001) signs out.
class Live {
  constructor(key) {
    this.key = key;
    this.connections = [];
    this.subscriptions = new Map();
    this.next = 0;
    this.closed = false;
  }

  /// Calls `listener.windows(windows)` with every update of `metric` under `filters`; returns
  /// the function that ends this listener's subscription.
  subscribe(metric, filters, listener) {
    const signature = JSON.stringify([metric, filters]);
    let subscription = [...this.subscriptions.values()].find((s) => s.signature === signature);
    if (!subscription) {
      const connection = this.connections.find((c) => c.ids.size < 16) || this.connect([]);
      subscription = { id: `s${++this.next}`, signature, metric, filters, listeners: new Set(),
        connection };
      this.subscriptions.set(subscription.id, subscription);
      connection.ids.add(subscription.id);
      this.send(connection, subscription);
    }
    subscription.listeners.add(listener);
    return () => {
      subscription.listeners.delete(listener);
      if (subscription.listeners.size || !this.subscriptions.has(subscription.id)) return;
      this.subscriptions.delete(subscription.id);
      const connection = subscription.connection;
      connection.ids.delete(subscription.id);
      if (connection.socket.readyState === WebSocket.OPEN) {
        connection.socket.send(JSON.stringify({ type: "unsubscribe", id: subscription.id }));
      }
      if (!connection.ids.size) this.drop(connection);
    };
  }

  send(connection, subscription) {
    if (connection.socket.readyState !== WebSocket.OPEN) return;
    connection.socket.send(JSON.stringify({ type: "subscribe", id: subscription.id,
      metric: subscription.metric, filters: subscription.filters }));
  }

  connect(ids, retry = 0) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/live?key=${encodeURIComponent(this.key)}`);
    const connection = { socket, ids: new Set(ids), retry };
    this.connections.push(connection);
    socket.addEventListener("open", () => {
      connection.retry = 0;
      for (const id of connection.ids) this.send(connection, this.subscriptions.get(id));
      if (retry) {
        problem(null);
        for (const id of connection.ids) {
          for (const listener of this.subscriptions.get(id).listeners) listener.resync?.();
        }
      }
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      const subscription = this.subscriptions.get(message.id);
      if (message.type === "update" && subscription) {
        for (const listener of subscription.listeners) listener.windows(message.windows);
      }
      if (message.type === "error") {
        problem(`Live updates${subscription ? ` of ${subscription.metric}` : ""}: ${message.message}`);
      }
    });
    socket.addEventListener("close", (event) => {
      if (this.closed || !this.connections.includes(connection)) return;
      this.connections.splice(this.connections.indexOf(connection), 1);
      if (event.code === 4001) {
        problem("This key was revoked: sign in with another key.");
        signOut();
        return;
      }
      const wait = Math.min(30, 2 ** connection.retry);
      problem(`Live updates stopped (${event.code || "connection lost"}); reconnecting in ${wait} s.`);
      setTimeout(() => {
        if (this.closed || !connection.ids.size) return;
        const again = this.connect([...connection.ids], connection.retry + 1);
        for (const id of again.ids) this.subscriptions.get(id).connection = again;
      }, wait * 1000);
    });
    return connection;
  }

  drop(connection) {
    const at = this.connections.indexOf(connection);
    if (at >= 0) this.connections.splice(at, 1);
    connection.socket.close(1000);
  }

  close() {
    this.closed = true;
    for (const connection of this.connections) connection.socket.close(1000);
    this.connections = [];
  }
}

function live() {
  if (!state.live) state.live = new Live(state.key);
  return state.live;
}

/// The explorer's chart follows the live windows at raw resolution.
function follow() {
  state.unsubscribe?.();
  state.unsubscribe = null;
  if ($("resolution").value !== "raw") return;
  const filter = $("filter").value.trim();
  state.unsubscribe = live().subscribe(state.metric.name, filter ? [filter] : [], {
    windows: (windows) => {
      if (apply(state.answer, windows, state.span, Number($("top").value), $("value").value)) {
        problem(null);
        drawSoon();
      }
    },
    resync: refresh,
  });
}

/// Draws at the next frame, once however many updates came before it.
function drawSoon() {
  if (state.drawPending) return;
  state.drawPending = true;
  requestAnimationFrame(() => {
    state.drawPending = false;
    if (state.answer) draw();
  });
}

/// `answer`'s series by key, for [`apply`].
function index(answer) {
  answer.byKey = new Map(answer.series.map((series) => [JSON.stringify(series.key), series]));
}

/// Puts live `windows` into `answer` (the windows of `span` only): each replaces its window's
/// point, or is added in order. A new key joins the series; if that makes more than `top`, the
/// keys are ranked by `value` summed over the range and the last is left out, as the query
/// would have. Whether anything changed.
function apply(answer, windows, span, top, value) {
  if (!answer) return false;
  let changed = false;
  for (const window of windows) {
    if (window.start < span.start || window.start >= span.end) continue;
    const name = JSON.stringify(window.key);
    let series = answer.byKey.get(name);
    if (!series) {
      series = { key: window.key, points: [] };
      answer.series.push(series);
      answer.byKey.set(name, series);
    }
    const point = [window.start, window.end, window.final,
      ...answer.columns.slice(3).map((column) => window.values[column] ?? null)];
    const points = series.points;
    // Binary search: live windows are mostly the newest.
    let low = 0;
    let high = points.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (points[middle][0] < window.start) low = middle + 1;
      else high = middle;
    }
    if (low < points.length && points[low][0] === window.start) points[low] = point;
    else points.splice(low, 0, point);
    changed = true;
  }
  if (answer.series.length > top) {
    const column = answer.columns.indexOf(value);
    answer.series = answer.series.map((series) => [sumOf(series, column), series])
      .sort((a, b) => b[0] - a[0]).slice(0, top).map(([, series]) => series);
    index(answer);
  }
  return changed;
}

/// The explorer's view as a board panel.
function panelOfView() {
  if ($("range").value === "custom") {
    throw new Error("a board panel shows a range up to now: choose 1 h, 24 h or 7 d first");
  }
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
    const panel = panelOfView();
    const boards = (await api("/v1/boards")).boards;
    const board = boards.find((b) => b.name === name) || { name, panels: [] };
    const panels = [...board.panels, panel];
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

/// `#board=NAME[&wall]`: the board's panels; those at raw resolution follow `/v1/live`, the
/// others are read again every 5 s. `wall` hides the rest of the page (a wall screen).
async function openBoard() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const name = hash.get("board");
  document.body.classList.toggle("wall", hash.has("wall"));
  clearInterval(state.boardTimer);
  state.boardRedraw = null;
  for (const unsubscribe of state.boardSubscriptions || []) unsubscribe();
  state.boardSubscriptions = [];
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
      caption.textContent = `${panel.metric} · ${panel.value}${panel.filters.length ? ` · ${panel.filters.join(", ")}` : ""} · ${panel.range}${panel.resolution === "raw" ? " · live" : ""}`;
      const chart = document.createElement("div");
      chart.className = "panel-chart";
      chart.hidden = panel.chart === "table";
      const table = document.createElement("table");
      table.innerHTML = "<thead><tr><th scope=col>key</th><th scope=col>value</th></tr></thead><tbody></tbody>";
      figure.append(caption, chart, table);
      grid.append(figure);
      return { panel, chart, table, answer: null, span: null, plot: null, pending: false };
    });
    const drawPanel = (view) => {
      if (view.panel.chart !== "table") {
        const height = { small: 160, medium: 240, large: 360 }[view.panel.size];
        view.plot = chartInto(view.chart, view.plot, view.answer, view.panel.value,
          $("utc").checked, height);
      }
      topTable(view.table, view.answer, view.panel.value);
    };
    const read = async (view) => {
      const { panel } = view;
      const params = new URLSearchParams({ from: `now-${panel.range}`, to: "now",
        resolution: panel.resolution, top: String(panel.top), by: panel.value });
      for (const filter of panel.filters) params.append("filter", filter);
      try {
        const answer = await api(`/v1/metrics/${encodeURIComponent(panel.metric)}?${params}`);
        index(answer);
        view.answer = answer;
        view.span = { start: Date.now() - SPANS[panel.range], end: Infinity };
        drawPanel(view);
        problem(null);
      } catch (error) {
        problem(`Board ${name}: ${error.message}`);
      }
    };
    await Promise.all(panels.map(read));
    state.boardRedraw = () => panels.filter((v) => v.answer).forEach(drawPanel);
    for (const view of panels.filter((v) => v.panel.resolution === "raw")) {
      state.boardSubscriptions.push(live().subscribe(view.panel.metric, view.panel.filters, {
        windows: (windows) => {
          const { top, value } = view.panel;
          if (!apply(view.answer, windows, view.span, top, value) || view.pending) return;
          view.pending = true;
          requestAnimationFrame(() => {
            view.pending = false;
            drawPanel(view);
          });
        },
        resync: () => read(view),
      }));
    }
    const polled = panels.filter((v) => v.panel.resolution !== "raw");
    if (polled.length) state.boardTimer = setInterval(() => polled.forEach(read), 5000);
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
    openView();
    await openAlerts(false);
    await watchAlerts();
  }
}

/// `#metric=NAME[&range=24h&resolution=raw&value=V&top=10&filter=K:V]`: opens that view. The
/// explorer keeps its view in the page's address, so that it can be shared or bookmarked.
function openView() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const name = hash.get("metric");
  if (!name || !state.metrics.some((m) => m.name === name)) return;
  for (const id of ["range", "resolution", "top", "filter"]) {
    if (hash.has(id)) $(id).value = hash.get(id);
  }
  $("custom").hidden = $("range").value !== "custom";
  choose(name, hash.get("value"));
}

function keepView() {
  const view = new URLSearchParams({ metric: state.metric.name, range: $("range").value,
    resolution: $("resolution").value, value: $("value").value, top: $("top").value });
  const filter = $("filter").value.trim();
  if (filter) view.set("filter", filter);
  history.replaceState(null, "", `#${view}`);
}

/// `#alerts`: the alerts view, in the metric's place beside the navigation.
async function openAlerts(load = true) {
  const open = location.hash === "#alerts" && Boolean(state.key) && !state.admin;
  showAlerts(open);
  if (open && load) await alertsTick();
}

/// Shows the alerts view (or the metric again), and marks which is shown in the navigation.
function showAlerts(open) {
  const was = !$("alerts-view").hidden;
  $("alerts-view").hidden = !open;
  $("metric").hidden = open;
  $("alerts-link").setAttribute("aria-current", String(open));
  for (const button of $("metrics").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(!open && button.textContent === state.metric?.name));
  }
  // The chart was drawn hidden meanwhile: to its width again.
  if (was && !open && state.answer) drawSoon();
}

/// Reads the alerts every 10 s, not while the tab is hidden: the firing ones for the badge
/// (`?state=firing`), or, while the alerts view is shown, all of them and the latest
/// notifications for the view (the badge counted from them). One read of /v1/alerts a tick.
async function watchAlerts() {
  clearInterval(state.alertsTimer);
  state.alertsTimer = setInterval(() => {
    if (!document.hidden) alertsTick();
  }, 10_000);
  await alertsTick();
}

async function alertsTick() {
  try {
    if (!$("alerts-view").hidden) {
      await loadAlerts();
    } else {
      const { alerts } = await api("/v1/alerts?state=firing");
      badge(alerts.length);
    }
    if (state.alertsFailed) problem(null);
    state.alertsFailed = false;
  } catch (error) {
    state.alertsFailed = true;
    problem(`Alerts: ${error.message}`);
  }
}

/// The count of firing alert instances beside the navigation's "Alerts"; none when 0.
function badge(count) {
  $("alert-badge").textContent = String(count);
  $("alert-badge").hidden = count === 0;
  $("alerts-link").setAttribute("aria-label", count ? `Alerts: ${count} firing` : "Alerts");
}

const SEVERITIES = ["critical", "warning", "info"];

/// A word in a tag, styled by its class (`state-…`, `severity-…`): the word itself says it,
/// the tag's border and weight tell them apart at a glance, colour only adds to that.
function tag(kind, word) {
  const span = document.createElement("span");
  span.className = `tag ${kind}-${word}`;
  span.textContent = word;
  return span;
}

/// Cells named after their column, for the stacked rows of a narrow window.
function row(table, cells) {
  const tr = document.createElement("tr");
  const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  cells.forEach((td, i) => {
    td.dataset.label = heads[i];
    tr.append(td);
  });
  return tr;
}

function tagCell(kind, word) {
  const td = document.createElement("td");
  td.append(tag(kind, word));
  return td;
}

/// The alerts view: firing then pending instances, most severe first, and the latest 20
/// notifications.
async function loadAlerts() {
  const [{ alerts, rules }, { notifications }] = await Promise.all([
    api("/v1/alerts"), api("/v1/alerts/history?limit=20")]);
  const firing = alerts.filter((a) => a.state === "firing");
  const pending = alerts.filter((a) => a.state === "pending");
  badge(firing.length);
  const rank = (a) => (a.state === "firing" ? 0 : 10) + (SEVERITIES.indexOf(a.severity) + 4) % 4;
  const shown = [...firing, ...pending].sort((a, b) => rank(a) - rank(b)
    || a.rule.localeCompare(b.rule) || label(a.key || {}).localeCompare(label(b.key || {})));
  const table = $("firing");
  table.tBodies[0].replaceChildren(...shown.map((alert) => row(table, [cell(alert.rule),
    cell(alert.metric), cell(label(alert.key || {})), tagCell("state", alert.state),
    tagCell("severity", alert.severity)])));
  table.hidden = shown.length === 0;
  const empty = $("firing-empty");
  empty.hidden = shown.length > 0;
  empty.textContent = !rules.length
    ? "No alert rules. A tenant's rules are [[alerts]] in sluice's configuration, or made with POST /v1/alerts/rules and an alerts key."
    : `Nothing firing: ${rules.length === 1 ? "the rule is" : `all ${rules.length} rules are`} quiet.`;
  $("alert-summary").textContent = `${rules.length} ${rules.length === 1 ? "rule" : "rules"} · ${firing.length} firing · ${pending.length} pending · read ${when(Date.now())}, every 10 s.`;
  $("rule-errors").replaceChildren(...rules.filter((r) => r.error).map((r) => {
    const item = document.createElement("li");
    item.textContent = `Rule ${r.name} (on ${r.metric}) does not run: ${r.error}`;
    return item;
  }));
  const history = $("history");
  history.tBodies[0].replaceChildren(...notifications.map((n) => {
    const delivery = n.channel == null ? "recorded (the rule has no channel)"
      : n.state === "pending" ? `pending to ${n.channel}: attempt ${n.attempts}, next ${when(n.next_attempt)}`
      : `${n.state} to ${n.channel}${n.attempts > 1 ? ` after ${n.attempts} attempts` : ""}`;
    return row(history, [cell(when(n.created_at)), cell(n.rule), cell(label(n.notification?.key || {})),
      tagCell("state", n.status), cell(delivery, `delivery-${n.state}`), cell(n.last_error || "—")]);
  }));
  history.hidden = notifications.length === 0;
  $("history-empty").hidden = notifications.length > 0;
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
  const { tenants } = await api("/v1/admin/tenants");
  const limit = (own, effective) => `${effective === 0 ? "no limit" : effective}${own == null ? " ([quotas])" : ""}`;
  $("tenants").tBodies[0].replaceChildren(...tenants.map((tenant) => {
    const tr = document.createElement("tr");
    const remove = document.createElement("td");
    if (tenant.origin === "api") {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Delete";
      button.setAttribute("aria-label", `Delete tenant ${tenant.name} and revoke its keys`);
      button.addEventListener("click", () => deleteTenant(tenant.name));
      remove.append(button);
    }
    tr.append(cell(tenant.name), cell(tenant.origin),
      cell(limit(tenant.requests_per_second, tenant.effective.requests_per_second), "number"),
      cell(limit(tenant.events_per_day, tenant.effective.events_per_day), "number"), remove);
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

async function createTenant(event) {
  event.preventDefault();
  const body = { name: $("tenant-name").value.trim() };
  for (const [id, field] of [["tenant-rps", "requests_per_second"], ["tenant-epd", "events_per_day"]]) {
    if ($(id).value !== "") body[field] = Number($(id).value);
  }
  try {
    await send("POST", "/v1/admin/tenants", body);
    $("secret").textContent = `Tenant ${body.name} created: make its write and read keys below.`;
    $("new-tenant").value = body.name;
    for (const id of ["tenant-name", "tenant-rps", "tenant-epd"]) $(id).value = "";
    problem(null);
    await health();
  } catch (error) {
    problem(`The tenant was not created: ${error.message}`);
  }
}

async function deleteTenant(name) {
  if (!confirm(`Delete tenant ${name}? Its keys stop working at once; its results stay.`)) return;
  const response = await fetch(`/v1/admin/tenants/${encodeURIComponent(name)}`,
    { method: "DELETE", headers: { Authorization: `Bearer ${state.key}` } });
  if (!response.ok) problem(`The tenant was not deleted: ${response.status}`);
  await health();
}

async function revokeKey(id) {
  const response = await fetch(`/v1/admin/keys/${encodeURIComponent(id)}`,
    { method: "DELETE", headers: { Authorization: `Bearer ${state.key}` } });
  if (!response.ok) problem(`The key was not revoked: ${response.status}`);
  await health();
}

$("new-key").addEventListener("submit", createKey);
$("new-tenant-form").addEventListener("submit", createTenant);
$("save-board").addEventListener("submit", saveToBoard);
// Already at #alerts (no hashchange follows): shown again, read again.
$("alerts-link").addEventListener("click", (event) => {
  if (location.hash !== "#alerts") return;
  event.preventDefault();
  openAlerts();
});
window.addEventListener("hashchange", async () => {
  if (!state.key || state.admin) return;
  await openBoard();
  openView();
  await openAlerts();
});

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
for (const id of ["resolution", "value", "top", "utc", "filter", "from", "to"]) {
  $(id).addEventListener("change", () => {
    if (id !== "value") return refresh();
    if (state.answer) draw();
    keepView();
  });
}
$("range").addEventListener("change", () => {
  const custom = $("range").value === "custom";
  $("custom").hidden = !custom;
  if (custom && !$("from").value) {
    // Start from the last 24 h, in the time zone the UTC box says.
    const local = (ms) => {
      const date = new Date(ms);
      const shifted = $("utc").checked ? date : new Date(ms - date.getTimezoneOffset() * 60e3);
      return shifted.toISOString().slice(0, 16);
    };
    $("to").value = local(Date.now());
    $("from").value = local(Date.now() - SPANS["24h"]);
  }
  refresh();
});
window.addEventListener("resize", () => {
  if (state.answer) draw();
  state.boardRedraw?.();
});

show();
if (state.key) enter().catch((error) => problem(error.message));

// The dashboard's speed in a real headless Chromium (issue 18's targets), run by
// scripts/bench-dashboard.sh, which owns sluice:
//
//   node bench/dashboard.mjs URL WRITE_KEY READ_KEY ADMIN_KEY [RUNS] [SCREENSHOT_DIR]
//
// 1. History: 24 h of 1-minute windows for 10 pages (1,440 points each, 14,400 in all), sent
//    in time order through /v1/batch, then waited for in the query API.
// 2. First chart: RUNS times, a fresh browser context opens the explorer's address for that
//    metric (`#metric=pages&range=24h`) with the read key in sessionStorage; the time is the
//    page's own `sluice:first-chart` mark (the chart drawn), from the navigation's start.
// 3. Live: with that chart open, 10 events (one per page, now) are posted every 100 ms for
//    10 s; the page's `sluice:draw` measures and its animation frames are recorded. Then 5
//    times an event of a new page is posted and timed until the chart draws its series.
// With SCREENSHOT_DIR, the explorer, a board as a wall screen and pipeline health are saved
// there as PNG before step 3 (the README's pictures).
// Prints one JSON line of figures. Environment: SLUICE_TEST_BROWSER_MODULES and
// SLUICE_TEST_CHROMIUM, as for the browser tests (scripts/browser.sh).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from '../crates/sluice/tests/browser/chromium.mjs';

const [url, writeKey, readKey, adminKey, runsArg, shots] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const modules = process.env.SLUICE_TEST_BROWSER_MODULES;
const executablePath = process.env.SLUICE_TEST_CHROMIUM;
if (!url || !writeKey || !readKey || !adminKey || !modules || !executablePath) {
  console.error('usage: SLUICE_TEST_BROWSER_MODULES=… SLUICE_TEST_CHROMIUM=… node bench/dashboard.mjs URL WRITE_KEY READ_KEY ADMIN_KEY [RUNS] [SCREENSHOT_DIR]');
  process.exit(2);
}

const KEYS = 10;
const MINUTE = 60_000;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];
const round = (x) => Math.round(x * 10) / 10;

async function post(events) {
  const response = await fetch(`${url}/v1/batch`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`,
      'Content-Type': 'application/json' },
    body: JSON.stringify({ batch: events }),
  });
  if (!response.ok) throw new Error(`/v1/batch: ${response.status} ${await response.text()}`);
}

const view = (page, user, time) => ({ type: 'track', event: 'Page Viewed', userId: `u${user}`,
  timestamp: new Date(time).toISOString(), properties: { url: `/page-${page}` } });

// 1. 24 h of history, oldest first: per page a base rate (page 0 the most viewed), a daily
//    shape and deterministic noise.
const now = Date.now();
const first = now - (now % MINUTE) - 1439 * MINUTE;
let seed = 42;
const noise = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
let batch = [];
let sent = 0;
for (let minute = first; minute <= now; minute += MINUTE) {
  const day = 1 + 0.6 * Math.sin((2 * Math.PI * (minute % 86_400_000)) / 86_400_000);
  for (let page = 0; page < KEYS; page++) {
    const count = Math.max(1, Math.round((12 / (1 + page / 3)) * day * (0.8 + 0.4 * noise())));
    for (let n = 0; n < count; n++) {
      batch.push(view(page, (minute / MINUTE + n) % 50, minute + n * 100));
    }
  }
  if (batch.length >= 500) {
    await post(batch);
    sent += batch.length;
    batch = [];
  }
}
await post(batch);
sent += batch.length;
const query = `${url}/v1/metrics/pages?from=now-24h&to=now&top=${KEYS}&by=views`;
for (let tries = 0; ; tries++) {
  const answer = await (await fetch(query, { headers: { Authorization: `Bearer ${readKey}` } })).json();
  const points = (answer.series || []).reduce((n, s) => n + s.points.length, 0);
  if (points >= KEYS * 1439) break;
  if (tries > 600) throw new Error(`the history did not arrive: ${points} points`);
  await new Promise((resolve) => setTimeout(resolve, 100));
}

const browser = await launch();
const address = `${url}/#metric=pages&range=24h&resolution=raw&value=views&top=${KEYS}`;
async function open(key) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript((k) => sessionStorage.setItem('sluice.key', k), key);
  const page = await context.newPage();
  return { context, page };
}

// 2. First chart, from a fresh context each time.
const firstChart = [];
for (let run = 0; run < runs; run++) {
  const { context, page } = await open(readKey);
  await page.goto(address);
  await page.waitForFunction(() => performance.getEntriesByName('sluice:first-chart').length > 0,
    null, { timeout: 30_000 });
  const drawn = await page.evaluate(() => ({
    at: performance.getEntriesByName('sluice:first-chart')[0].startTime,
    points: Number(document.querySelector('#chart').dataset.points),
  }));
  if (drawn.points < KEYS * 1439) throw new Error(`the chart drew ${drawn.points} points`);
  firstChart.push(drawn.at);
  await context.close();
}

// 3. Live updates into the open 24 h chart (screenshots first, while the history is all
//    there is).
const { context, page } = await open(readKey);
await page.goto(address);
await page.waitForFunction(() => performance.getEntriesByName('sluice:first-chart').length > 0,
  null, { timeout: 30_000 });
if (shots) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'dashboard-explorer.png') });
}
// Screenshots of a board (as a wall screen) and of pipeline health.
if (shots) {
  const panels = [
    { metric: 'pages', value: 'views', range: '24h', resolution: 'raw', top: 5, size: 'large' },
    { metric: 'pages', value: 'users', range: '24h', resolution: '1h', top: 5, size: 'medium' },
    { metric: 'pages', value: 'views', range: '1h', resolution: 'raw', top: 10, chart: 'table', size: 'medium' },
  ];
  const saved = await fetch(`${url}/v1/boards/traffic`, { method: 'PUT',
    headers: { Authorization: `Bearer ${readKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ title: 'Traffic', panels }) });
  if (!saved.ok) throw new Error(`PUT /v1/boards/traffic: ${saved.status} ${await saved.text()}`);
  const wall = await open(readKey);
  await wall.page.goto(`${url}/#board=traffic&wall`);
  await wall.page.waitForSelector('#panels .panel-chart[data-points]', { timeout: 30_000 });
  await wall.page.waitForTimeout(500);
  await wall.page.screenshot({ path: join(shots, 'dashboard-board.png') });
  await wall.context.close();
  const admin = await open(adminKey);
  await admin.page.goto(`${url}/`);
  await admin.page.waitForFunction(() => document.querySelector('#rates').textContent.includes('Per second'),
    null, { timeout: 30_000 });
  await admin.page.screenshot({ path: join(shots, 'dashboard-health.png'), fullPage: true });
  await admin.context.close();
}
await page.evaluate(() => {
  performance.clearMeasures('sluice:draw');
  window.frames = [];
  const tick = (t) => { window.frames.push(t); requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
});
const until = Date.now() + 10_000;
let live = 0;
while (Date.now() < until) {
  const at = Date.now();
  await post(Array.from({ length: KEYS }, (_, page) => view(page, live % 50, at)));
  live += KEYS;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 100 - (Date.now() - at))));
}
const seen = await page.evaluate(() => {
  const draws = performance.getEntriesByName('sluice:draw').map((m) => m.duration);
  const gaps = window.frames.slice(1).map((t, i) => t - window.frames[i]);
  return { draws, gaps, points: Number(document.querySelector('#chart').dataset.points) };
});
// Post → drawn: one event of a new page at a time, timed until the chart has its series.
const arrivals = [];
for (let probe = 0; probe < 5; probe++) {
  await page.selectOption('#top', '20');
  await page.waitForFunction((n) => Number(document.querySelector('#chart').dataset.series) === n,
    KEYS + probe, { timeout: 30_000 });
  const at = Date.now();
  await post([view(`probe-${probe}`, 0, at)]);
  await page.waitForFunction((n) => Number(document.querySelector('#chart').dataset.series) > n,
    KEYS + probe, { timeout: 30_000, polling: 'raf' });
  arrivals.push(Date.now() - at);
}
await context.close();

await browser.close();

console.log(JSON.stringify({
  history_events: sent,
  points: KEYS * 1440,
  first_chart_ms: { median: round(median(firstChart)), runs: firstChart.map(round) },
  live: {
    events_posted: live,
    draws: seen.draws.length,
    draw_ms_median: round(median(seen.draws)),
    draw_ms_p99: round(quantile(seen.draws, 0.99)),
    frames: seen.gaps.length,
    frame_gap_ms_median: round(median(seen.gaps)),
    frame_gap_ms_max: round(Math.max(...seen.gaps)),
    frames_over_50ms: seen.gaps.filter((g) => g > 50).length,
    points_after: seen.points,
  },
  posted_to_drawn_ms: { median: median(arrivals), runs: arrivals },
}));

// Segment's browser SDK (@segment/analytics-next, from npm, unchanged) in a real headless
// Chromium, sending to sluice from a page of another origin: driven by
// crates/sluice/tests/ingest/browser.rs, which owns sluice (and its restart).
//
//   node segment_browser.mjs COLLECTOR_URL PAGE_PORT STANDARD_KEY BATCHING_KEY
//
// Environment: SLUICE_TEST_BROWSER_MODULES (a node_modules with this directory's
// package-lock.json installed) and SLUICE_TEST_CHROMIUM (the browser's executable).
//
// Two pages, one per delivery strategy (standard: one request per event; batching: /v1/b),
// each sending every message type twice: once with sluice up, once while it is down. The
// conversation on stdin/stdout, one line each:
//   -> "stop"     every event of the first round was answered 200: stop sluice
//   <- "stopped"
//   -> "start"    the second round was sent and has failed at least once on each page
//   <- "started"
//   -> one JSON line per event sent, as the SDK sent it in the request answered 200
//      ({"mode", "round", "message"}), then the process exits 0.
// Any failure is a message on stderr and exit 1.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import readline from 'node:readline';
import { launchPersistent } from './chromium.mjs';

const [collector, pagePort, standardKey, batchingKey] = process.argv.slice(2);
const modules = process.env.SLUICE_TEST_BROWSER_MODULES;
const executablePath = process.env.SLUICE_TEST_CHROMIUM;
if (!collector || !pagePort || !standardKey || !batchingKey || !modules || !executablePath) {
  fail('usage: SLUICE_TEST_BROWSER_MODULES=… SLUICE_TEST_CHROMIUM=… node segment_browser.mjs COLLECTOR_URL PAGE_PORT STANDARD_KEY BATCHING_KEY');
}
const require = createRequire(join(modules, 'noop.js'));
const esbuild = require('esbuild');

const WAIT_MS = 90_000;
const pageOrigin = `http://127.0.0.1:${pagePort}`;

function fail(message) {
  process.stderr.write(`segment_browser: ${message}\n`);
  process.exit(1);
}

/// The SDK as a website bundles it from npm: AnalyticsBrowser on window.
async function bundle() {
  const built = await esbuild.build({
    stdin: {
      contents: "import { AnalyticsBrowser } from '@segment/analytics-next';\nwindow.AnalyticsBrowser = AnalyticsBrowser;\n",
      resolveDir: join(modules, '..'),
      loader: 'js',
    },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    write: false,
    logLevel: 'error',
  });
  return built.outputFiles[0].text;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title><script src="/analytics.js"></script></head>
<body><h1>A page of another origin</h1>
<script>
  // What a website writes: the settings inline (no Segment CDN), apiHost pointing at sluice.
  window.startAnalytics = async (writeKey, apiHost, batching) => {
    const segment = { apiKey: writeKey, apiHost, protocol: 'http' };
    if (batching) {
      segment.deliveryStrategy = { strategy: 'batching', config: { size: 4, timeout: 300 } };
    }
    const [analytics] = await AnalyticsBrowser.load({
      writeKey,
      cdnSettings: { integrations: { 'Segment.io': segment } },
    });
    window.analytics = analytics;
  };
  // Every message type, with nested data; returns each call's messageId.
  window.sendEveryType = async (mode, round) => {
    const user = 'user-' + mode;
    const tag = { mode, round };
    const calls = [
      () => analytics.identify(user, { plan: 'pro', email: user + '@shop.example', tag }),
      () => analytics.track('Order Completed',
        { revenue: 49.99, items: [{ sku: 'a-1', qty: 2 }], tag,
          // Longer than the 8 KiB string limit sluice had: Segment takes any event up to 32 KB.
          note: 'n'.repeat(12000) },
        { integrations: { Mixpanel: false }, context: { campaign: { source: 'newsletter' } } }),
      () => analytics.page('Docs', 'Getting Started', { section: 'intro', tag }),
      () => analytics.screen('Settings', 'Account', { tab: 'billing', tag }),
      () => analytics.group('acme-' + mode, { seats: 10, tag }),
      () => analytics.alias(user + '-new', user),
    ];
    const ids = [];
    for (const call of calls) {
      const ctx = await call();
      ids.push(ctx.event.messageId);
    }
    return ids;
  };
  // navigator.sendBeacon: a text/plain body with the write key inside, no headers at all.
  window.beacon = (url, writeKey, messageId) => navigator.sendBeacon(url, JSON.stringify({
    type: 'track', writeKey, messageId, anonymousId: 'beacon-visitor', event: 'Beacon Sent',
    properties: { via: 'sendBeacon' },
  }));
</script></body></html>`;

function servePage(script) {
  const server = http.createServer((request, response) => {
    if (request.url === '/analytics.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' });
      response.end(script);
    } else if (request.url.startsWith('/?') || request.url === '/') {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end(PAGE);
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(pagePort), '127.0.0.1', () => resolve(server));
  });
}

/// Every event answered 200 by sluice, by messageId, as it was in that request; every failed
/// request to sluice; every event sluice accepted with a 200 but rejected.
const delivered = new Map();
const failures = { standard: 0, batching: 0 };
const rejected = [];

function watch(page, mode) {
  page.on('requestfailed', (request) => {
    if (request.url().startsWith(collector)) failures[mode] += 1;
  });
  page.on('response', async (response) => {
    const request = response.request();
    if (!response.url().startsWith(`${collector}/v1/`) || request.method() !== 'POST') return;
    let body;
    try {
      body = JSON.parse(request.postData() ?? '');
    } catch {
      return;
    }
    if (response.status() !== 200) return;
    const answer = await response.json().catch(() => null);
    if (answer?.rejected?.length) rejected.push({ url: response.url(), rejected: answer.rejected });
    for (const message of body.batch ?? [body]) {
      if (!delivered.has(message.messageId)) delivered.set(message.messageId, { mode, message });
    }
  });
  page.on('console', (message) => {
    if (message.type() === 'error') process.stderr.write(`[${mode} page] ${message.text()}\n`);
  });
}

async function until(what, condition) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (rejected.length) fail(`sluice answered 200 but rejected events: ${JSON.stringify(rejected)}`);
    if (Date.now() > deadline) fail(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expectLine(expected) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== expected) fail(`expected "${expected}" on stdin, got ${JSON.stringify(value)}`);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
let context;
let server;
try {
  server = await servePage(await bundle());
  context = await launchPersistent(userDataDir);
  const apiHost = `${new URL(collector).host}/v1`;
  const pages = {};
  for (const [mode, key] of [['standard', standardKey], ['batching', batchingKey]]) {
    const page = await context.newPage();
    watch(page, mode);
    await page.goto(`${pageOrigin}/?${mode}`);
    await page.evaluate(([key, host, batching]) => window.startAnalytics(key, host, batching),
      [key, apiHost, mode === 'batching']);
    pages[mode] = page;
  }
  const sent = [];
  const send = async (round) => {
    for (const [mode, page] of Object.entries(pages)) {
      const ids = await page.evaluate(([mode, round]) => window.sendEveryType(mode, round), [mode, round]);
      sent.push(...ids.map((id) => ({ id, mode, round })));
    }
  };
  const allDelivered = () => sent.every(({ id }) => delivered.has(id));

  // Round 1, sluice up; and a beacon.
  await send(1);
  const beaconId = `beacon-${Date.now()}`;
  const queued = await pages.standard.evaluate(([url, key, id]) => window.beacon(url, key, id),
    [`${collector}/v1/t`, standardKey, beaconId]);
  if (!queued) fail('navigator.sendBeacon refused the beacon');
  sent.push({ id: beaconId, mode: 'standard', round: 1 });
  await until('round 1 to be answered 200', allDelivered);
  console.log('stop');
  await expectLine('stopped');

  // Round 2, sluice down: the SDK must keep the events and retry them.
  const failedBefore = { ...failures };
  await send(2);
  await until('round 2 to fail on both pages while sluice is down',
    () => failures.standard > failedBefore.standard && failures.batching > failedBefore.batching);
  console.log('start');
  await expectLine('started');
  await until('every event to be answered 200 after the restart', allDelivered);

  for (const { id, mode, round } of sent) {
    console.log(JSON.stringify({ mode, round, message: delivered.get(id).message }));
  }
} catch (error) {
  fail(error?.stack ?? String(error));
} finally {
  await context?.close().catch(() => {});
  server?.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(0);

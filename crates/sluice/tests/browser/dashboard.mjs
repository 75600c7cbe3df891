// The dashboard in a real headless Chromium (playwright-core, Debian's chromium), driven by
// crates/sluice/tests/api/dashboard.rs, which owns sluice and the events.
//
//   node dashboard.mjs SLUICE_URL READ_KEY METRIC
//
// Environment: SLUICE_TEST_BROWSER_MODULES (a node_modules with this directory's
// package-lock.json installed) and SLUICE_TEST_CHROMIUM (the browser's executable).
//
// The conversation on stdout/stdin, one JSON line each:
//   <- {"phase": "refused", "problem": TEXT}    a wrong key was refused, in words
//   <- {"phase": "loaded", "points", "series", "rows", "legend"}   the metric is drawn
//   -> "sent"                                   new events of a new key were accepted
//   <- {"phase": "live", "ms", "points", "series", "rows"}   the chart grew without a reload,
//      `ms` after the events were accepted
//   -> {"from": "YYYY-MM-DDTHH:MM", "to": …}    a custom range, in UTC
//   <- {"phase": "custom", "points", "series", "address"}   the chart of that range
//   <- {"phase": "board", "panels", "points", "series", "title", "headerHidden"}   the view,
//      added to the board "wall" through the page's form, opened by its URL as a wall screen
//   -> "sent"                                   events of another new key were accepted
//   <- {"phase": "board-live", "points", "series"}   the panel grew over /v1/live
//   <- {"phase": "narrow", "scrollWidth", "chartWidth", "metricsListed"}   the explorer in a
//      360 px wide window
// then the process exits 0. Any failure is a message on stderr and exit 1. Screenshots of the
// explorer, the board, the alerts view and pipeline health are saved in SLUICE_TEST_SCREENSHOTS
// (a directory), when it is set. The modes `admin` and `alerts` have conversations of their own
// (their functions below).

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';
import { launchPersistent } from './chromium.mjs';

const [url, readKey, metric, mode] = process.argv.slice(2);
const modules = process.env.SLUICE_TEST_BROWSER_MODULES;
const executablePath = process.env.SLUICE_TEST_CHROMIUM;
if (!url || !readKey || !metric || !modules || !executablePath) {
  fail('usage: SLUICE_TEST_BROWSER_MODULES=… SLUICE_TEST_CHROMIUM=… node dashboard.mjs URL READ_KEY METRIC');
}
const WAIT_MS = 30_000;

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expect(word) {
  const { value } = await lines.next();
  if (value !== word) fail(`expected ${word}, got ${value}`);
}
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const shots = process.env.SLUICE_TEST_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });
const screenshot = async (page, name) => {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`) });
};

const userDataDir = mkdtempSync(join(tmpdir(), 'sluice-dashboard-'));
let context;
try {
  context = await launchPersistent(userDataDir);
  const page = context.pages()[0] ?? await context.newPage();
  await page.setViewportSize({ width: 1200, height: 800 });
  page.on('dialog', (dialog) => dialog.accept());
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    // A refused request is logged by the browser itself; the page shows it in words.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      errors.push(message.text());
    }
  });
  await page.goto(`${url}/`);
  if (mode === 'admin') {
    await admin(page);
  } else if (mode === 'alerts') {
    await alerts(page);
  } else {
    await explorer(page);
  }
  if (errors.length) fail(`the page reported errors: ${errors.join('; ')}`);
} catch (error) {
  fail(`dashboard: ${error.stack || error}`);
} finally {
  await context?.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(0);

/// `admin` mode (READ_KEY is an admin key): pipeline health, a key made and revoked.
///   <- {"phase": "health", "state", "partitions", "rates", "secret", "letters"}
///   -> "revoke"
///   <- {"phase": "revoked", "rows"}
async function admin(page) {
  await page.fill('#key', readKey);
  await page.press('#key', 'Enter');
  const row = page.locator('#pipelines tbody tr', { hasText: metric });
  await row.waitFor({ timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelector('#rates').textContent.includes('Per second'),
    null, { timeout: WAIT_MS });
  // A tenant made through the form, with its own request limit.
  await page.fill('#tenant-name', 'news');
  await page.fill('#tenant-rps', '5');
  await page.click('#new-tenant-form button[type=submit]');
  const news = page.locator('#tenants tbody tr', { hasText: 'news' });
  await news.waitFor({ timeout: WAIT_MS });
  const tenants = await page.locator('#tenants tbody tr').allTextContents();
  const tenantOnForm = await page.inputValue('#new-tenant');
  await page.selectOption('#new-role', 'read');
  await page.fill('#new-tenant', 'shop');
  await page.fill('#new-label', 'from-the-page');
  await page.click('#new-key button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#secret').textContent.includes('rk_'),
    null, { timeout: WAIT_MS });
  const cells = await row.locator('td').allTextContents();
  const secret = (await page.textContent('#secret')).match(/rk_[A-Za-z0-9]+/)[0];
  const letters = await page.locator('#letters tbody tr').allTextContents();
  await screenshot(page, 'health');
  say({ phase: 'health', state: cells[1], partitions: cells[5], rates: await page.textContent('#rates'),
    secret, letters, tenants, tenantOnForm, explorerShown: await page.isVisible('#explorer') });
  await expect('revoke');
  const made = page.locator('#keys tbody tr', { hasText: 'from-the-page' });
  await made.locator('button').click();
  await made.waitFor({ state: 'detached', timeout: WAIT_MS });
  say({ phase: 'revoked', rows: await page.locator('#keys tbody tr').count() });
  await expect('delete');
  await news.locator('button').click();
  await news.waitFor({ state: 'detached', timeout: WAIT_MS });
  say({ phase: 'deleted', tenants: await page.locator('#tenants tbody tr').allTextContents() });
}

/// `alerts` mode (READ_KEY a read key of a tenant with an alert rule, evaluated, not firing):
/// the Alerts view opened from the navigation with the keyboard, then the rule firing.
///   <- {"phase": "quiet", "empty", "badgeHidden", "address", "summary"}
///   -> "fired"                                   the rule fires (the API lists it as firing)
///   <- {"phase": "alerts", "badge", "badgeLabel", "rows", "history", "summary"}   the firing
///      instance listed and counted in the navigation, the view read again by itself
///   <- {"phase": "narrow", "scrollWidth", "rows"}   the view in a 360 px wide window
async function alerts(page) {
  await page.fill('#key', readKey);
  await page.press('#key', 'Enter');
  await page.locator('#metrics button', { hasText: metric }).waitFor({ timeout: WAIT_MS });
  await page.focus('#alerts-link');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#alerts-view:not([hidden]) #firing-empty:not([hidden])',
    { timeout: WAIT_MS });
  say({ phase: 'quiet', ...(await page.evaluate(() => ({
    empty: document.querySelector('#firing-empty').textContent,
    badgeHidden: document.querySelector('#alert-badge').hidden,
    address: location.hash,
    summary: document.querySelector('#alert-summary').textContent,
  }))) });

  await expect('fired');
  // Read again by the page every 10 s: no reload, no click.
  await page.waitForFunction(() => {
    const badge = document.querySelector('#alert-badge');
    return !badge.hidden && badge.textContent === '1'
      && document.querySelectorAll('#firing tbody tr').length > 0;
  }, null, { timeout: WAIT_MS });
  const read = () => page.evaluate(() => {
    const rows = (selector) => [...document.querySelectorAll(`${selector} tbody tr`)]
      .map((tr) => [...tr.children].map((td) => td.textContent));
    return {
      badge: document.querySelector('#alert-badge').textContent,
      badgeLabel: document.querySelector('#alerts-link').getAttribute('aria-label'),
      rows: rows('#firing'),
      history: rows('#history'),
      summary: document.querySelector('#alert-summary').textContent,
      scrollWidth: document.documentElement.scrollWidth,
    };
  });
  const fired = await read();
  say({ phase: 'alerts', ...fired });
  await screenshot(page, 'alerts');

  // A narrow window (a phone held upright): the view fits, nothing scrolls sideways.
  await page.setViewportSize({ width: 360, height: 740 });
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
  const narrow = await read();
  say({ phase: 'narrow', scrollWidth: narrow.scrollWidth, rows: narrow.rows });
  await screenshot(page, 'alerts-narrow');
}

/// The read key's explorer and boards (the conversation at the top of this file).
async function explorer(page) {
  // A wrong key: refused, in words, and still on the sign-in form.
  await page.fill('#key', 'rk_not_a_key_0123456789');
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#problem:not([hidden])', { timeout: WAIT_MS });
  say({ phase: 'refused', problem: await page.textContent('#problem'),
    signInShown: await page.isVisible('#sign-in'), explorerShown: await page.isVisible('#explorer') });

  // The right key, keyboard only: type it and press Enter.
  await page.fill('#key', readKey);
  await page.press('#key', 'Enter');
  const button = page.locator('#metrics button', { hasText: metric });
  await button.waitFor({ timeout: WAIT_MS });
  await button.focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#chart[data-points]', { timeout: WAIT_MS });
  const read = async () => page.evaluate(() => ({
    points: Number(document.querySelector('#chart').dataset.points),
    series: Number(document.querySelector('#chart').dataset.series),
    rows: [...document.querySelectorAll('#top-table tbody tr')]
      .map((tr) => [...tr.children].map((td) => td.textContent)),
    legend: document.querySelector('#legend').textContent,
    canvas: Boolean(document.querySelector('#chart canvas')),
  }));
  const loaded = await read();
  say({ phase: 'loaded', ...loaded });
  await screenshot(page, 'explorer');

  await expect('sent');
  const sent = Date.now();
  await page.waitForFunction(
    (before) => Number(document.querySelector('#chart').dataset.series) > before,
    loaded.series, { timeout: WAIT_MS, polling: 'raf' },
  );
  say({ phase: 'live', ms: Date.now() - sent, ...(await read()) });

  // A custom range: only its windows are drawn, and the address keeps the view.
  const { value: line } = await lines.next();
  const custom = JSON.parse(line);
  await page.selectOption('#range', 'custom');
  await page.fill('#from', custom.from);
  await page.fill('#to', custom.to);
  await page.dispatchEvent('#to', 'change');
  await page.waitForFunction((from) => location.hash.includes('range=custom')
    && document.querySelector('#from').value === from, custom.from, { timeout: WAIT_MS });
  await page.waitForFunction(
    (expected) => Number(document.querySelector('#chart').dataset.points) === expected,
    custom.points, { timeout: WAIT_MS },
  ).catch(() => {});
  say({ phase: 'custom', ...(await read()), address: await page.evaluate(() => location.hash) });
  await page.selectOption('#range', '1h');
  await page.waitForFunction(() => !location.hash.includes('custom'), null, { timeout: WAIT_MS });

  // The view saved to a board through the form, then the board opened by its URL as a wall.
  await page.fill('#board-name', 'wall');
  await page.press('#board-name', 'Enter');
  await page.waitForFunction(() => document.querySelector('#saved').textContent.includes('wall'),
    null, { timeout: WAIT_MS });
  await page.goto(`${url}/#board=wall&wall`);
  await page.waitForSelector('#panels .panel-chart[data-points]', { timeout: WAIT_MS });
  const panel = () => page.evaluate(() => ({
    panels: document.querySelectorAll('#panels .panel').length,
    points: Number(document.querySelector('#panels .panel-chart').dataset.points),
    series: Number(document.querySelector('#panels .panel-chart').dataset.series),
    title: document.querySelector('#board-title').textContent,
    headerHidden: getComputedStyle(document.querySelector('header')).display === 'none',
  }));
  const board = await panel();
  say({ phase: 'board', ...board });
  await screenshot(page, 'board');
  await expect('sent');
  await page.waitForFunction(
    (before) => Number(document.querySelector('#panels .panel-chart').dataset.series) > before,
    board.series, { timeout: WAIT_MS },
  );
  say({ phase: 'board-live', ...(await panel()) });

  // A narrow window (a phone held upright): the explorer fits, nothing scrolls sideways.
  await page.setViewportSize({ width: 360, height: 740 });
  await page.goto(`${url}/#metric=${encodeURIComponent(metric)}`);
  // Redrawn for the new width (or reported as it is, for the test to say what is wrong).
  await page.waitForFunction(() => {
    const canvas = document.querySelector('#explorer:not([hidden]) #chart canvas');
    return canvas && canvas.getBoundingClientRect().width <= 360;
  }, null, { timeout: 10_000 }).catch(() => {});
  say({ phase: 'narrow', ...(await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    chartWidth: document.querySelector('#chart canvas').getBoundingClientRect().width,
    metricsListed: document.querySelectorAll('#metrics button').length,
  }))) });
}

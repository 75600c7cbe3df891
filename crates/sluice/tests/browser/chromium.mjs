// Chromium as the browser tests and the dashboard benchmark start it: Debian's build
// (SLUICE_TEST_CHROMIUM) driven by playwright-core from SLUICE_TEST_BROWSER_MODULES (both
// installed by scripts/browser.sh), headless, with nothing running in the background.

import { createRequire } from 'node:module';
import { join } from 'node:path';

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function options() {
  const modules = process.env.SLUICE_TEST_BROWSER_MODULES;
  const executablePath = process.env.SLUICE_TEST_CHROMIUM;
  if (!modules || !executablePath) {
    throw new Error('set SLUICE_TEST_BROWSER_MODULES and SLUICE_TEST_CHROMIUM (scripts/browser.sh prints them)');
  }
  const { chromium } = createRequire(join(modules, 'noop.js'))('playwright-core');
  return { chromium, launch: { executablePath, headless: true, args: ARGS } };
}

/// One browser context whose profile lives in `userDataDir`.
export function launchPersistent(userDataDir) {
  const { chromium, launch } = options();
  return chromium.launchPersistentContext(userDataDir, launch);
}

/// A browser that makes fresh contexts.
export function launch() {
  const { chromium, launch } = options();
  return chromium.launch(launch);
}

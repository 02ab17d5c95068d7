// What the headless Chromium drivers share: a test runner that prints "PASS name" /
// "FAIL name: why" and a final "RESULT passed=N failed=M" (what run.sh tallies), and a
// Chromium profile in a temporary directory.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/// Every wait of a browser test is bounded by this (ms).
export const T = 10_000;

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/// A runner whose test names start with `prefix.`.
export function suite(prefix) {
  let passed = 0;
  let failed = 0;
  return {
    async test(name, fn) {
      try {
        await fn();
        console.log(`PASS ${prefix}.${name}`);
        passed++;
      } catch (e) {
        console.log(`FAIL ${prefix}.${name}: ${String(e && e.message || e).split('\n')[0]}`);
        console.error(e);
        failed++;
      }
    },
    /// Prints the result line and exits (status 1 when a test failed).
    finish() {
      console.log(`RESULT passed=${passed} failed=${failed}`);
      process.exit(failed ? 1 : 0);
    },
  };
}

/// Headless Chromium with a fresh profile; `close()` also removes the profile.
export async function launch(options = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'wsrelay-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--no-first-run', '--disable-component-update', '--disable-sync',
    ],
    ...options,
  });
  context.setDefaultTimeout(T);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

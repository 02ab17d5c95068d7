// Drives the built-in chat demo (`wsrelay run`) in headless Chromium: the page logs no
// console error (no missing resource, a `pattern` valid under the `v` flag), shows the
// connection's state, and reconnects by itself after the server restarts.
//
// Usage: node demo_browser.mjs DEMO_PORT RESTART_CMD
//   DEMO_PORT    the demo's port on 127.0.0.1
//   RESTART_CMD  a shell command that stops the demo and starts it again on the same port,
//                returning once it serves
// Prints "PASS name" / "FAIL name: why" per test and "RESULT passed=N failed=M".
import { execSync } from 'node:child_process';
import { assert, launch, suite, T } from './browser_support.mjs';

const [demoPort, restart] = process.argv.slice(2);
if (!demoPort || !restart) {
  console.error('usage: node demo_browser.mjs DEMO_PORT RESTART_CMD');
  process.exit(2);
}
const DEMO = `http://127.0.0.1:${demoPort}/`;
const { test, finish } = suite('demo');
const browser = await launch({ viewport: { width: 1000, height: 700 } });
const { context } = browser;
const errors = [];
const page = await context.newPage();
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('pageerror', (e) => errors.push(String(e)));
page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });

const state = () => page.$eval('#state', (el) => el.dataset.state);

try {
  await test('loads_without_console_errors', async () => {
    await page.goto(DEMO);
    await page.waitForLoadState('load');
    // The icon request (if any) happens after load; give it a moment.
    await page.waitForTimeout(300);
    const valid = await page.$eval('#room', (el) => el.checkValidity());
    assert(valid, 'the default room does not match its own pattern');
    assert(errors.length === 0, `errors: ${errors.join(' | ')}`);
  });

  await test('pattern_rejects_bad_rooms', async () => {
    await page.fill('#room', 'no spaces');
    assert(!(await page.$eval('#room', (el) => el.checkValidity())), '"no spaces" accepted');
    await page.fill('#room', 'a-b_c9');
    assert(await page.$eval('#room', (el) => el.checkValidity()), '"a-b_c9" refused');
    assert(errors.length === 0, `errors: ${errors.join(' | ')}`);
  });

  await test('shows_state_and_reconnects_after_restart', async () => {
    await page.fill('#user', 'carol');
    await page.fill('#room', 'restart');
    await page.click('#connect');
    await page.waitForFunction(() => document.getElementById('state').dataset.state === 'open');
    await page.evaluate(() => {
      window.states = [];
      const el = document.getElementById('state');
      new MutationObserver(() => window.states.push(el.dataset.state))
        .observe(el, { attributes: true, attributeFilter: ['data-state'] });
    });
    execSync(restart, { stdio: 'inherit', timeout: 3 * T });
    // The page comes back by itself, having shown that it was reconnecting.
    await page.waitForFunction(() => document.getElementById('state').dataset.state === 'open'
      && document.getElementById('count').textContent === '1', null, { timeout: 2 * T });
    const seen = await page.evaluate(() => window.states);
    assert(seen.includes('reconnecting'), `states seen: ${seen.join(',')}`);
  });

  await test('leave_stops_reconnecting', async () => {
    await page.click('#connect');
    await page.waitForFunction(() => document.getElementById('state').dataset.state === 'closed');
    await page.waitForTimeout(1500);
    assert(await state() === 'closed', 'reconnected after Leave');
  });

  await test('no_console_errors_at_the_end', async () => {
    // A WebSocket refused while the server restarts is logged by Chromium as an error; those
    // are expected here, nothing else is.
    const other = errors.filter((e) => !e.includes('WebSocket connection to'));
    assert(other.length === 0, `errors: ${other.join(' | ')}`);
  });
} finally {
  await browser.close();
}
finish();

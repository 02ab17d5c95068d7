// Drives the ops dashboard (`/dashboard` on the ops listener) in headless Chromium.
//
// Usage: node dashboard_browser.mjs APP_PORT OPS_PORT TOKEN
//   APP_PORT  a copy of the chat demo on 127.0.0.1 (its clients are what the dashboard counts)
//   OPS_PORT  that app's ops listener, with the admin API on
//   TOKEN     the admin token
// Logs in, watches [data-metric=connections] follow WebSocket clients opened and closed,
// closes a client with a code through the page (behind its confirmation), and checks that
// the page logged no console error (a CSP violation would be one) and never put the token in
// a URL. Prints "PASS name" / "FAIL name: why" per test, "STALENESS ms=N" for each measured
// update, and "RESULT passed=N failed=M". Exit status 1 when a test failed.
import { assert, launch, suite, T } from './browser_support.mjs';

const [appPort, opsPort, token] = process.argv.slice(2);
if (!appPort || !opsPort || !token) {
  console.error('usage: node dashboard_browser.mjs APP_PORT OPS_PORT TOKEN');
  process.exit(2);
}
const APP = `http://127.0.0.1:${appPort}/`;
const DASHBOARD = `http://127.0.0.1:${opsPort}/dashboard`;
const { test, finish } = suite('dashboard');
const browser = await launch({ viewport: { width: 1200, height: 900 } });
const { context } = browser;

const errors = [];
const urls = [];
const dash = await context.newPage();
dash.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
dash.on('pageerror', (e) => errors.push(String(e)));
dash.on('request', (r) => urls.push(r.url()));
// The clients live in a page of the app's origin (same-origin WebSockets).
const clients = await context.newPage();

const count = () => dash.textContent('[data-metric="connections"]');
async function waitCount(n) {
  await dash.waitForFunction(
    (want) => document.querySelector('[data-metric="connections"]').textContent === String(want),
    n, { timeout: T });
}

/// Opens `n` clients in the clients page; resolves when all are open.
async function openClients(n, room) {
  await clients.evaluate(([n, room]) => {
    window.sockets = window.sockets || [];
    window.closes = window.closes || [];
    return Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/ws/${room}?user=u${window.sockets.length}`);
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('websocket error'));
      ws.onclose = (e) => window.closes.push(e.code);
      window.sockets.push(ws);
    })));
  }, [n, room]);
}

try {
  await clients.goto(APP);

  await test('login_keeps_the_token_out_of_urls', async () => {
    await dash.goto(DASHBOARD);
    assert(await dash.isVisible('input[name=token]'), 'no login field');
    await dash.fill('input[name=token]', token);
    await dash.press('input[name=token]', 'Enter');
    await dash.waitForSelector('#board:not([hidden])');
    await dash.waitForFunction(() => document.getElementById('status').dataset.state === 'live');
    const stored = await dash.evaluate(() => sessionStorage.getItem('wsrelay.dashboard.token'));
    assert(stored === token, 'the token is not in sessionStorage');
    const leaked = urls.filter((u) => u.includes(token));
    assert(leaked.length === 0, `token in a URL: ${leaked[0]}`);
    await waitCount(0);
  });

  await test('connections_follow_clients', async () => {
    const before = Number(await count());
    // Staleness: from a client being open to the page showing it.
    for (let i = 1; i <= 3; i++) {
      await openClients(1, 'dash');
      const opened = Date.now();
      await waitCount(before + i);
      console.log(`STALENESS ms=${Date.now() - opened}`);
    }
    await clients.evaluate(() => { window.sockets[0].close(1000); window.sockets[1].close(1000); });
    await waitCount(before + 1);
    const rows = await dash.$$eval('#rows tr', (trs) => trs.length);
    assert(rows === before + 1, `table rows: ${rows}`);
  });

  await test('search_filters_the_table', async () => {
    await dash.fill('#search', 'no-such-connection');
    await dash.waitForFunction(() => document.querySelectorAll('#rows tr').length === 0);
    await dash.fill('#search', '/ws/dash');
    await dash.waitForFunction(() => document.querySelectorAll('#rows tr').length === 1);
  });

  await test('close_action_with_a_code', async () => {
    await dash.click('#rows tr button');
    await dash.waitForSelector('#confirm[open]');
    await dash.fill('#confirm input[name=code]', '4001');
    await dash.click('#confirm-ok');
    await dash.waitForSelector('#confirm[open]', { state: 'detached' });
    await clients.waitForFunction(() => window.closes.includes(4001));
    await waitCount(0);
  });

  await test('reload_keeps_the_session', async () => {
    await dash.reload();
    await dash.waitForFunction(() => document.getElementById('status').dataset.state === 'live');
    assert(!(await dash.isVisible('input[name=token]')), 'asked for the token again');
  });

  await test('no_console_errors', async () => {
    assert(errors.length === 0, `console errors: ${errors.join(' | ')}`);
  });
} finally {
  await browser.close();
}
finish();

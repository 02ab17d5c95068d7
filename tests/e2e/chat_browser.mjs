// Drives the built-in chat demo (`wsrelay run`) in headless Chromium.
//
// Usage: node chat_browser.mjs DEMO_PORT FOREIGN_PORT SCREENSHOT_PATH
//   DEMO_PORT     the demo's port on 127.0.0.1
//   FOREIGN_PORT  a second local HTTP server serving tests/e2e/foreign.html
// Prints one "PASS name" / "FAIL name: why" per test and, last,
// "RESULT passed=N failed=M". Exit status 1 when a test failed.
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import { dirname } from 'node:path';
import { assert, launch, suite, T } from './browser_support.mjs';

const [demoPort, foreignPort, shot] = process.argv.slice(2);
if (!demoPort || !foreignPort || !shot) {
  console.error('usage: node chat_browser.mjs DEMO_PORT FOREIGN_PORT SCREENSHOT_PATH');
  process.exit(2);
}
const DEMO = `http://127.0.0.1:${demoPort}/`;
const { test, finish } = suite('chat');
const browser = await launch({ viewport: { width: 1000, height: 700 } });
const { context } = browser;

async function joinRoom(page, user, room) {
  await page.goto(DEMO);
  await page.fill('#user', user);
  await page.fill('#room', room);
  await page.click('#connect');
  await page.waitForFunction(() => !document.getElementById('text').disabled);
}
async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#sendButton');
}
async function seesLine(page, who, text) {
  // A chat line is <p><b>who: </b>text</p>.
  await page.waitForFunction(
    ([w, t]) => [...document.querySelectorAll('#log p')].some(
      (p) => p.querySelector('b') && p.querySelector('b').textContent === w + ': ' && p.textContent === w + ': ' + t),
    [who, text]);
}

try {
  const room = 'e2e' + Date.now().toString(36);
  const alice = await context.newPage();
  const bob = await context.newPage();

  await test('two_pages_join_same_room', async () => {
    await joinRoom(alice, 'alice', room);
    await joinRoom(bob, 'bob', room);
    // Both see both members in the room list.
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => document.getElementById('count').textContent === '2');
      const members = await page.$$eval('#members li', (lis) => lis.map((li) => li.textContent));
      assert(JSON.stringify(members) === '["alice","bob"]', `members: ${JSON.stringify(members)}`);
    }
    const status = await bob.textContent('#status');
    assert(status.includes(`Connected to room ${room} as bob`), `status: ${status}`);
  });

  await test('alice_to_bob', async () => {
    await say(alice, 'hello from alice');
    await seesLine(bob, 'alice', 'hello from alice');
    await seesLine(alice, 'alice', 'hello from alice');
  });

  await test('bob_to_alice', async () => {
    await say(bob, 'olá, alice — ünïcödé');
    await seesLine(alice, 'bob', 'olá, alice — ünïcödé');
  });

  await test('screenshot', async () => {
    mkdirSync(dirname(shot), { recursive: true });
    await alice.screenshot({ path: shot, fullPage: true });
  });

  await test('leave_notice', async () => {
    await bob.click('#connect'); // "Leave"
    await alice.waitForFunction(() => document.getElementById('count').textContent === '1');
    await alice.waitForFunction(() => [...document.querySelectorAll('#log p.notice')]
      .some((p) => p.textContent === 'bob left'));
  });

  await test('foreign_origin_refused', async () => {
    const page = await context.newPage();
    const target = `ws://127.0.0.1:${demoPort}/ws/${room}?user=mallory`;
    await page.goto(`http://127.0.0.1:${foreignPort}/foreign.html#${encodeURIComponent(target)}`);
    const result = await page.waitForFunction(() => window.wsResult, null, { timeout: T });
    const r = await result.jsonValue();
    assert(r.opened === false, `socket opened from a foreign origin: ${JSON.stringify(r)}`);
    assert(r.error === true, `no error event: ${JSON.stringify(r)}`);
    assert(r.code === 1006, `close code ${r.code}, expected 1006 (handshake refused)`);
    // Nobody named mallory joined the room.
    const members = await alice.$$eval('#members li', (lis) => lis.map((li) => li.textContent));
    assert(!members.includes('mallory'), `mallory joined: ${JSON.stringify(members)}`);
    // The server answered the handshake with 403 (checked without a browser, which hides the status).
    const res = await new Promise((resolve) => {
      const req = http.get(target.replace('ws://', 'http://'), {
        headers: {
          Origin: `http://127.0.0.1:${foreignPort}`,
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
        timeout: T,
      });
      req.on('response', (r) => { r.resume(); resolve({ status: r.statusCode }); });
      req.on('upgrade', (r, socket) => { socket.destroy(); resolve({ status: r.statusCode }); });
      req.on('error', (e) => resolve({ status: `error ${e.message}` }));
      req.on('timeout', () => { req.destroy(); resolve({ status: 'timeout' }); });
    });
    assert(res.status === 403, `foreign-origin handshake got ${res.status}, expected 403`);
    await page.close();
  });

  await test('same_origin_page_still_works', async () => {
    await say(alice, 'still here');
    await seesLine(alice, 'alice', 'still here');
  });
} finally {
  await browser.close();
}

finish();

// permessage-deflate and a subprotocol through the relay, from headless Chromium.
//
// Usage: node extensions_browser.mjs ECHO_URL PAGE_URL
//   ECHO_URL  ws:// echo endpoint of the relay (examples/echo with wsrelay.compression and
//             wsrelay.subprotocols including v2.chat)
//   PAGE_URL  any http:// page the WebSocket is opened from
// Prints one "PASS name" / "FAIL name: why" per test and, last,
// "RESULT passed=N failed=M". Exit status 1 when a test failed.
import { assert, launch, suite } from './browser_support.mjs';

const [echoUrl, pageUrl] = process.argv.slice(2);
if (!echoUrl || !pageUrl) {
  console.error('usage: node extensions_browser.mjs ECHO_URL PAGE_URL');
  process.exit(2);
}
const { test, finish } = suite('browser');
const browser = await launch();
const { context } = browser;

try {
  const page = await context.newPage();
  await page.goto(pageUrl);

  await test('subprotocol_and_deflate_negotiated', async () => {
    const got = await page.evaluate(async (url) => {
      const ws = new WebSocket(url, ['v2.chat']);
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('websocket error'));
      });
      const result = { protocol: ws.protocol, extensions: ws.extensions };
      ws.close();
      return result;
    }, echoUrl);
    assert(got.protocol === 'v2.chat', `ws.protocol = ${JSON.stringify(got.protocol)}`);
    assert(got.extensions.startsWith('permessage-deflate'), `ws.extensions = ${JSON.stringify(got.extensions)}`);
  });

  await test('compressed_json_round_trip', async () => {
    const ok = await page.evaluate(async (url) => {
      const ws = new WebSocket(url, ['v2.chat']);
      await new Promise((resolve) => { ws.onopen = resolve; });
      const rows = Array.from({ length: 500 }, (_, i) => ({ id: i, user: `user${i}`, online: i % 2 === 0 }));
      const text = JSON.stringify(rows);
      const echo = await new Promise((resolve) => {
        ws.onmessage = (e) => resolve(e.data);
        ws.send(text);
      });
      ws.close();
      return echo === text && text.length > 10000;
    }, echoUrl);
    assert(ok, 'the echo differs from what was sent');
  });
} finally {
  await browser.close();
}

finish();

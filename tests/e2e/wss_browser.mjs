// wss:// from headless Chromium that trusts the test CA (imported into an NSS database
// under the HOME given in CHROMIUM_HOME; see run.sh), through the relay's echo app.
//
// Usage: node wss_browser.mjs HTTPS_URL
//   HTTPS_URL  https:// origin of the echo app served with the test certificate
// The page is loaded from HTTPS_URL first (an HTTP/2 connection to the origin, so Chromium
// may carry the WebSocket over it, RFC 8441), then a WebSocket echoes through the relay.
// Prints one "PASS name" / "FAIL name: why" per test and, last,
// "RESULT passed=N failed=M". Exit status 1 when a test failed.
import { assert, launch, suite } from './browser_support.mjs';

const [httpsUrl] = process.argv.slice(2);
if (!httpsUrl) {
  console.error('usage: node wss_browser.mjs HTTPS_URL');
  process.exit(2);
}
const { test, finish } = suite('browser_wss');
const browser = await launch({ env: { ...process.env, HOME: process.env.CHROMIUM_HOME } });
const { context } = browser;

try {
  const page = await context.newPage();

  await test('https_page_with_the_test_ca', async () => {
    // The echo endpoint answers a plain GET with 426: what matters is that the TLS
    // handshake succeeded with a certificate Chromium verified against the test CA.
    const response = await page.goto(httpsUrl);
    assert(response, 'no response');
    assert(response.status() === 426, `status ${response.status()}`);
    const security = await response.securityDetails();
    assert(security && security.subjectName === 'localhost', `certificate ${security && security.subjectName}`);
  });

  await test('wss_echo_round_trip', async () => {
    const wssUrl = httpsUrl.replace(/^https:/, 'wss:');
    const got = await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('websocket error'));
      });
      const texts = ['hello over wss', 'z'.repeat(70000)];
      const echoes = [];
      for (const text of texts) {
        const echo = new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); });
        ws.send(text);
        echoes.push(await echo);
      }
      ws.close();
      return texts.every((text, i) => echoes[i] === text);
    }, wssUrl);
    assert(got === true, 'echo differs');
  });
} finally {
  await browser.close();
}
finish();

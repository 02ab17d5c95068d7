// Load generator with permessage-deflate (the Rust one, `wsrelay-bench`, does not compress).
//
// Usage:
//   node deflate-load.js echo URL [--connections 100] [--payload 1024] [--seconds 10] [--deflate]
//     closed-loop echo of a JSON text message of PAYLOAD bytes; prints one JSON line:
//     msgs_per_sec, p50_us, p99_us, wire bytes per message each way, extensions negotiated.
//   node deflate-load.js idle URL --connections N --server-pid PID [--hold 3] [--deflate]
//     opens N connections (sending one message on each), holds them, and prints the growth
//     of the server's RSS per connection.
// Both sides compress as wsrelay does with --deflate: no context takeover, threshold 256.
const WebSocket = require("ws");
const fs = require("fs");

const [mode, url, ...rest] = process.argv.slice(2);
const arg = (name, fallback) => {
  const at = rest.indexOf(`--${name}`);
  return at >= 0 ? rest[at + 1] : fallback;
};
const deflate = rest.includes("--deflate");
const connections = Number(arg("connections", 100));
const payloadSize = Number(arg("payload", 1024));

function json(size) {
  let text = "[";
  for (let i = 0; text.length < size; i++) {
    text += JSON.stringify({ id: i, user: `user${i}`, online: i % 3 === 0, score: i * 7 }) + ",";
  }
  return text.slice(0, size);
}

function open() {
  const ws = new WebSocket(url, {
    perMessageDeflate: deflate
      ? { clientNoContextTakeover: true, serverNoContextTakeover: true, threshold: 256, zlibDeflateOptions: { level: 1 } }
      : false,
  });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

function rssKib(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

async function echo() {
  const seconds = Number(arg("seconds", 10));
  const message = json(payloadSize);
  const sockets = await Promise.all(Array.from({ length: connections }, open));
  const latencies = [];
  let count = 0;
  let running = true;
  const wire0 = sockets.map((ws) => [ws._socket.bytesWritten, ws._socket.bytesRead]);
  for (const ws of sockets) {
    let sent = 0n;
    ws.on("message", () => {
      latencies.push(Number(process.hrtime.bigint() - sent) / 1000);
      count++;
      if (running) {
        sent = process.hrtime.bigint();
        ws.send(message);
      }
    });
    sent = process.hrtime.bigint();
    ws.send(message);
  }
  await new Promise((r) => setTimeout(r, seconds * 1000));
  running = false;
  const written = sockets.reduce((sum, ws, i) => sum + ws._socket.bytesWritten - wire0[i][0], 0);
  const read = sockets.reduce((sum, ws, i) => sum + ws._socket.bytesRead - wire0[i][1], 0);
  latencies.sort((a, b) => a - b);
  const q = (p) => Math.round(latencies[Math.floor((latencies.length - 1) * p)] || 0);
  console.log(JSON.stringify({
    deflate,
    extensions: sockets[0].extensions,
    connections,
    payload: payloadSize,
    msgs_per_sec: Math.round(count / seconds),
    p50_us: q(0.5),
    p99_us: q(0.99),
    wire_bytes_per_msg_sent: Math.round(written / count),
    wire_bytes_per_msg_received: Math.round(read / count),
  }));
  for (const ws of sockets) ws.terminate();
}

async function idle() {
  const pid = Number(arg("server-pid"));
  const hold = Number(arg("hold", 3));
  const before = rssKib(pid);
  const sockets = [];
  for (let i = 0; i < connections; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, connections - i) }, open));
    sockets.push(...batch);
  }
  // One message each, so that both sides have compressed and inflated once.
  const message = json(payloadSize);
  await Promise.all(sockets.map((ws) => new Promise((resolve) => {
    ws.once("message", resolve);
    ws.send(message);
  })));
  await new Promise((r) => setTimeout(r, hold * 1000));
  const after = rssKib(pid);
  console.log(JSON.stringify({
    deflate,
    extensions: sockets[0].extensions,
    connections,
    rss_before_kib: before,
    rss_after_kib: after,
    bytes_per_connection: Math.round(((after - before) * 1024) / connections),
  }));
  for (const ws of sockets) ws.terminate();
}

(mode === "idle" ? idle() : echo()).then(
  () => process.exit(0),
  (e) => { console.error(e); process.exit(1); },
);

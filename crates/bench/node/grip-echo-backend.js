// HTTP backend for Pushpin's WebSocket-over-HTTP protocol (from GRIP): every request carries events
// ("OPEN", "TEXT <hex len>", "BINARY <hex len>", "CLOSE", "PING", ...) and the response carries
// the events to send back. Echoes TEXT/BINARY, accepts OPEN, answers CLOSE with CLOSE.
// Usage: node grip-echo-backend.js PORT
const http = require("http");
const port = Number(process.argv[2] || 9103);

function parseEvents(buf) {
  const events = [];
  let at = 0;
  while (at < buf.length) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) break;
    const line = buf.toString("latin1", at, eol);
    at = eol + 2;
    const space = line.indexOf(" ");
    const type = space < 0 ? line : line.slice(0, space);
    let content = null;
    if (space >= 0) {
      const len = parseInt(line.slice(space + 1), 16);
      content = buf.subarray(at, at + len);
      at += len + 2;
    }
    events.push({ type, content });
  }
  return events;
}

function encode(type, content) {
  if (content == null) return Buffer.from(`${type}\r\n`, "latin1");
  return Buffer.concat([
    Buffer.from(`${type} ${content.length.toString(16)}\r\n`, "latin1"),
    content,
    Buffer.from("\r\n", "latin1"),
  ]);
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const out = [];
      for (const ev of parseEvents(Buffer.concat(chunks))) {
        if (ev.type === "OPEN") out.push(encode("OPEN"));
        else if (ev.type === "TEXT" || ev.type === "BINARY") out.push(encode(ev.type, ev.content));
        else if (ev.type === "CLOSE") out.push(encode("CLOSE", ev.content));
      }
      // No "Sec-WebSocket-Extensions: grip" answer: with it Pushpin would expect every
      // message to carry the GRIP "m:" prefix; plain WebSocket-over-HTTP relays as is.
      res.writeHead(200, { "Content-Type": "application/websocket-events" });
      res.end(Buffer.concat(out));
    });
  })
  .listen(port, "127.0.0.1", () => console.error(`grip echo backend listening on ${port}`));

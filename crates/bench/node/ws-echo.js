// Echo server on Node's `ws` (permessage-deflate off, as every other peer).
// Usage: node ws-echo.js PORT
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2] || 9101);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on("listening", () => console.error(`ws echo listening on ${port}`));

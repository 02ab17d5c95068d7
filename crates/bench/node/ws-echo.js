// Echo server on Node's `ws` (permessage-deflate off, as every other peer).
// Usage: node ws-echo.js PORT [--deflate]
//   --deflate: permessage-deflate on, set up as wsrelay's (no context takeover both ways,
//              zlib level 1, messages under 256 bytes uncompressed).
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2] || 9101);
const perMessageDeflate = process.argv.includes("--deflate")
  ? {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      zlibDeflateOptions: { level: 1 },
      threshold: 256,
    }
  : false;
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on("listening", () => console.error(`ws echo listening on ${port}`));

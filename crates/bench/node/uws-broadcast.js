// Broadcast baseline on uWebSockets.js pub/sub (@trufflesuite/uws-js-unofficial): every
// connection subscribes to one topic; a text frame from the sender (`?sender=1`, as
// `wsrelay-bench broadcast` connects it) is published to all of them, unchanged — the same
// contract as examples/broadcast, with uWS encoding the frame once for every subscriber.
// Usage: node uws-broadcast.js PORT
const uWS = require("@trufflesuite/uws-js-unofficial");
const port = Number(process.argv[2] || 9110);
const app = uWS.App();
app
  .ws("/*", {
    compression: uWS.DISABLED,
    maxPayloadLength: 1024 * 1024,
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      const sender = (req.getQuery() || "").split("&").includes("sender=1");
      res.upgrade(
        { sender },
        req.getHeader("sec-websocket-key"),
        req.getHeader("sec-websocket-protocol"),
        req.getHeader("sec-websocket-extensions"),
        context,
      );
    },
    open: (ws) => {
      ws.subscribe("members");
    },
    message: (ws, message, isBinary) => {
      if (ws.getUserData().sender) {
        app.publish("members", message, isBinary);
      }
    },
  })
  .listen("127.0.0.1", port, (token) => {
    if (!token) {
      console.error(`uws cannot listen on ${port}`);
      process.exit(1);
    }
    console.error(`uws broadcast listening on ${port}`);
  });

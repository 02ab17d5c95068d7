// Echo server on uWebSockets.js (@trufflesuite/uws-js-unofficial).
// Usage: node uws-echo.js PORT
const uWS = require("@trufflesuite/uws-js-unofficial");
const port = Number(process.argv[2] || 9102);
uWS
  .App()
  .ws("/*", {
    compression: uWS.DISABLED,
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    message: (ws, message, isBinary) => {
      ws.send(message, isBinary);
    },
  })
  .listen("127.0.0.1", port, (token) => {
    if (!token) {
      console.error(`uws cannot listen on ${port}`);
      process.exit(1);
    }
    console.error(`uws echo listening on ${port}`);
  });

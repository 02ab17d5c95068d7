// Node's http module answering "hello" on every request: the HTTP baseline of scripts/bench.sh.
// Usage: node http-hello.js PORT
const http = require("http");
const port = Number(process.argv[2] || 9006);
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("hello");
  })
  .listen(port, "127.0.0.1");

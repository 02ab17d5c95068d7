//! Integration tests of the gateway: real servers on 127.0.0.1:0, a real
//! HTTP client (hyper) and raw TCP for malformed requests.

mod support;

mod client_addr;
mod h2;
mod limits;
mod middleware;
mod routing;
mod shutdown;
mod static_files;
mod tls;
mod upgrade;

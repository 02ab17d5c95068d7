//! The size of an idle connection: what the README's breakdown says, kept true.

use std::mem::size_of;

use tokio::net::TcpStream;
use wsrelay_ws::{UpgradedIo, WsConnection};

/// An idle connection is this struct and nothing on the heap (see the README); a field added
/// carelessly shows here first.
#[test]
fn an_idle_connection_is_a_small_struct() {
    let tcp = size_of::<WsConnection<TcpStream>>();
    let upgraded = size_of::<WsConnection<UpgradedIo>>();
    println!(
        "WsConnection<TcpStream> = {tcp} B, WsConnection<UpgradedIo> = {upgraded} B, \
         TcpStream = {} B, UpgradedIo = {} B",
        size_of::<TcpStream>(),
        size_of::<UpgradedIo>()
    );
    assert!(tcp <= 264, "WsConnection<TcpStream> grew to {tcp} bytes");
    assert!(
        upgraded <= 272,
        "WsConnection<UpgradedIo> grew to {upgraded} bytes"
    );
}

/// The future an idle connection's task waits on is part of that task's memory: the close
/// handshake's timers and buffers must not be in it.
#[tokio::test]
async fn waiting_for_the_next_event_is_a_small_future() {
    let (server, _client) = tokio::io::duplex(64);
    let mut conn = WsConnection::new(server, &wsrelay_ws::Config::default());
    let waiting = conn.next_event();
    let size = std::mem::size_of_val(&waiting);
    println!("next_event future = {size} B");
    assert!(size <= 128, "the next_event future grew to {size} bytes");
}

//! Listen addresses (`addr` of `http.service` and `wsrelay.ops`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::fields::Entry;
use crate::error::ConfigErrorKind;

/// A required address field, parsed; records the error on `field`.
pub(super) fn required(entry: &mut Entry<'_>, field: &str) -> Option<SocketAddr> {
    let text = entry.req_str(field)?;
    match parse(&text) {
        Ok(addr) => Some(addr),
        Err(reason) => {
            entry.error(field, ConfigErrorKind::BadAddress { addr: text, reason });
            None
        }
    }
}

/// Parses a listen address: `host:port` with an IP host (`[::1]:80` for
/// IPv6), `localhost:port`, or `:port` for every interface.
fn parse(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':').filter(|port| !port.contains(':')) {
        let port = parse_port(port)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = parse_port(port)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match text.rsplit_once(':') {
        None => Err("missing port (expected e.g. \":8080\" or \"127.0.0.1:8080\")".into()),
        Some((host, port)) => {
            parse_port(port)?;
            if host.contains(':') && !host.starts_with('[') {
                Err("an IPv6 host must be in brackets, e.g. \"[::1]:8080\"".into())
            } else {
                Err(format!(
                    "host {host:?} is not an IP address (use an IP, \"localhost\", or \":PORT\" for all interfaces)"
                ))
            }
        }
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse(":8080").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            parse("localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(parse("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert!(parse("8080").unwrap_err().contains("missing port"));
        assert!(parse(":99999").unwrap_err().contains("port"));
        assert!(parse("example.com:80").unwrap_err().contains("not an IP"));
        assert!(parse("::1:80").unwrap_err().contains("brackets"));
    }
}

//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that forwards TCP
//! tells the server the client's address in a header before the first byte of the
//! client's own data.
//!
//! A server with [`ServerConfig::proxy_protocol`](crate::ServerConfig::proxy_protocol)
//! requires the header on every connection (as the protocol says a receiver must: a
//! header is never optional, or a client could send its own) and only from peers in
//! `trusted_proxies`; any other connection is closed. The header is *peeked* until it is
//! whole and then consumed to the byte, so the `TcpStream` itself goes on to hyper (and,
//! upgraded, to the WebSocket) with nothing buffered in front of it.
//!
//! `LOCAL` (v2) and `UNKNOWN` (v1) headers, which balancers send for health checks, leave
//! the peer's own address in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the protocol's own bound).
const V1_MAX: usize = 107;
/// The fixed part of a v2 header.
const V2_FIXED: usize = 16;
/// How long to wait before peeking again at a header that is not whole yet.
const PEEK_RETRY: Duration = Duration::from_millis(2);

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header is malformed.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The peer closed the connection before the header was whole.
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// What a whole header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// The header's length in bytes.
    pub(crate) len: usize,
    /// The client's address; `None` for `LOCAL`/`UNKNOWN`.
    pub(crate) source: Option<SocketAddr>,
}

/// The outcome of parsing what has arrived so far.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Whole(ProxyHeader),
    Partial,
}

/// Reads and consumes the PROXY header at the start of `stream`.
///
/// # Errors
///
/// A [`ProxyHeaderError`]; the caller closes the connection.
///
/// # Cancel safety
///
/// Not cancel safe: a header may be half consumed. The caller bounds it with a timeout
/// and drops the connection when it fires.
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<ProxyHeader, ProxyHeaderError> {
    // Long enough for a v1 line and for a v2 header up to its addresses (16 + 36 bytes).
    let mut buf = [0u8; V1_MAX];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        match parse(&buf[..n])? {
            Parsed::Whole(header) => {
                consume(stream, header.len).await?;
                return Ok(header);
            }
            // `peek` returns at once while any byte is there: wait a little for the rest.
            Parsed::Partial => tokio::time::sleep(PEEK_RETRY).await,
        }
    }
}

/// Drops the first `len` bytes of `stream` (the header, TLVs included).
async fn consume(stream: &mut TcpStream, len: usize) -> Result<(), ProxyHeaderError> {
    let mut taken = stream.take(len as u64);
    let copied = tokio::io::copy(&mut taken, &mut tokio::io::sink()).await?;
    if copied < len as u64 {
        return Err(ProxyHeaderError::Closed);
    }
    Ok(())
}

fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.starts_with(b"PROXY ") {
        return parse_v1(buf);
    }
    if buf.len() < V2_SIGNATURE.len() {
        return if V2_SIGNATURE.starts_with(buf) || b"PROXY ".starts_with(buf) {
            Ok(Parsed::Partial)
        } else {
            Err(ProxyHeaderError::Missing)
        };
    }
    if buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    Err(ProxyHeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyHeaderError::Malformed("v1 line longer than 107 bytes"))
        } else {
            Ok(Parsed::Partial)
        };
    };
    let line = std::str::from_utf8(&buf[..end])
        .map_err(|_| ProxyHeaderError::Malformed("v1 line is not ASCII"))?;
    let mut words = line.split(' ').skip(1);
    let source = match words.next() {
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let src: IpAddr = word(words.next())?;
            let _dst: IpAddr = word(words.next())?;
            let port: u16 = word(words.next())?;
            let _dst_port: u16 = word(words.next())?;
            if words.next().is_some() || (family == "TCP4") != src.is_ipv4() {
                return Err(ProxyHeaderError::Malformed(
                    "v1 address does not fit its family",
                ));
            }
            Some(SocketAddr::new(src, port))
        }
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    Ok(Parsed::Whole(ProxyHeader {
        len: end + 2,
        source,
    }))
}

fn word<T: std::str::FromStr>(word: Option<&str>) -> Result<T, ProxyHeaderError> {
    word.and_then(|w| w.parse().ok())
        .ok_or(ProxyHeaderError::Malformed("v1 address or port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Partial);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version is not 2"));
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let address_len = match buf[13] >> 4 {
        0x1 => 12,
        0x2 => 36,
        _ => 0, // AF_UNSPEC, AF_UNIX: no address we can use
    };
    if len < V2_FIXED + address_len {
        return Err(ProxyHeaderError::Malformed(
            "v2 length shorter than its addresses",
        ));
    }
    let source = match command {
        0x0 => None, // LOCAL: the balancer's own connection (a health check)
        0x1 if address_len == 0 => None,
        0x1 => {
            let Some(block) = buf.get(V2_FIXED..V2_FIXED + address_len) else {
                return Ok(Parsed::Partial);
            };
            Some(v2_source(block))
        }
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "v2 command is not LOCAL or PROXY",
            ))
        }
    };
    Ok(Parsed::Whole(ProxyHeader { len, source }))
}

/// The source address of a v2 address block (12 bytes for IPv4, 36 for IPv6).
fn v2_source(block: &[u8]) -> SocketAddr {
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    if let Ok(octets) = <[u8; 4]>::try_from(&block[..4]) {
        if block.len() == 12 {
            return SocketAddr::new(Ipv4Addr::from(octets).into(), port(8));
        }
    }
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&block[..16]);
    SocketAddr::new(Ipv6Addr::from(octets).into(), port(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> ProxyHeader {
        match parse(buf).unwrap() {
            Parsed::Whole(header) => header,
            Parsed::Partial => panic!("partial: {buf:?}"),
        }
    }

    fn v2(command: u8, family: u8, addresses: &[u8], extra: usize) -> Vec<u8> {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.push(0x20 | command);
        buf.push(family);
        let len = u16::try_from(addresses.len() + extra).unwrap();
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(addresses);
        buf.extend(std::iter::repeat_n(0u8, extra));
        buf
    }

    #[test]
    fn v1_lines() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let header = whole(line);
        assert_eq!(header.len, 45);
        assert_eq!(header.source, Some("192.0.2.1:56324".parse().unwrap()));
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
        assert_eq!(
            whole(line).source,
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(whole(b"PROXY UNKNOWN\r\n").source, None);
        assert_eq!(parse(b"PROXY TCP4 192.0").unwrap(), Parsed::Partial);
        assert_eq!(parse(b"PRO").unwrap(), Parsed::Partial);
        for bad in [
            &b"PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n"[..],
            b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 2\r\n",
            b"PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyHeaderError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
        assert!(parse(&long).is_err());
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Missing)
        ));
    }

    #[test]
    fn v2_headers() {
        let ipv4 = [192, 0, 2, 1, 198, 51, 100, 1, 0x1f, 0x90, 0x01, 0xbb];
        let header = whole(&v2(1, 0x11, &ipv4, 0));
        assert_eq!(header.len, 28);
        assert_eq!(header.source, Some("192.0.2.1:8080".parse().unwrap()));
        // TLVs after the addresses are counted in the length and skipped.
        assert_eq!(whole(&v2(1, 0x11, &ipv4, 100)).len, 128);
        let mut ipv6 = [0u8; 36];
        ipv6[0] = 0x20;
        ipv6[1] = 0x01;
        ipv6[15] = 1;
        ipv6[32] = 0x12;
        ipv6[33] = 0x34;
        assert_eq!(
            whole(&v2(1, 0x21, &ipv6, 0)).source,
            Some("[2001::1]:4660".parse().unwrap())
        );
        assert_eq!(whole(&v2(0, 0x00, &[], 0)).source, None);
        assert_eq!(
            parse(&v2(1, 0x11, &ipv4, 0)[..20]).unwrap(),
            Parsed::Partial
        );
        assert!(parse(&v2(1, 0x11, &ipv4[..4], 0)).is_err());
        assert!(parse(&v2(5, 0x11, &ipv4, 0)).is_err());
    }
}

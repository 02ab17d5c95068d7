//! The transport of the Lua `http_client` module: `wsrelay-http`'s client behind the Lua
//! engine's [`HttpClient`] seam (the engine knows nothing of hyper).

use http::HeaderMap;
use wsrelay_config::HttpClientConfig;
use wsrelay_http::client::{self, BodyStream, ClientError, ClientOptions, ClientRequest};
use wsrelay_lua::{
    ChunkFuture, HttpClient, HttpClientPolicy, OutboundError, OutboundErrorKind, OutboundFuture,
    OutboundRequest, OutboundResponse, OutboundStream,
};

/// Sends the Lua engine's requests with [`wsrelay_http::client::send`].
#[derive(Debug, Default)]
pub(crate) struct HyperClient;

impl HttpClient for HyperClient {
    fn send(&self, request: OutboundRequest) -> OutboundFuture {
        Box::pin(async move {
            let method =
                http::Method::from_bytes(request.method.as_bytes()).map_err(|_| OutboundError {
                    kind: OutboundErrorKind::Invalid,
                    message: format!("bad method {:?}", request.method),
                })?;
            let options = ClientOptions {
                connect_timeout: request.connect_timeout,
                timeout: request.timeout,
                max_response_body: request.max_response_body,
                max_redirects: request.max_redirects,
                allow_private: request.allow_private,
                ca_pem: request.ca_pem,
                server_name: request.server_name,
            };
            let req = ClientRequest {
                method,
                url: request.url,
                headers: request.headers,
                body: request.body,
            };
            if request.stream {
                let res = client::send_streaming(req, &options)
                    .await
                    .map_err(outbound_error)?;
                return Ok(OutboundResponse {
                    status: res.status.as_u16(),
                    headers: header_list(&res.headers),
                    body: bytes::Bytes::new(),
                    stream: Some(Box::new(Streamed(res.body))),
                    url: res.url,
                });
            }
            let res = client::send(req, &options).await.map_err(outbound_error)?;
            Ok(OutboundResponse {
                status: res.status.as_u16(),
                headers: header_list(&res.headers),
                body: res.body,
                stream: None,
                url: res.url,
            })
        })
    }
}

/// A streamed body, as the engine reads it.
#[derive(Debug)]
struct Streamed(BodyStream);

impl OutboundStream for Streamed {
    fn next_chunk(&mut self) -> ChunkFuture<'_> {
        Box::pin(async move { self.0.chunk().await.map_err(outbound_error) })
    }
}

/// The headers in order, names lower case, values as text (bytes that are not UTF-8
/// replaced).
fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn outbound_error(e: ClientError) -> OutboundError {
    let kind = if e.is_invalid() {
        OutboundErrorKind::Invalid
    } else if matches!(e, ClientError::Forbidden { .. }) {
        OutboundErrorKind::Forbidden
    } else if e.is_retryable() {
        OutboundErrorKind::Network
    } else {
        OutboundErrorKind::Failed
    };
    OutboundError {
        kind,
        message: e.to_string(),
    }
}

/// The engine's policy for an entry's `http_client` field: the runtime's defaults where the
/// field leaves one out.
pub(crate) fn policy(config: &HttpClientConfig) -> HttpClientPolicy {
    let d = HttpClientPolicy::default();
    let size = |n: Option<u64>, default: usize| {
        n.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    HttpClientPolicy {
        allow_private: config.allow_private,
        default_timeout: config.timeout.unwrap_or(d.default_timeout),
        max_timeout: config.max_timeout.unwrap_or(d.max_timeout),
        connect_timeout: config.connect_timeout.unwrap_or(d.connect_timeout),
        max_request_body: size(config.max_request_body, d.max_request_body),
        max_response_body: size(config.max_response_body, d.max_response_body),
        max_redirects: size(config.max_redirects, d.max_redirects),
    }
}

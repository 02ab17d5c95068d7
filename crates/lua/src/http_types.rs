//! The plain request and response that HTTP handlers see (no HTTP library types: the gateway
//! adapts them).

use bytes::Bytes;

/// An HTTP request as a `function.lua` handler sees it (`http.request()`).
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string, without `?` (percent-encoded).
    pub query: String,
    /// The headers, in order; names are matched case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The path parameters of the matched route (`/users/{id}` → `id`).
    pub params: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// What a handler answered (`http.response()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (default 200).
    pub status: u16,
    /// The headers, in the order they were first set.
    pub headers: Vec<(String, String)>,
    /// The body written with `res:write` / `res:write_json`.
    pub body: Bytes,
    /// Whether the handler wrote a body (even an empty one).
    pub body_written: bool,
}

impl Default for HttpResponse {
    fn default() -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
            body_written: false,
        }
    }
}

impl HttpResponse {
    /// The value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing earlier values.
    pub(crate) fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
    }
}

impl HttpRequest {
    /// The first value of the query parameter `name`, percent-decoded (`+` is a space).
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The first value of the header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

//! The `/admin` API: bearer-token check, listings and operator actions.

use std::collections::HashMap;

use http::{header, HeaderValue, StatusCode};
use serde_json::json;
use wsrelay_http::{response, PathParams, Request, Response};
use wsrelay_process::{Map, Message, Pid, ProcessInfo, Value};
use wsrelay_relay::ConnectionSnapshot;

use super::OpsState;

/// The most connections one `/admin/connections` answer lists (oldest first); `count` is
/// always the full number.
pub(crate) const MAX_LISTED: usize = 10_000;

pub(super) fn authorized(req: &Request, token: &str) -> bool {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
}

/// Compares without an early exit, so the time taken does not reveal how many leading
/// bytes matched. (The length is not secret: tokens are long and random.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn unauthorized() -> Response {
    let mut res = response::text(StatusCode::UNAUTHORIZED, "missing or bad bearer token\n");
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

fn process_json(state: &OpsState, info: &ProcessInfo) -> serde_json::Value {
    json!({
        "pid": info.pid.to_string(),
        "host": info.pid.host(),
        "connection": state.connection_hosts.contains(info.pid.host()),
        "inbox_len": info.inbox_len,
        "inbox_peak": info.inbox_peak,
        "monitors": info.monitors,
        "links": info.links,
        "names": info.names,
    })
}

/// One connection for operators: the relay's record joined with its process's
/// (`queue_depth`: messages waiting in the connection's inbox, `ws.send` among them).
fn connection_json(c: &ConnectionSnapshot, info: Option<&ProcessInfo>) -> serde_json::Value {
    json!({
        "pid": c.pid.to_string(),
        "host": c.pid.host(),
        "peer": c.remote_addr.as_deref(),
        "route": &*c.route,
        "target": c.target.to_string(),
        "age_ms": u64::try_from(c.age.as_millis()).unwrap_or(u64::MAX),
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "queue_depth": info.map_or(0, |i| i.inbox_len),
        "inbox_len": info.map_or(0, |i| i.inbox_len),
        "inbox_peak": info.map_or(0, |i| i.inbox_peak),
        "monitors": info.map_or(0, |i| i.monitors),
        "links": info.map_or(0, |i| i.links),
        "names": info.map_or(&[][..], |i| &i.names[..]),
    })
}

/// Up to `limit` open connections with their queue depth, and how many are open in all.
pub(super) fn connections(
    state: &OpsState,
    processes: &[ProcessInfo],
    limit: usize,
) -> (usize, Vec<serde_json::Value>) {
    let infos: HashMap<&Pid, &ProcessInfo> = processes
        .iter()
        .filter(|info| state.connection_hosts.contains(info.pid.host()))
        .map(|info| (&info.pid, info))
        .collect();
    let rows = state
        .relay
        .connections(limit)
        .iter()
        .map(|c| connection_json(c, infos.get(&c.pid).copied()))
        .collect();
    (infos.len(), rows)
}

pub(super) fn list_connections(state: &OpsState, _req: &Request) -> Response {
    let processes = state.node.processes();
    let (count, connections) = connections(state, &processes, MAX_LISTED);
    response::json(
        StatusCode::OK,
        &json!({ "count": count, "connections": connections }),
    )
}

pub(super) fn list_processes(state: &OpsState, _req: &Request) -> Response {
    let processes: Vec<_> = state
        .node
        .processes()
        .iter()
        .map(|info| process_json(state, info))
        .collect();
    let hosts: Vec<_> = state
        .node
        .hosts()
        .into_iter()
        .map(|(id, processes)| json!({ "id": id, "processes": processes }))
        .collect();
    response::json(
        StatusCode::OK,
        &json!({ "count": processes.len(), "processes": processes, "hosts": hosts }),
    )
}

/// Why an admin action was refused: its status and a line of text for the operator.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    text: String,
}

impl Refusal {
    fn new(status: StatusCode, text: String) -> Refusal {
        Refusal { status, text }
    }

    fn answer(self) -> Response {
        response::text(self.status, self.text)
    }
}

/// The live process named by the `{pid}` path parameter.
fn live_pid(state: &OpsState, req: &Request) -> Result<Pid, Refusal> {
    let text = req
        .extensions()
        .get::<PathParams>()
        .and_then(|p| p.get("pid"))
        .unwrap_or_default();
    let pid: Pid = text
        .parse()
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("bad PID {text:?}: {e}\n")))?;
    if !state.node.is_alive(&pid) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("{pid} is not alive\n"),
        ));
    }
    Ok(pid)
}

/// The close code and reason asked by the query (`?code=4000&reason=...`): a code a server
/// may send (1000, or 3000–4999 for applications), the reason cut to the 123 bytes a close
/// frame has room for.
fn close_args(req: &Request) -> Result<(u16, String), Refusal> {
    let (mut code, mut reason) = (1000u16, String::from("closed by operator"));
    for (key, value) in form_pairs(req.uri().query().unwrap_or_default()) {
        match key.as_str() {
            "code" => {
                code = value
                    .parse()
                    .ok()
                    .filter(|c| *c == 1000 || (3000..=4999).contains(c))
                    .ok_or_else(|| {
                        Refusal::new(
                            StatusCode::BAD_REQUEST,
                            format!("bad close code {value:?}: 1000 or 3000-4999\n"),
                        )
                    })?;
            }
            "reason" => {
                let mut end = value.len().min(123);
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                reason = value[..end].to_owned();
            }
            _ => {}
        }
    }
    Ok((code, reason))
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded (bad escapes kept as text).
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

fn decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits make at most 0xff.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
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

pub(super) fn close(state: &OpsState, req: &Request) -> Response {
    let pid = match live_pid(state, req) {
        Ok(pid) => pid,
        Err(refusal) => return refusal.answer(),
    };
    let (code, reason) = match close_args(req) {
        Ok(args) => args,
        Err(refusal) => return refusal.answer(),
    };
    let (action, result) = if state.connection_hosts.contains(pid.host()) {
        let payload: Value = Map::new()
            .with("code", i64::from(code))
            .with("reason", reason.as_str())
            .into();
        let result = state
            .node
            .send(&pid, Message::new(None, "ws.close", payload));
        ("ws.close", result)
    } else {
        let result = state.node.cancel(None, &pid, Value::from(reason.as_str()));
        ("cancel", result)
    };
    match result {
        Ok(()) => {
            tracing::info!(%pid, action, code, "closed by operator");
            response::json(
                StatusCode::ACCEPTED,
                &json!({ "pid": pid.to_string(), "sent": action, "code": code }),
            )
        }
        Err(e) => response::text(StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}

pub(super) fn terminate(state: &OpsState, req: &Request) -> Response {
    let pid = match live_pid(state, req) {
        Ok(pid) => pid,
        Err(refusal) => return refusal.answer(),
    };
    match state.node.terminate(&pid) {
        Ok(()) => {
            tracing::info!(%pid, "terminated by operator");
            response::json(
                StatusCode::ACCEPTED,
                &json!({ "pid": pid.to_string(), "sent": "terminate" }),
            )
        }
        Err(e) => response::text(StatusCode::NOT_FOUND, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_decoded() {
        let pairs: Vec<_> = form_pairs("code=4001&reason=bye+now%21&bad=%zz%4").collect();
        assert_eq!(
            pairs,
            [
                ("code".to_owned(), "4001".to_owned()),
                ("reason".to_owned(), "bye now!".to_owned()),
                ("bad".to_owned(), "%zz%4".to_owned()),
            ]
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}

//! Helpers that build common responses.
//!
//! ```
//! use http::StatusCode;
//! use wsrelay_http::response;
//!
//! let res = response::text(StatusCode::NOT_FOUND, "no such user");
//! assert_eq!(res.status(), StatusCode::NOT_FOUND);
//! assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
//!
//! let res = response::empty(StatusCode::NO_CONTENT);
//! assert!(res.body().is_known_empty());
//! ```

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;

use crate::{Response, ResponseBody};

/// A response with `status` and no body.
pub fn empty(status: StatusCode) -> Response {
    with_status(status, ResponseBody::empty())
}

/// A `text/plain; charset=utf-8` response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut res = with_status(status, ResponseBody::from(body.into()));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// An `application/json` response holding `value` serialized.
///
/// A value that fails to serialize (a map with non-string keys, say) gives a
/// plain-text `500` instead.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut res = with_status(status, ResponseBody::from(bytes));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to encode JSON: {err}"),
        ),
    }
}

fn with_status(status: StatusCode, body: ResponseBody) -> Response {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res
}

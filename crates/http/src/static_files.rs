//! Serving files from a directory.
//!
//! The URL path below the mount point is checked before it touches the file
//! system, and the file found is checked again after:
//!
//! 1. The raw path is refused (`400`) if it holds a backslash, a NUL, or an
//!    encoded `/`, `\` or NUL (`%2f`, `%5c`, `%00`), since those let one
//!    segment smuggle a separator past the checks below.
//! 2. Each segment is percent-decoded and refused (`400`) if it is `.` or
//!    `..`, or still holds a control character or `:` (a Windows drive).
//! 3. The joined path is canonicalized (symlinks resolved) and must still lie
//!    inside the canonical root, else `404`: a symlink that leads out of the
//!    root is treated as missing.
//!
//! 4. Unless the mount allows them ([`Dotfiles::Allow`]), a path with a segment
//!    that starts with `.` (`/.env`, `/.git/config`), before or after
//!    symlinks are resolved, is a `404`: dotfiles hold secrets and repository
//!    data far more often than content.
//!
//! A directory is served through its `index.html`. Responses carry
//! `Content-Type` (from the extension, via `mime_guess`), `Content-Length`,
//! `Last-Modified` and a weak `ETag`, and `If-None-Match` /
//! `If-Modified-Since` give `304`. `GET` and `HEAD` are served, other methods
//! get `405`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::StreamBody;
use percent_encoding::percent_decode_str;
use tokio_util::io::ReaderStream;

use crate::{response, Error, Request, Response, ResponseBody};

/// Whether a static mount serves dotfiles and dot-directories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dotfiles {
    /// `404` for any path with a segment that starts with `.` (the default).
    #[default]
    Deny,
    /// Serve them like any other file.
    Allow,
}

/// A directory to serve under a URL path, checked: what [`Router::static_files`] and
/// [`Server::static_files`] mount.
///
/// [`Router::static_files`]: crate::Router::static_files
/// [`Server::static_files`]: crate::Server::static_files
#[derive(Debug, Clone)]
pub struct StaticDir {
    pub(crate) path: String,
    pub(crate) files: StaticFiles,
}

impl StaticDir {
    /// The files of `dir` under the URL path `path` (on a router, relative to its prefix),
    /// dotfiles as `dotfiles` says. See the [`static_files`](crate#static-files) section of
    /// the crate docs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for a malformed path and [`Error::StaticDir`] when `dir` is
    /// not an existing directory.
    pub fn new(path: &str, dir: impl AsRef<Path>, dotfiles: Dotfiles) -> Result<Self, Error> {
        Ok(StaticDir {
            path: crate::path::normalize_prefix(path)?,
            files: StaticFiles::new(dir.as_ref(), dotfiles)?,
        })
    }
}

/// A directory served under a URL path.
#[derive(Debug, Clone)]
pub(crate) struct StaticFiles {
    root: PathBuf,
    dotfiles: Dotfiles,
}

/// Why a request path was refused.
enum Refusal {
    BadPath(&'static str),
    NotFound,
}

impl StaticFiles {
    /// Opens `dir`, which must be an existing directory.
    pub(crate) fn new(dir: &Path, dotfiles: Dotfiles) -> Result<Self, Error> {
        let invalid = |reason: String| Error::StaticDir {
            dir: dir.to_owned(),
            reason,
        };
        let root = std::fs::canonicalize(dir).map_err(|err| invalid(err.to_string()))?;
        if !root.is_dir() {
            return Err(invalid("not a directory".to_owned()));
        }
        Ok(Self { root, dotfiles })
    }

    /// Serves `rest`, the raw URL path below the mount point.
    pub(crate) async fn serve(&self, req: &Request, rest: &str) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let file = match self.resolve(rest).await {
            Ok(file) => file,
            Err(Refusal::BadPath(reason)) => {
                return response::text(StatusCode::BAD_REQUEST, format!("bad path: {reason}"))
            }
            Err(Refusal::NotFound) => return response::text(StatusCode::NOT_FOUND, "not found"),
        };
        match send_file(&file, req.method() == Method::HEAD, req.headers()).await {
            Ok(res) => res,
            Err(err) => {
                tracing::debug!(file = %file.display(), error = %err, "static file unreadable");
                response::text(StatusCode::NOT_FOUND, "not found")
            }
        }
    }

    /// Maps the raw URL path to a regular file inside the root.
    async fn resolve(&self, rest: &str) -> Result<PathBuf, Refusal> {
        let segments = checked_segments(rest)?;
        self.check_dotfiles(segments.iter().map(OsStr::new))?;
        let mut path = self.root.clone();
        path.extend(&segments);
        let mut path = self.canonical_inside(&path).await?;
        if is_dir(&path).await {
            path = self.canonical_inside(&path.join("index.html")).await?;
        }
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(path),
            _ => Err(Refusal::NotFound),
        }
    }

    /// The file a path resolves to must lie inside the root and, unless dotfiles are
    /// allowed, not be reached through a dot-name there (a symlink `public/env` to
    /// `public/.env` is as much a dotfile as `/.env`).
    async fn canonical_inside(&self, path: &Path) -> Result<PathBuf, Refusal> {
        let canonical = tokio::fs::canonicalize(path)
            .await
            .map_err(|_| Refusal::NotFound)?;
        let inside = canonical
            .strip_prefix(&self.root)
            .map_err(|_| Refusal::NotFound)?;
        self.check_dotfiles(inside.iter())?;
        Ok(canonical)
    }

    fn check_dotfiles<'a>(
        &self,
        mut names: impl Iterator<Item = &'a OsStr>,
    ) -> Result<(), Refusal> {
        let hidden = self.dotfiles == Dotfiles::Deny
            && names.any(|name| name.as_encoded_bytes().starts_with(b"."));
        if hidden {
            Err(Refusal::NotFound)
        } else {
            Ok(())
        }
    }
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|meta| meta.is_dir())
}

/// Splits and decodes the raw path, refusing anything that could leave the
/// directory or name something other than a plain relative path.
fn checked_segments(raw: &str) -> Result<Vec<String>, Refusal> {
    if raw.contains(['\\', '\0']) {
        return Err(Refusal::BadPath("backslash or NUL"));
    }
    let lower = raw.to_ascii_lowercase();
    if ["%2f", "%5c", "%00"].iter().any(|bad| lower.contains(bad)) {
        return Err(Refusal::BadPath("encoded separator or NUL"));
    }
    let mut out = Vec::new();
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| Refusal::BadPath("not UTF-8"))?;
        if decoded == "." || decoded == ".." {
            return Err(Refusal::BadPath("dot segment"));
        }
        if decoded.contains(|c: char| c.is_control() || matches!(c, '/' | '\\' | ':')) {
            return Err(Refusal::BadPath("forbidden character"));
        }
        out.push(decoded.into_owned());
    }
    Ok(out)
}

async fn send_file(path: &Path, head: bool, req_headers: &HeaderMap) -> std::io::Result<Response> {
    let file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    let modified = meta.modified().ok();
    let etag = etag(meta.len(), modified);

    let mut res = if not_modified(req_headers, &etag, modified) {
        response::empty(StatusCode::NOT_MODIFIED)
    } else if head {
        let mut res = response::empty(StatusCode::OK);
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        res
    } else {
        let stream = ReaderStream::new(file);
        let body = StreamBody::new(futures_util::TryStreamExt::map_ok(
            stream,
            http_body::Frame::data,
        ));
        let mut res = Response::new(ResponseBody::new(body));
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        res
    };
    let headers = res.headers_mut();
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(modified) = modified {
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
    Ok(res)
}

fn etag(len: u64, modified: Option<SystemTime>) -> String {
    let secs = modified
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!("W/\"{len:x}-{secs:x}\"")
}

/// Whether the client's cached copy is current: `If-None-Match` decides when
/// present, else `If-Modified-Since` (to the second).
fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH) {
        let Ok(tags) = tags.to_str() else {
            return false;
        };
        return tags
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        (Some(since), Some(modified)) => {
            let modified_secs = modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let since_secs = since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            modified_secs <= since_secs
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the raw path, the segments that pass the checks are
        /// plain names: joining them to the root cannot climb out of it.
        #[test]
        fn checked_segments_are_plain_names(raw in "[a-z./\\\\%0-9A-F:]{0,24}") {
            if let Ok(segments) = checked_segments(&raw) {
                for segment in segments {
                    prop_assert!(segment != "." && segment != "..");
                    prop_assert!(!segment.is_empty());
                    prop_assert!(!segment.contains(['/', '\\', '\0', ':']));
                }
            }
        }
    }
}

//! Static files: content types, index, conditional requests, traversal.

use std::path::Path;

use http::{Method, StatusCode};
use wsrelay_http::{Dotfiles, Router, Server, StaticDir};

use crate::support::{self, get, raw_get, send, text, ID};

const SECRET: &str = "TOP SECRET";

/// `tmp/www` (the root) with a few files, and `tmp/secret.txt` beside it,
/// plus symlinks inside the root that lead to the secret.
fn site() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let write = |path: &str, body: &str| {
        let path = www.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    };
    write("index.html", "<h1>home</h1>");
    write("app.js", "console.log(1)");
    write("style.css", "body{}");
    write("data.json", "{}");
    write("docs/index.html", "<h1>docs</h1>");
    write("noext", "raw");
    std::fs::write(tmp.path().join("secret.txt"), SECRET).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), www.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), www.join("escape")).unwrap();
    }
    tmp
}

async fn start(root: &Path) -> support::TestGateway {
    let mut router = Router::new("/").unwrap();
    router.static_files(StaticDir::new("/static", root.join("www"), Dotfiles::Deny).unwrap());
    router.route(Method::GET, "/api", text("api")).unwrap();
    support::start(vec![router]).await
}

#[tokio::test]
async fn serves_files_with_content_types() {
    let tmp = site();
    let gw = start(tmp.path()).await;
    let table = [
        ("/static/app.js", "text/javascript", "console.log(1)"),
        ("/static/style.css", "text/css", "body{}"),
        ("/static/data.json", "application/json", "{}"),
        ("/static/index.html", "text/html", "<h1>home</h1>"),
        ("/static/", "text/html", "<h1>home</h1>"),
        ("/static", "text/html", "<h1>home</h1>"),
        ("/static/docs", "text/html", "<h1>docs</h1>"),
        ("/static/noext", "application/octet-stream", "raw"),
    ];
    for (path, mime, body) in table {
        let reply = get(gw.addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let content_type = reply.headers["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(mime), "{path}: {content_type}");
        assert_eq!(reply.body, body, "{path}");
        assert_eq!(
            reply.headers["content-length"],
            body.len().to_string().as_str()
        );
    }
    for path in ["/static/missing.js", "/static/docs/missing/"] {
        assert_eq!(
            get(gw.addr, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Endpoints of the router still work beside the mount.
    assert_eq!(get(gw.addr, "/api").await.body, "api");
}

#[tokio::test]
async fn head_and_conditional_requests() {
    let tmp = site();
    let gw = start(tmp.path()).await;

    let reply = send(
        gw.addr,
        Method::HEAD,
        "/static/app.js",
        &[],
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "");
    assert_eq!(reply.headers["content-length"], "14");

    let reply = get(gw.addr, "/static/app.js").await;
    let etag = reply.headers["etag"].to_str().unwrap().to_owned();
    let modified = reply.headers["last-modified"].to_str().unwrap().to_owned();

    let conditions = [
        ("if-none-match", etag.as_str(), StatusCode::NOT_MODIFIED),
        (
            "if-modified-since",
            modified.as_str(),
            StatusCode::NOT_MODIFIED,
        ),
        ("if-none-match", "\"other\"", StatusCode::OK),
    ];
    for (header, value, expected) in conditions {
        let reply = send(
            gw.addr,
            Method::GET,
            "/static/app.js",
            &[(header, value)],
            Default::default(),
        )
        .await;
        assert_eq!(reply.status, expected, "{header}: {value}");
    }

    let reply = send(
        gw.addr,
        Method::POST,
        "/static/app.js",
        &[],
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn traversal_is_refused() {
    let tmp = site();
    let gw = start(tmp.path()).await;
    // 400: refused by the path checks; 404: resolved, but not inside the root.
    let attempts = [
        ("/static/../secret.txt", 400),
        ("/static/../../secret.txt", 400),
        ("/static/%2e%2e/secret.txt", 400),
        ("/static/%2E%2E/secret.txt", 400),
        ("/static/..%2fsecret.txt", 400),
        ("/static/%2e%2e%2fsecret.txt", 400),
        ("/static/docs/..%2f..%2fsecret.txt", 400),
        ("/static/.%2e/secret.txt", 400),
        ("/static/\\..\\secret.txt", 400),
        ("/static/..\\secret.txt", 400),
        ("/static/%5c..%5csecret.txt", 400),
        ("/static/secret.txt%00", 400),
        ("/static/%00/../secret.txt", 400),
        ("/static/C:%5csecret.txt", 400),
        ("/static/escape/www/../secret.txt", 400),
        ("/static//secret.txt", 404),
        ("/static/%252e%252e/secret.txt", 404),
        // Symlinks inside the root that lead out of it.
        ("/static/link.txt", 404),
        ("/static/escape/secret.txt", 404),
    ];
    for (path, expected) in attempts {
        let (status, text) = raw_get(gw.addr, path).await;
        assert!(!text.contains(SECRET), "{path} leaked the secret: {text}");
        assert_eq!(status, expected, "{path}: {text}");
    }
}

#[tokio::test]
async fn server_level_mount_and_router_beside_it() {
    let tmp = site();
    let mut server = Server::new(ID, support::config());
    server
        .static_files(StaticDir::new("/", tmp.path().join("www"), Dotfiles::Deny).unwrap())
        .unwrap();
    let mut api = Router::new("/api").unwrap();
    api.route(Method::GET, "/ping", text("pong")).unwrap();
    server.add_router(api).unwrap();
    let gw = support::start_server(server).await;

    assert_eq!(get(gw.addr, "/").await.body, "<h1>home</h1>");
    assert_eq!(get(gw.addr, "/app.js").await.body, "console.log(1)");
    assert_eq!(get(gw.addr, "/api/ping").await.body, "pong");
    assert_eq!(
        get(gw.addr, "/api/missing").await.status,
        StatusCode::NOT_FOUND
    );
    let (status, text) = raw_get(gw.addr, "/%2e%2e/secret.txt").await;
    assert_eq!(status, 400, "{text}");
}

/// `www` with dotfiles beside ordinary files, and a symlink to one.
fn site_with_dotfiles() -> tempfile::TempDir {
    let tmp = site();
    let www = tmp.path().join("www");
    std::fs::write(www.join(".env"), SECRET).unwrap();
    std::fs::create_dir_all(www.join(".git")).unwrap();
    std::fs::write(www.join(".git/config"), SECRET).unwrap();
    std::fs::create_dir_all(www.join("docs/.drafts")).unwrap();
    std::fs::write(www.join("docs/.drafts/plan.txt"), SECRET).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(www.join(".env"), www.join("env.txt")).unwrap();
    tmp
}

/// `/s/.env` used to be served (200) from every static mount.
#[tokio::test]
async fn dotfiles_and_dot_directories_are_refused_by_default() {
    let tmp = site_with_dotfiles();
    let gw = start(tmp.path()).await;
    let mut paths = vec![
        "/static/.env",
        "/static/%2eenv",
        "/static/.git/config",
        "/static/.git/",
        "/static/docs/.drafts/plan.txt",
    ];
    if cfg!(unix) {
        paths.push("/static/env.txt"); // a symlink to a dotfile inside the root
    }
    for path in paths {
        let (status, text) = raw_get(gw.addr, path).await;
        assert!(!text.contains(SECRET), "{path} leaked the secret: {text}");
        assert_eq!(status, 404, "{path}: {text}");
    }
    // Ordinary files beside them are served as before.
    assert_eq!(get(gw.addr, "/static/app.js").await.body, "console.log(1)");
}

#[tokio::test]
async fn a_mount_can_opt_in_to_dotfiles() {
    let tmp = site_with_dotfiles();
    let mut router = Router::new("/").unwrap();
    router
        .static_files(StaticDir::new("/static", tmp.path().join("www"), Dotfiles::Allow).unwrap());
    let gw = support::start(vec![router]).await;
    for path in ["/static/.env", "/static/.git/config"] {
        let reply = get(gw.addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, SECRET, "{path}");
    }
    // Traversal stays refused when dotfiles are allowed.
    let (status, _) = raw_get(gw.addr, "/static/../secret.txt").await;
    assert_eq!(status, 400);
}

#[test]
fn missing_directory_is_a_config_error() {
    let err = StaticDir::new("/s", "/definitely/not/here", Dotfiles::Deny).unwrap_err();
    assert!(err.to_string().contains("/definitely/not/here"), "{err}");
}

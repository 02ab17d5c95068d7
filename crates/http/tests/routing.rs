//! Prefixes, patterns, methods, 404 and 405, several servers.

use http::{Method, StatusCode};
use wsrelay_http::{Error, Gateway, Router, Server};

use crate::support::{self, get, send, text};

fn router(prefix: &str, routes: &[(Method, &str, &'static str)]) -> Router {
    let mut router = Router::new(prefix).unwrap();
    for (method, path, body) in routes {
        router.route(method.clone(), path, text(body)).unwrap();
    }
    router
}

#[tokio::test]
async fn longest_prefix_wins() {
    let gw = support::start(vec![
        router("/", &[(Method::GET, "/api/users", "root")]),
        router("/api", &[(Method::GET, "/users", "api")]),
        router("/api/v2/", &[(Method::GET, "/users", "v2")]),
    ])
    .await;

    let table = [
        ("/api/users", StatusCode::OK, "api"),
        ("/api/v2/users", StatusCode::OK, "v2"),
        ("/api/v2/users/", StatusCode::OK, "v2"),
        // `/apix` is not under `/api`: the root router gets it.
        ("/apix/users", StatusCode::NOT_FOUND, "not found"),
        // The root router's own route is shadowed by the `/api` router.
        ("/api/api/users", StatusCode::NOT_FOUND, "not found"),
    ];
    for (path, status, body) in table {
        let reply = get(gw.addr, path).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (status, body),
            "{path}"
        );
    }
}

#[tokio::test]
async fn no_router_is_404() {
    let gw = support::start(vec![router("/api", &[(Method::GET, "/x", "x")])]).await;
    assert_eq!(get(gw.addr, "/other").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn params_are_decoded_and_literals_win() {
    let gw = support::start(vec![router(
        "/api",
        &[
            (Method::GET, "/users/{id}", "user"),
            (Method::GET, "/users/me", "me"),
            (Method::GET, "/users/{id}/posts/{post_id}", "post"),
        ],
    )])
    .await;

    let table = [
        ("/api/users/42", "user id=42"),
        ("/api/users/me", "me"),
        ("/api/users/a%20b", "user id=a b"),
        ("/api/users/7/posts/9", "post id=7 post_id=9"),
    ];
    for (path, body) in table {
        let reply = get(gw.addr, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, body, "{path}");
    }
    for path in ["/api/users", "/api/users//posts/1"] {
        assert_eq!(
            get(gw.addr, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let gw = support::start(vec![router(
        "/",
        &[
            (Method::GET, "/items", "list"),
            (Method::POST, "/items", "create"),
            (Method::DELETE, "/items/{id}", "delete"),
        ],
    )])
    .await;

    let reply = send(gw.addr, Method::PUT, "/items", &[], Default::default()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, HEAD, POST");

    let reply = get(gw.addr, "/items/3").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "DELETE");

    let reply = send(gw.addr, Method::POST, "/items", &[], Default::default()).await;
    assert_eq!(reply.body, "create");
}

#[tokio::test]
async fn head_runs_get_without_body() {
    let gw = support::start(vec![router("/", &[(Method::GET, "/page", "hello")])]).await;
    let reply = send(gw.addr, Method::HEAD, "/page", &[], Default::default()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-length"], "5");
    assert_eq!(reply.body, "");
}

#[tokio::test]
async fn several_servers_serve_their_own_routes() {
    let mut gateway = Gateway::new();
    for (id, body) in [("app:one", "one"), ("app:two", "two")] {
        let mut server = Server::new(id, support::config());
        server
            .add_router(router("/", &[(Method::GET, "/", body)]))
            .unwrap();
        gateway.add_server(server).unwrap();
    }
    let running = gateway.bind().await.unwrap();
    let one = running.local_addr("app:one").unwrap();
    let two = running.local_addr("app:two").unwrap();
    assert_ne!(one, two);
    assert_eq!(get(one, "/").await.body, "one");
    assert_eq!(get(two, "/").await.body, "two");
    assert_eq!(running.addrs().count(), 2);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn config_errors_name_their_input() {
    let mut router = Router::new("/").unwrap();
    router.route(Method::GET, "/a/{x}", text("a")).unwrap();
    let err = router.route(Method::GET, "/a/{y}", text("b")).unwrap_err();
    assert!(matches!(err, Error::DuplicateRoute { .. }), "{err}");
    assert!(Router::new("api").is_err());
    assert!(router.route(Method::GET, "/a/{", text("c")).is_err());

    let mut server = Server::new("app:gw", support::config());
    server.add_router(Router::new("/x").unwrap()).unwrap();
    let err = server.add_router(Router::new("/x/").unwrap()).unwrap_err();
    assert!(err.to_string().contains("app:gw"), "{err}");

    let mut gateway = Gateway::new();
    gateway
        .add_server(Server::new("app:gw", support::config()))
        .unwrap();
    assert!(gateway
        .add_server(Server::new("app:gw", support::config()))
        .is_err());
}

#[tokio::test]
async fn bind_error_names_server_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut gateway = Gateway::new();
    gateway
        .add_server(Server::new(
            "app:busy",
            wsrelay_http::ServerConfig::new(addr),
        ))
        .unwrap();
    let err = gateway.bind().await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("app:busy"), "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
}

//! Middleware chains: order, pre-match vs post-match, the registry, `cors`.

use std::sync::{Arc, Mutex};

use http::{HeaderValue, Method, StatusCode};
use wsrelay_http::{middleware_fn, Middleware, MiddlewareRegistry, Options, Router};

use crate::support::{self, get, send, text};

type Log = Arc<Mutex<Vec<String>>>;

/// A middleware that logs `name>` before and `<name` after the rest of the
/// chain, and appends its name to the `x-trace` response header.
fn tracer(name: &'static str, log: &Log) -> Arc<dyn Middleware> {
    let log = log.clone();
    Arc::new(middleware_fn(move |req, next| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(format!("{name}>"));
            let mut res = next.run(req).await;
            log.lock().unwrap().push(format!("<{name}"));
            res.headers_mut()
                .append("x-trace", HeaderValue::from_static(name));
            res
        }
    }))
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn chains_run_in_order_around_the_handler() {
    let log = Log::default();
    let mut router = Router::new("/").unwrap();
    router
        .middleware(tracer("pre1", &log))
        .middleware(tracer("pre2", &log))
        .post_middleware(tracer("post1", &log))
        .post_middleware(tracer("post2", &log));
    router.route(Method::GET, "/x", text("x")).unwrap();
    let gw = support::start(vec![router]).await;

    let reply = get(gw.addr, "/x").await;
    assert_eq!(reply.body, "x");
    assert_eq!(
        take(&log),
        ["pre1>", "pre2>", "post1>", "post2>", "<post2", "<post1", "<pre2", "<pre1"]
    );

    // Unknown path and wrong method: the pre chain runs, the post chain does not.
    assert_eq!(get(gw.addr, "/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(take(&log), ["pre1>", "pre2>", "<pre2", "<pre1"]);
    let reply = send(gw.addr, Method::POST, "/x", &[], Default::default()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(take(&log), ["pre1>", "pre2>", "<pre2", "<pre1"]);
}

#[tokio::test]
async fn pre_middleware_can_answer_before_routing() {
    let mut router = Router::new("/").unwrap();
    router.middleware(Arc::new(middleware_fn(|req, next| async move {
        if req.headers().contains_key("x-deny") {
            return wsrelay_http::response::text(StatusCode::FORBIDDEN, "denied");
        }
        next.run(req).await
    })));
    router.route(Method::GET, "/x", text("x")).unwrap();
    let gw = support::start(vec![router]).await;

    let reply = send(
        gw.addr,
        Method::GET,
        "/x",
        &[("x-deny", "1")],
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(get(gw.addr, "/x").await.body, "x");
}

#[tokio::test]
async fn post_middleware_sees_params_and_the_handler_response() {
    let mut router = Router::new("/api").unwrap();
    router.post_middleware(Arc::new(middleware_fn(|req, next| async move {
        let id = req
            .extensions()
            .get::<wsrelay_http::PathParams>()
            .and_then(|p| p.get("id"))
            .unwrap_or("-")
            .to_owned();
        let matched = req
            .extensions()
            .get::<wsrelay_http::MatchedPath>()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let res = next.run(req).await;
        let empty = res.body().is_known_empty();
        wsrelay_http::response::text(
            res.status(),
            format!("id={id} matched={matched} empty={empty}"),
        )
    })));
    router
        .route(Method::GET, "/users/{id}", text("user"))
        .unwrap()
        .route(
            Method::GET,
            "/empty/{id}",
            Arc::new(wsrelay_http::handler_fn(|_| async {
                wsrelay_http::response::empty(StatusCode::OK)
            })),
        )
        .unwrap();
    let gw = support::start(vec![router]).await;

    assert_eq!(
        get(gw.addr, "/api/users/5").await.body,
        "id=5 matched=/api/users/{id} empty=false"
    );
    assert_eq!(
        get(gw.addr, "/api/empty/6").await.body,
        "id=6 matched=/api/empty/{id} empty=true"
    );
}

#[tokio::test]
async fn registry_builds_by_name_and_checks_options() {
    let mut registry = MiddlewareRegistry::with_builtins();
    registry.register("custom", |options: &Options| {
        match options.get("custom.level").map(String::as_str) {
            None | Some("1") => Ok(Arc::new(middleware_fn(|req, next| next.run(req))) as _),
            Some(other) => Err(format!("custom.level: bad value {other:?}")),
        }
    });
    assert_eq!(registry.names().collect::<Vec<_>>(), ["cors", "custom"]);
    assert!(registry.contains("cors"));

    let err = registry.build("nope", &Options::new()).err().unwrap();
    assert!(err.to_string().contains("nope"), "{err}");

    let options = Options::from([("custom.level".to_owned(), "9".to_owned())]);
    let err = registry.build("custom", &options).err().unwrap();
    assert!(err.to_string().contains("custom.level"), "{err}");

    let options = Options::from([("cors.max.age".to_owned(), "soon".to_owned())]);
    let err = registry.build("cors", &options).err().unwrap();
    assert!(err.to_string().contains("cors.max.age"), "{err}");
    let options = Options::from([("cors.allow.orgins".to_owned(), "*".to_owned())]);
    assert!(registry.build("cors", &options).is_err());
    // Options of other middleware are not cors's business.
    let options = Options::from([("wsrelay.allowed.origins".to_owned(), "*".to_owned())]);
    assert!(registry.build("cors", &options).is_ok());
}

#[tokio::test]
async fn cors_answers_preflights_and_marks_responses() {
    let options = Options::from([
        (
            "cors.allow.origins".to_owned(),
            "https://app.example.com, https://admin.example.com".to_owned(),
        ),
        ("cors.max.age".to_owned(), "600".to_owned()),
    ]);
    let cors = MiddlewareRegistry::with_builtins()
        .build("cors", &options)
        .unwrap();
    let mut router = Router::new("/").unwrap();
    router.middleware(cors);
    router.route(Method::POST, "/data", text("data")).unwrap();
    let gw = support::start(vec![router]).await;

    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let reply = send(
        gw.addr,
        Method::OPTIONS,
        "/data",
        &preflight,
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(reply.headers["access-control-max-age"], "600");
    assert!(reply.headers.contains_key("access-control-allow-methods"));

    let bad = [
        ("origin", "https://evil.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let reply = send(gw.addr, Method::OPTIONS, "/data", &bad, Default::default()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let origin = [("origin", "https://admin.example.com")];
    let reply = send(gw.addr, Method::POST, "/data", &origin, Default::default()).await;
    assert_eq!(reply.body, "data");
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://admin.example.com"
    );
    assert_eq!(reply.headers["vary"], "Origin");

    let reply = send(gw.addr, Method::POST, "/data", &[], Default::default()).await;
    assert!(!reply.headers.contains_key("access-control-allow-origin"));
}

//! `logger`: lines into `tracing`, bounded.

use super::*;

// ---------------------------------------------------------------------------------- logger

/// One captured `tracing` event of the logger's target: level and every field as text.
#[derive(Debug, Clone)]
struct Line {
    level: tracing::Level,
    fields: std::collections::BTreeMap<String, String>,
}

/// A layer that keeps the logger's events (the shards log on their own threads, so a
/// thread-local subscriber would see nothing: this one is the global default).
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<Line>>>);

struct Fields<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "wsrelay_lua::logger" {
            return;
        }
        let mut fields = std::collections::BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Line {
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// The captured lines whose `fields` contain `marker` (each test marks its own lines, as
/// the tests of this file run in parallel into one global subscriber).
fn captured(marker: &str) -> Vec<Line> {
    use tracing_subscriber::layer::SubscriberExt;
    static LINES: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<Line>>>> =
        std::sync::OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let lines = std::sync::Arc::default();
        let subscriber =
            tracing_subscriber::registry().with(Capture(std::sync::Arc::clone(&lines)));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        lines
    });
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.fields.get("fields").is_some_and(|f| f.contains(marker)))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn logger_writes_levels_messages_and_fields_to_tracing() {
    captured("");
    let (_node, engine) = setup();
    let pid = lua(
        &engine,
        r#"
        local logger = require("logger")
        assert(require("logger") == logger)
        local log = logger:with({ test = "levels" })
        assert(log:debug("d msg", { n = 1 }))
        assert(log:info("i msg", { ok = true, text = "two words" }))
        log:warn("w msg")
        log:error("e msg", { n = 2.5 })
        local relay = log:named("relay"):named("conn"):with({ conn_id = "c1" })
        relay:info("named msg", { test = "levels" })
        -- the parent is unchanged by its children
        log:info("parent msg")
        return process.pid()
        "#,
    )
    .await;
    let Value::String(pid) = pid else {
        panic!("expected a pid, got {pid:?}")
    };
    let lines = captured("test=levels");
    let by_msg = |m: &str| {
        lines
            .iter()
            .find(|l| l.fields.get("message").map(String::as_str) == Some(m))
            .unwrap_or_else(|| panic!("no line {m:?} in {lines:?}"))
            .clone()
    };
    use tracing::Level;
    for (msg, level, fields) in [
        ("d msg", Level::DEBUG, "n=1 test=levels"),
        (
            "i msg",
            Level::INFO,
            "ok=true test=levels text=\"two words\"",
        ),
        ("w msg", Level::WARN, "test=levels"),
        ("e msg", Level::ERROR, "n=2.5 test=levels"),
        ("parent msg", Level::INFO, "test=levels"),
    ] {
        let line = by_msg(msg);
        assert_eq!(line.level, level, "{msg}");
        assert_eq!(line.fields["fields"], fields, "{msg}");
        assert_eq!(line.fields["logger"], "", "{msg}");
        assert_eq!(line.fields["pid"], pid.to_string(), "{msg}");
        assert!(line.fields["entry"].starts_with("test:entry"), "{line:?}");
    }
    let named = by_msg("named msg");
    assert_eq!(named.fields["logger"], "relay.conn");
    assert_eq!(named.fields["fields"], "conn_id=c1 test=levels");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logger_bounds_sizes_and_refuses_bad_arguments() {
    captured("");
    let (_node, engine) = setup();
    lua(
        &engine,
        r#"
        local logger = require("logger")
        local log = logger:with({ test = "bounds" })
        -- an 8 KiB message and a 1 KiB value are kept; longer ones are cut and say so
        log:info(string.rep("m", 9000), { big = string.rep("v", 2000) })
        local many = {}
        for i = 1, 40 do many[string.format("k%02d", i)] = i end
        log:info("many", many)
        -- bad arguments: INVALID, and nothing written
        local v, err = logger:named("")
        assert(v == nil and err:kind() == errors.INVALID, tostring(err))
        v, err = logger:named(5)
        assert(v == nil and err:kind() == errors.INVALID)
        v, err = logger:with("x")
        assert(v == nil and err:kind() == errors.INVALID)
        local ok, err2 = log:info({}, nil)
        assert(ok == false and err2:kind() == errors.INVALID)
        ok, err2 = log:info("bad fields", 7)
        assert(ok == false and err2:kind() == errors.INVALID)
        "#,
    )
    .await;
    let lines = captured("test=bounds");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let big = &lines
        .iter()
        .find(|l| l.fields["message"] != "many")
        .unwrap();
    let msg = &big.fields["message"];
    assert!(
        msg.starts_with(&"m".repeat(8192)) && msg.ends_with("…[truncated, 9000 bytes in all]"),
        "{}",
        &msg[8000..]
    );
    assert!(!msg.contains(&"m".repeat(8193)));
    let fields = &big.fields["fields"];
    let value = format!("big={}…[truncated, 2000 bytes in all]", "v".repeat(1024));
    // the value holds a space (the marker), so it is quoted
    assert!(fields.contains(&format!("{:?}", &value[4..])), "{fields}");
    let many = lines
        .iter()
        .find(|l| l.fields["message"] == "many")
        .unwrap();
    let fields = &many.fields["fields"];
    // 32 fields in all: `test` and 31 of the 40, and the rest counted
    assert_eq!(fields.split(' ').count(), 33, "{fields}");
    assert!(fields.ends_with("dropped_fields=9"), "{fields}");
}

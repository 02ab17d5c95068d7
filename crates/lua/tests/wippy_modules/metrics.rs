//! `metrics`: series, validation, caps.

use super::*;

// --------------------------------------------------------------------------------- metrics

#[tokio::test(flavor = "multi_thread")]
async fn metrics_counters_gauges_and_histograms_keep_their_series() {
    use wsrelay_lua::{MetricKind, SeriesValue};
    let (_node, engine) = setup();
    let v = lua(
        &engine,
        r#"
        local metrics = require("metrics")
        assert(metrics.counter_inc("hits", {room = "a"}) == true)
        assert(metrics.counter_add("hits", 2.5, {room = "a"}))
        assert(metrics.counter_inc("hits_total", {room = "b"}))
        assert(metrics.gauge_set("depth", 10, {shard = 1}))
        assert(metrics.gauge_inc("depth", {shard = 1}))
        assert(metrics.gauge_dec("depth", {shard = 1}))
        assert(metrics.gauge_dec("depth", {shard = 1}))
        assert(metrics.histogram("wait_seconds", 0.02))
        assert(metrics.histogram("wait_seconds", 3))
        return true
        "#,
    )
    .await;
    assert_eq!(v, Value::Bool(true));
    let snap = engine.metrics_snapshot();
    let names: Vec<(&str, MetricKind)> = snap.iter().map(|f| (f.name.as_str(), f.kind)).collect();
    assert_eq!(
        names,
        [
            ("depth", MetricKind::Gauge),
            ("hits", MetricKind::Counter),
            ("wait_seconds", MetricKind::Histogram)
        ]
    );
    let depth = &snap[0].series[0];
    assert_eq!(depth.labels, [("shard".to_owned(), "1".to_owned())]);
    assert_eq!(depth.value, SeriesValue::Gauge(9.0));
    let hits: Vec<(String, SeriesValue)> = snap[1]
        .series
        .iter()
        .map(|s| (s.labels[0].1.clone(), s.value.clone()))
        .collect();
    assert_eq!(
        hits,
        [
            ("a".to_owned(), SeriesValue::Counter(3.5)),
            ("b".to_owned(), SeriesValue::Counter(1.0))
        ]
    );
    let SeriesValue::Histogram { count, buckets, .. } = &snap[2].series[0].value else {
        panic!("{snap:?}");
    };
    assert_eq!(*count, 2);
    assert_eq!(buckets.iter().find(|b| b.0 == 0.025).map(|b| b.1), Some(1));
    assert_eq!(buckets.iter().find(|b| b.0 == 5.0).map(|b| b.1), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_refuse_bad_names_labels_values_and_type_changes() {
    let (_node, engine) = setup();
    let v = lua(
        &engine,
        r#"
        local metrics = require("metrics")
        local function invalid(what, ok, err)
          assert(ok == nil, what)
          assert(err:kind() == errors.INVALID, what .. ": " .. tostring(err))
        end
        invalid("leading digit", metrics.counter_inc("9lives"))
        invalid("dot", metrics.counter_inc("a.b"))
        invalid("empty", metrics.counter_inc(""))
        invalid("long name", metrics.counter_inc(string.rep("a", 129)))
        invalid("no name", metrics.counter_inc(nil))
        invalid("negative counter", metrics.counter_add("c", -1))
        invalid("NaN", metrics.gauge_set("g", 0/0))
        invalid("infinity", metrics.gauge_set("g", math.huge))
        invalid("string value", metrics.histogram("h", "1"))
        invalid("label name", metrics.counter_inc("c", {["bad-key"] = "x"}))
        invalid("reserved label", metrics.counter_inc("c", {__reserved = "x"}))
        invalid("number label name", metrics.counter_inc("c", {[1] = "x"}))
        invalid("le on a histogram", metrics.histogram("h", 1, {le = "1"}))
        invalid("long value", metrics.counter_inc("c", {k = string.rep("v", 257)}))
        invalid("table value", metrics.counter_inc("c", {k = {}}))
        invalid("labels not a table", metrics.counter_inc("c", "labels"))
        local many = {}
        for i = 1, 17 do many["k" .. i] = "v" end
        invalid("17 labels", metrics.counter_inc("c", many))
        -- Nothing above created a series.
        assert(metrics.counter_inc("c"))
        invalid("counter as gauge", metrics.gauge_set("c", 1))
        invalid("counter as histogram", metrics.histogram("c", 1))
        -- Sample names may not collide: counter c exposes c_total, histogram h exposes h_count.
        invalid("gauge over c_total", metrics.gauge_set("c_total", 1))
        assert(metrics.histogram("h", 1))
        invalid("gauge over h_count", metrics.gauge_set("h_count", 1))
        return true
        "#,
    )
    .await;
    assert_eq!(v, Value::Bool(true));
    let names: Vec<String> = engine
        .metrics_snapshot()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["c", "h"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_series_are_capped_per_metric_and_overall() {
    use wsrelay_lua::{MAX_METRIC_SERIES, MAX_SERIES_PER_METRIC};
    let (_node, engine) = setup();
    let v = run(
        &engine,
        &["metrics"],
        r#"
        local metrics, per, total = require("metrics"), ...
        for i = 1, per do assert(metrics.counter_inc("users", {id = i})) end
        local ok, err = metrics.counter_inc("users", {id = "one more"})
        assert(ok == nil and err:kind() == errors.INTERNAL, tostring(err))
        assert(not err:retryable())
        -- The series that exist keep counting.
        assert(metrics.counter_inc("users", {id = 1}))
        -- Fill the engine's overall cap with other metrics.
        local made, m = per, 0
        while made < total do
          m = m + 1
          for i = 1, math.min(per, total - made) do
            assert(metrics.gauge_set("g" .. m, i, {id = i}))
            made = made + 1
          end
        end
        ok, err = metrics.gauge_set("g1", 1, {id = "new"})
        assert(ok == nil and err:kind() == errors.INTERNAL, "overall cap")
        ok, err = metrics.histogram("fresh", 1)
        assert(ok == nil and err:kind() == errors.INTERNAL, "no new metric either")
        return made
        "#,
        vec![
            Value::from(MAX_SERIES_PER_METRIC as i64),
            Value::from(MAX_METRIC_SERIES as i64),
        ],
    )
    .await;
    assert_eq!(v, Value::from(MAX_METRIC_SERIES as i64));
    let snap = engine.metrics_snapshot();
    let series: usize = snap.iter().map(|f| f.series.len()).sum();
    assert_eq!(series, MAX_METRIC_SERIES);
    let users = snap.iter().find(|f| f.name == "users").unwrap();
    assert_eq!(users.series.len(), MAX_SERIES_PER_METRIC);
}

//! The `json` module.

use crate::support::*;
use wsrelay_process::Value;

#[tokio::test(flavor = "multi_thread")]
async fn encode_objects_arrays_and_scalars() {
    let v = eval_fresh(
        r#"
        local json = require("json")
        return {
            obj = json.encode({b = 1, a = "x"}),
            arr = json.encode({1, 2, "three"}),
            empty = json.encode({}),
            nested = json.encode({list = {true, false}, n = 1.5}),
            str = json.encode("a\"b"),
            num = json.encode(42),
        }
        "#,
    )
    .await;
    assert_eq!(v.get("obj"), Some(&s(r#"{"a":"x","b":1}"#)));
    assert_eq!(v.get("arr"), Some(&s(r#"[1,2,"three"]"#)));
    assert_eq!(v.get("empty"), Some(&s("{}")));
    assert_eq!(
        v.get("nested"),
        Some(&s(r#"{"list":[true,false],"n":1.5}"#))
    );
    assert_eq!(v.get("str"), Some(&s(r#""a\"b""#)));
    assert_eq!(v.get("num"), Some(&s("42")));
}

#[tokio::test(flavor = "multi_thread")]
async fn encode_errors_return_nil_err() {
    let v = eval_fresh(
        r#"
        local json = require("json")
        local a, e1 = json.encode({f = function() end})
        local b, e2 = json.encode(0/0)
        local t = {} t.self = t
        local c, e3 = json.encode(t)
        return { a == nil, type(e1), b == nil, type(e2), c == nil, type(e3) }
        "#,
    )
    .await;
    assert_eq!(v, array![true, "string", true, "string", true, "string"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn decode_values_and_errors() {
    let v = eval_fresh(
        r#"
        local json = require("json")
        local t = json.decode('{"a": [1, 2.5, "x", null, true], "b": {"c": "\\u0000z"}}')
        local bad, err = json.decode("{oops")
        local notstr, err2 = json.decode(12)
        return {
            t.a[1], t.a[2], t.a[3], t.a[5], math.type(t.a[1]), #t.b.c,
            bad == nil, err ~= nil, notstr == nil, err2,
        }
        "#,
    )
    .await;
    let Value::Array(items) = v else {
        panic!("not an array: {v:?}")
    };
    assert_eq!(items[0], Value::Int(1));
    assert_eq!(items[1], Value::Float(2.5));
    assert_eq!(items[2], s("x"));
    assert_eq!(items[3], Value::Bool(true));
    assert_eq!(items[4], s("integer"));
    assert_eq!(items[5], Value::Int(2));
    assert_eq!(items[6], Value::Bool(true));
    assert_eq!(items[7], Value::Bool(true));
    assert_eq!(items[8], Value::Bool(true));
    assert_eq!(items[9], s("json.decode: expected a string, got integer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_strings_survive_decode_and_invalid_utf8_encodes() {
    let v = eval_fresh(
        r#"
        local json = require("json")
        local s = json.decode('"a\\u0000b\\u00ff"')
        local enc = json.encode("\xff")
        return { #s, enc }
        "#,
    )
    .await;
    assert_eq!(v, array![5, "\"\u{fffd}\""]);
}

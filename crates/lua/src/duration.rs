//! Durations as Lua code writes them: `"500ms"`, `"1m30s"`, `"1.5s"`, or a number of
//! milliseconds.

use std::time::Duration;

use mlua::Value as LuaValue;

/// Parses Go-style duration text: a sequence of decimal numbers with units `ns`, `us` (`µs`),
/// `ms`, `s`, `m`, `h`, e.g. `"1h2m3.5s"`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (expected e.g. \"500ms\", \"30s\", \"1m30s\")");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The longest duration Lua code may ask for: timers are computed as `now + d`, which must not
/// overflow the clock.
pub(crate) const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration argument: text (see [`parse`]) or a number of milliseconds, at most [`MAX`].
pub(crate) fn from_lua(value: &LuaValue) -> Result<Duration, String> {
    let d = match value {
        LuaValue::String(s) => parse(&s.to_string_lossy())?,
        LuaValue::Integer(ms) if *ms >= 0 => Duration::from_millis(*ms as u64),
        LuaValue::Number(ms) if *ms >= 0.0 && ms.is_finite() => {
            Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
        }
        other => {
            return Err(format!(
                "invalid duration: expected text like \"5s\" or milliseconds, got {}",
                other.type_name()
            ))
        }
    };
    if d > MAX {
        return Err(format!("duration too long: {d:?} (at most 366 days)"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_refused_not_panicking() {
        for value in [
            LuaValue::Number(1e300),
            LuaValue::Integer(i64::MAX),
            LuaValue::Number(f64::MAX),
        ] {
            assert!(
                from_lua(&value).unwrap_err().contains("too long"),
                "{value:?}"
            );
        }
        let lua = mlua::Lua::new();
        let text = LuaValue::String(lua.create_string("12646344259371037126s").unwrap());
        assert!(from_lua(&text).is_err());
        assert_eq!(
            from_lua(&LuaValue::Integer(1500)).unwrap(),
            Duration::from_millis(1500)
        );
    }
}

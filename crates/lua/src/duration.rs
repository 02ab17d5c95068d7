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

/// A duration argument: text (see [`parse`]) or a number of milliseconds.
pub(crate) fn from_lua(value: &LuaValue) -> Result<Duration, String> {
    match value {
        LuaValue::String(s) => parse(&s.to_string_lossy()),
        LuaValue::Integer(ms) if *ms >= 0 => Ok(Duration::from_millis(*ms as u64)),
        LuaValue::Number(ms) if *ms >= 0.0 && ms.is_finite() => {
            Ok(Duration::from_secs_f64(ms / 1000.0))
        }
        other => Err(format!(
            "invalid duration: expected text like \"5s\" or milliseconds, got {}",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("5").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
    }
}

//! Durations as Lua code writes them: text in the one duration grammar of wsrelay
//! ([`wsrelay_config::parse_duration`]: `"500ms"`, `"1m30s"`, `"1.5s"`), or a number of
//! milliseconds.
//!
//! Lua keeps two things of its own: a number means milliseconds (as in Wippy's `time`
//! module), and durations are capped at [`MAX`] because timers are computed as `now + d`.
//! The text grammar is exactly the config's: a bare number in text (`"30"`, also `"0"`) has
//! no unit and is refused; write `"0s"` or the number `0`.

use std::time::Duration;

use mlua::Value as LuaValue;
use wsrelay_config::parse_duration;

/// The longest duration Lua code may ask for: timers are computed as `now + d`, which must not
/// overflow the clock.
pub(crate) const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration argument: text (see the module docs) or a number of milliseconds, at most
/// [`MAX`].
pub(crate) fn from_lua(value: &LuaValue) -> Result<Duration, String> {
    let d = match value {
        LuaValue::String(s) => parse_duration(&s.to_string_lossy()).map_err(|e| e.to_string())?,
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

    fn text(lua: &mlua::Lua, s: &str) -> LuaValue {
        LuaValue::String(lua.create_string(s).unwrap())
    }

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
        assert!(from_lua(&text(&lua, "12646344259371037126s")).is_err());
        assert!(from_lua(&text(&lua, "367d")).is_err());
        assert!(from_lua(&text(&lua, "8785h"))
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn numbers_are_milliseconds_and_text_follows_the_config_grammar() {
        let lua = mlua::Lua::new();
        assert_eq!(
            from_lua(&LuaValue::Integer(1500)).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            from_lua(&LuaValue::Number(2.5)).unwrap(),
            Duration::from_micros(2500)
        );
        assert_eq!(
            from_lua(&text(&lua, "1m30s")).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            from_lua(&text(&lua, " 1.5s ")).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(from_lua(&text(&lua, "0s")).unwrap(), Duration::ZERO);
        // Text without a unit is refused, as in the config (Go would accept "0").
        for bad in ["0", "30", "soon", "-1s", "1d", ""] {
            let err = from_lua(&text(&lua, bad)).unwrap_err();
            assert!(err.contains("duration"), "{bad:?}: {err}");
        }
    }
}

//! The one bound on every timer the relay reads from a header, a payload or an option.

use std::time::Duration;

use wsrelay_config::parse_positive_duration;

/// The longest timer the relay accepts (heartbeat, write timeout, ping interval...): one
/// year, which already means "never". The connection adds these to the current time, and a
/// longer one (duration text goes up to ~584 billion years) would overflow the clock and
/// panic the connection task.
pub(crate) const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A positive duration of at most [`MAX_TIMER`].
pub(crate) fn parse_timer(text: &str) -> Result<Duration, String> {
    let duration = parse_positive_duration(text).map_err(|e| e.to_string())?;
    if duration > MAX_TIMER {
        return Err(format!(
            "invalid duration {:?}: too large (at most 8760h)",
            text.trim()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use wsrelay_http::Options;
    use wsrelay_process::{Map, Value};

    use crate::header::{RelayTarget, SettingsError};
    use crate::options::RelayOptions;

    /// Found by `fuzz/relay_header`: `"12646344259371037126s"` parsed, and the connection
    /// then panicked computing `now + period` (after `ws.join`, so its target never got
    /// `ws.leave` and the open-connection count leaked). Timers are now capped at a year.
    #[test]
    fn timers_that_would_overflow_the_clock_are_refused() {
        let huge = "12646344259371037126s";
        let header = format!(r#"{{"target_pid":"x","heartbeat_interval":"{huge}"}}"#);
        assert!(matches!(
            RelayTarget::from_header(header.as_bytes()),
            Err(SettingsError::Field {
                field: "heartbeat_interval",
                ..
            })
        ));
        assert!(
            RelayTarget::from_header(br#"{"target_pid":"x","heartbeat_interval":"8760h"}"#).is_ok()
        );
        let current = RelayTarget::from_header(br#"{"target_pid":"a"}"#).unwrap();
        let payload: Value = Map::new()
            .with("target_pid", "b")
            .with("heartbeat_interval", huge)
            .into();
        assert!(RelayTarget::from_control(&payload, &current).is_err());
        for key in [
            "wsrelay.write_timeout",
            "wsrelay.ping_interval",
            "wsrelay.pong_timeout",
        ] {
            let mut o = Options::new();
            o.insert(key.into(), huge.into());
            assert!(RelayOptions::from_options(&o).unwrap_err().contains(key));
        }
    }
}

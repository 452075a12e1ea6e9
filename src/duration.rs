//! Go-style durations (`90s`, `1h30m`, `1.5h`), the format of `spec.verifyInterval` and of the
//! CEL `duration()` the CRD validates it with.

use std::time::Duration;

/// The smallest `verifyInterval` the API accepts.
pub const MIN_VERIFY_INTERVAL: Duration = Duration::from_secs(60);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration such as 30m or 1h")]
    Malformed(String),
    #[error("{0:?} is shorter than the minimum of 1m")]
    TooShort(String),
}

/// Parses a Go duration: a sequence of decimal numbers, each with an optional fraction and a
/// unit among `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`. Signs and the bare `0` are not accepted
/// because an interval must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(text.to_owned());
    let mut rest = text;
    if rest.is_empty() {
        return Err(malformed());
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| malformed())?;
        if number_len == 0 || rest[..number_len].starts_with('.') {
            return Err(malformed());
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_len..];
        total_nanos += number * unit_nanos;
    }
    // Go caps durations at ~290 years; anything near that is nonsense for an interval.
    if !total_nanos.is_finite() || total_nanos > 1e18 {
        return Err(malformed());
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Whether `text` matches `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, the CRD's pattern for
/// `verifyInterval` (admission and `check` read it alike). A two-letter unit is tried before the
/// one-letter unit it starts with, as the pattern's alternation backtracks to it.
pub fn is_go_duration_syntax(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.len() - fraction.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return false;
            }
            rest = &fraction[digits..];
        }
        let Some(after_unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find_map(|unit| rest.strip_prefix(unit))
        else {
            return false;
        };
        rest = after_unit;
    }
    true
}

/// Parses a `verifyInterval`, enforcing the 1m minimum.
pub fn parse_verify_interval(text: &str) -> Result<Duration, DurationError> {
    let interval = parse_duration(text)?;
    if interval < MIN_VERIFY_INTERVAL {
        return Err(DurationError::TooShort(text.to_owned()));
    }
    Ok(interval)
}

/// Parses a command-line duration such as `10s`, or whole days such as `14d` (clap value parser).
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    if let Some(days) = text.strip_suffix('d')
        && let Ok(days) = days.parse::<u64>()
    {
        return Ok(Duration::from_secs(days.saturating_mul(86_400)));
    }
    parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2µs").unwrap(), Duration::from_micros(2));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "1", "h", "1x", "-1m", "1h-", ".5m", "1 h", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn flags_accept_days() {
        assert_eq!(parse_flag_duration("14d").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_flag_duration("10s").unwrap(), Duration::from_secs(10));
        assert!(parse_flag_duration("xd").is_err());
    }

    #[test]
    fn verify_interval_minimum() {
        assert!(parse_verify_interval("1m").is_ok());
        assert!(parse_verify_interval("60s").is_ok());
        assert_eq!(parse_verify_interval("59s"), Err(DurationError::TooShort("59s".into())));
    }

    #[test]
    fn go_duration_syntax() {
        for ok in ["1h", "1.5h", "1h30m", "10µs", "3us", "1ns"] {
            assert!(is_go_duration_syntax(ok), "{ok}");
        }
        for bad in ["", "h", "1", "1.h", ".5h", "1hh", "1H", "+1h"] {
            assert!(!is_go_duration_syntax(bad), "{bad}");
        }
    }
}

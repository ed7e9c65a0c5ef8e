//! Durations in configuration: `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"7d"`, or a bare number of seconds.
//!
//! A dedicated crate would do, but the grammar is five suffixes; the parser below is shorter than
//! the dependency's documentation.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] that reads and writes as `"10s"`-style text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    /// The inner [`Duration`].
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (write e.g. \"500ms\", \"10s\", \"5m\", \"1h\", \"7d\")")]
pub struct DurationError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses `"10s"`, `"1.5s"`, `"500ms"`, `"2m"`, `"1h"`, `"7d"` or `"30"` (seconds).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { text: text.to_owned(), reason };
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let value: f64 = number.parse().map_err(|_| err("malformed number"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(err("unknown unit")),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| err("out of range"))
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let millis = d.as_millis();
        if !millis.is_multiple_of(1000) || d.is_zero() {
            return write!(f, "{millis}ms");
        }
        let secs = d.as_secs();
        if secs.is_multiple_of(86400) {
            write!(f, "{}d", secs / 86400)
        } else if secs.is_multiple_of(3600) {
            write!(f, "{}h", secs / 3600)
        } else if secs.is_multiple_of(60) {
            write!(f, "{}m", secs / 60)
        } else {
            write!(f, "{secs}s")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\", \"500ms\", \"5m\" or a number of seconds")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                parse(text).map(HumanDuration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(secs)))
            }

            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<HumanDuration, E> {
                u64::try_from(secs)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("negative duration {secs}")))
            }

            fn visit_f64<E: de::Error>(self, secs: f64) -> Result<HumanDuration, E> {
                Duration::try_from_secs_f64(secs)
                    .map(HumanDuration)
                    .map_err(|_| E::custom(format!("invalid duration {secs}")))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn refuses_nonsense_with_the_text_in_the_message() {
        for bad in ["", "s", "10x", "-5s", "1.2.3s", "ten seconds"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(HumanDuration::secs(90).to_string(), "90s");
        assert_eq!(HumanDuration::secs(120).to_string(), "2m");
        assert_eq!(HumanDuration::secs(7200).to_string(), "2h");
        assert_eq!(HumanDuration::secs(86400 * 14).to_string(), "14d");
        assert_eq!(HumanDuration(Duration::from_millis(1500)).to_string(), "1500ms");
        for d in [HumanDuration::secs(90), HumanDuration(Duration::from_millis(250)), HumanDuration::secs(3600)] {
            assert_eq!(parse(&d.to_string()), Ok(d.0), "{d}");
        }
    }
}

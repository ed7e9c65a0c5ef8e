//! What a date means. The one rule for every as-of, period and filter bound, in the UI, the REST
//! API, CSV, XLSX and the audit workbook:
//!
//! - `as_of=DATE` and `to=DATE` include all of DATE: the instant just before the next local
//!   midnight in the configured time zone. `from=DATE` is the first instant of DATE.
//! - A wall-clock date-time without an offset (`2026-12-31T18:00`, seconds optional) is that time in
//!   the configured zone; when the clocks go back it is the earlier instant, and a time skipped when
//!   they go forward is refused.
//! - An instant with `Z` or an offset (RFC 3339) means itself.
//! - The effective as-of is min(requested, now - [`SETTLE_SECS`]): a change is stamped before its
//!   transaction commits, so only an instant that far back shows everything that will ever be
//!   recorded at or before it. A later request reads that instant and says so.
//! - A date after today (in the zone), or an instant later than now + `clock_window_secs`, is
//!   refused: the future has no inventory yet.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::ServiceError;

/// How far behind now an as-of reads at the latest: a change is stamped (recorded_at) before its
/// transaction commits, so a change recorded at T may still appear shortly after T.
pub const SETTLE_SECS: i64 = 120;

/// One microsecond, the resolution of every stored time.
const MICRO: chrono::Duration = chrono::Duration::microseconds(1);

/// Which end of a day a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayEnd {
    /// The first instant of the day (`from`).
    Start,
    /// The last instant of the day (`as_of`, `to`).
    End,
}

/// What a filter reads: recorded in [from, to] (both inclusive; either end open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// At or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// At or before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl Span {
    /// At or before `to`.
    pub fn upto(to: Option<DateTime<Utc>>) -> Span {
        Span { from: None, to }
    }
}

/// The time zone and clock rules a server applies to every date it is given.
#[derive(Debug, Clone, Copy)]
pub struct Calendar {
    /// The configured time zone.
    pub tz: Tz,
    /// How far in the future an explicit instant may be (clock skew between people and server).
    pub clock_window: chrono::Duration,
}

/// A resolved as-of: what was asked, what is read, and the zone people read it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    /// The instant the request meant.
    pub requested: DateTime<Utc>,
    /// The instant read: min(requested, now - [`SETTLE_SECS`]).
    pub effective: DateTime<Utc>,
    /// The configured zone, in which the instant is stated.
    pub tz: Tz,
}

impl AsOf {
    /// `at` read exactly as given, in UTC: for callers that already hold a settled instant (the
    /// rebuild engine's tests, the bench). Requests go through [`Calendar::as_of`] instead.
    pub fn exact(at: DateTime<Utc>) -> Self {
        AsOf { requested: at, effective: at, tz: chrono_tz::UTC }
    }

    /// The effective instant with its offset, as every answer states it.
    pub fn stated(&self) -> Stated {
        Calendar::new(self.tz, 0).state(self.effective)
    }

    /// The effective instant as `YYYYMMDDTHHMMSS+HHMM` in the zone, for file names.
    pub fn file_stamp(&self) -> String {
        Calendar::new(self.tz, 0).file_stamp(self.effective)
    }
}

/// The period of an audit: assets as of `as_of`, changes recorded in `[from, to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPeriod {
    /// Assets and components as of this instant.
    pub as_of: AsOf,
    /// First instant of the change period (inclusive).
    pub from: DateTime<Utc>,
    /// Last instant of the change period (inclusive).
    pub to: DateTime<Utc>,
}

/// An instant as people see it, with its offset in the configured zone (for JSON answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Stated {
    /// RFC 3339 with the zone's offset, e.g. `2026-12-31T23:59:59.999999+08:00`.
    pub at: String,
    /// The IANA zone, e.g. `Asia/Shanghai`.
    pub timezone: String,
}

impl Calendar {
    /// The rules for zone `tz` and a clock window of `clock_window_secs`.
    pub fn new(tz: Tz, clock_window_secs: u64) -> Self {
        let secs = i64::try_from(clock_window_secs).unwrap_or(i64::MAX / 1_000_000).min(86_400 * 365);
        Calendar { tz, clock_window: chrono::Duration::seconds(secs) }
    }

    /// The calendar of a server configuration.
    pub fn of(config: &crate::config::ServerConfig) -> Self {
        Calendar::new(config.tz(), config.clock_window_secs)
    }

    /// The first instant of `day` in the zone (local midnight, or the first minute after a gap).
    pub fn start_of(&self, day: NaiveDate) -> Result<DateTime<Utc>, ServiceError> {
        let mut local =
            day.and_hms_opt(0, 0, 0).ok_or_else(|| ServiceError::Malformed(format!("{day} is not a date")))?;
        // A zone that skips midnight (e.g. America/Santiago in spring) starts the day later.
        for _ in 0..(24 * 60) {
            if let Some(t) = self.tz.from_local_datetime(&local).earliest() {
                return Ok(t.with_timezone(&Utc));
            }
            local += chrono::Duration::minutes(1);
        }
        Err(ServiceError::Malformed(format!("{day} has no start in {}", self.tz)))
    }

    /// The last instant of `day` in the zone: just before the next day starts.
    pub fn end_of(&self, day: NaiveDate) -> Result<DateTime<Utc>, ServiceError> {
        let next = day.succ_opt().ok_or_else(|| ServiceError::Malformed(format!("{day} is out of range")))?;
        Ok(self.start_of(next)? - MICRO)
    }

    /// Today's date in the zone.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// The date of `at` in the zone.
    pub fn date_of(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    /// Parses `text` given as parameter `field`: a bare date stands for the `end` of that day.
    /// Returns the instant and whether it was a bare date. Does not check it against now.
    pub fn parse(&self, field: &str, text: &str, end: DayEnd) -> Result<(DateTime<Utc>, bool), ServiceError> {
        let text = text.trim();
        let malformed = || {
            ServiceError::Malformed(format!(
                "{field} must be a date (2026-12-31), a date-time in {} (2026-12-31T18:00) or an instant with an \
                 offset (2026-12-31T10:00:00Z), not {text:?}",
                self.tz
            ))
        };
        if text.len() > 64 {
            return Err(malformed());
        }
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            let at = match end {
                DayEnd::Start => self.start_of(day)?,
                DayEnd::End => self.end_of(day)?,
            };
            return Ok((at, true));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok((t.with_timezone(&Utc), false));
        }
        // RFC 3339 allows a space for the T; people type both.
        let wall = text.replacen(' ', "T", 1);
        let local = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(&wall, format).ok())
            .ok_or_else(malformed)?;
        match self.tz.from_local_datetime(&local).earliest() {
            Some(t) => Ok((t.with_timezone(&Utc), false)),
            None => Err(ServiceError::Malformed(format!(
                "{field}: {text} does not exist in {} (the clocks skip it)",
                self.tz
            ))),
        }
    }

    /// Refuses a time in the future: a date after today, or an instant past now + the clock window.
    fn not_future(
        &self,
        field: &str,
        text: &str,
        at: DateTime<Utc>,
        was_date: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if was_date {
            let today = self.today(now);
            if self.date_of(at) > today {
                return Err(ServiceError::invalid(
                    field,
                    format!(
                        "{field}={text} is after today ({today} in {}); there is no inventory of the future",
                        self.tz
                    ),
                ));
            }
        } else if at > now + self.clock_window {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "{field}={text} is in the future (now is {}); there is no inventory of the future",
                    self.state(now).at
                ),
            ));
        }
        Ok(())
    }

    /// Resolves an as-of given as text, at `now`.
    pub fn as_of_at(&self, field: &str, text: &str, now: DateTime<Utc>) -> Result<AsOf, ServiceError> {
        let (requested, was_date) = self.parse(field, text, DayEnd::End)?;
        self.not_future(field, text, requested, was_date, now)?;
        Ok(self.settle(requested, now))
    }

    /// Resolves an as-of given as text, now.
    pub fn as_of(&self, field: &str, text: &str) -> Result<AsOf, ServiceError> {
        self.as_of_at(field, text, Utc::now())
    }

    /// The `as_of` parameter of a list, a page or an export: absent or blank means the live
    /// inventory (`None`).
    pub fn optional_as_of(&self, text: Option<&str>) -> Result<Option<AsOf>, ServiceError> {
        text.map(str::trim).filter(|t| !t.is_empty()).map(|t| self.as_of("as_of", t)).transpose()
    }

    /// The `as_of` parameter where it must be given (the audit exports and views).
    pub fn required_as_of(&self, text: Option<&str>) -> Result<AsOf, ServiceError> {
        self.optional_as_of(text)?.ok_or_else(as_of_required)
    }

    /// An as-of for an instant already resolved (e.g. "now").
    pub fn settle(&self, requested: DateTime<Utc>, now: DateTime<Utc>) -> AsOf {
        let latest = now - chrono::Duration::seconds(SETTLE_SECS);
        AsOf { requested, effective: requested.min(latest), tz: self.tz }
    }

    /// Resolves an audit period: `as_of` is required; `from` defaults to the first instant of
    /// as_of's year in the zone, `to` to the effective as-of.
    pub fn audit_period_at(
        &self,
        as_of: &str,
        from: Option<&str>,
        to: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AuditPeriod, ServiceError> {
        let as_of = self.as_of_at("as_of", as_of, now)?;
        let from = match from.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => {
                let (at, was_date) = self.parse("from", text, DayEnd::Start)?;
                self.not_future("from", text, at, was_date, now)?;
                at
            }
            None => {
                let year = self.date_of(as_of.requested).year();
                let first = NaiveDate::from_ymd_opt(year, 1, 1)
                    .ok_or_else(|| ServiceError::Malformed(format!("year {year} is out of range")))?;
                self.start_of(first)?
            }
        };
        let to = match to.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => self.as_of_at("to", text, now)?.effective,
            None => as_of.effective,
        };
        if from > to {
            return Err(ServiceError::invalid(
                "from",
                format!("from ({}) is after to ({})", self.state(from).at, self.state(to).at),
            ));
        }
        Ok(AuditPeriod { as_of, from, to })
    }

    /// [`Calendar::audit_period_at`] now, with the parameters as a request gives them (`as_of`
    /// required).
    pub fn audit_period(
        &self,
        as_of: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<AuditPeriod, ServiceError> {
        let as_of = as_of.filter(|t| !t.trim().is_empty()).ok_or_else(as_of_required)?;
        self.audit_period_at(as_of, from, to, Utc::now())
    }

    /// The period of a change export: as [`Calendar::audit_period`], but `as_of` may be left out
    /// when `from` or `to` is given (a period of changes needs no as-of): it is then `to`, or now.
    pub fn change_period(
        &self,
        as_of: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<AuditPeriod, ServiceError> {
        fn given(t: Option<&str>) -> Option<&str> {
            t.filter(|t| !t.trim().is_empty())
        }
        let now = Utc::now();
        match (given(as_of), given(from), given(to)) {
            (None, _, Some(to)) => self.audit_period_at(to, from, Some(to), now),
            (None, Some(_), None) => {
                self.audit_period_at(&now.to_rfc3339_opts(SecondsFormat::Micros, true), from, None, now)
            }
            _ => self.audit_period(as_of, from, to),
        }
    }

    /// The span a filter's `from` and `to` name (either may be absent): `from=DATE` is its first
    /// instant, `to=DATE` all of it.
    pub fn span(&self, from: Option<&str>, to: Option<&str>) -> Result<Span, ServiceError> {
        Ok(Span {
            from: from.map(|t| self.lower_bound("from", t)).transpose()?,
            to: to.map(|t| self.upper_bound("to", t)).transpose()?,
        })
    }

    /// A lower bound of a filter (`from`): a date is its first instant.
    pub fn lower_bound(&self, field: &str, text: &str) -> Result<DateTime<Utc>, ServiceError> {
        Ok(self.parse(field, text, DayEnd::Start)?.0)
    }

    /// An upper bound of a filter (`to`, inclusive): a date is its last instant.
    pub fn upper_bound(&self, field: &str, text: &str) -> Result<DateTime<Utc>, ServiceError> {
        Ok(self.parse(field, text, DayEnd::End)?.0)
    }

    /// `at` with its offset in the zone.
    pub fn state(&self, at: DateTime<Utc>) -> Stated {
        Stated {
            at: at.with_timezone(&self.tz).to_rfc3339_opts(SecondsFormat::AutoSi, false),
            timezone: self.tz.name().to_owned(),
        }
    }

    /// `at` as `YYYYMMDDTHHMMSS+HHMM` in the zone, for file names.
    pub fn file_stamp(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.tz).format("%Y%m%dT%H%M%S%z").to_string()
    }

    /// The last instant of the latest local day that ended at least [`SETTLE_SECS`] before `now`:
    /// when the daily snapshot is due, so that a date's as-of starts from a snapshot at that very
    /// instant.
    pub fn daily_snapshot_due(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, ServiceError> {
        let settled = now - chrono::Duration::seconds(SETTLE_SECS);
        let today = self.date_of(settled);
        let end_today = self.end_of(today)?;
        if end_today <= settled {
            return Ok(end_today);
        }
        let yesterday = today.pred_opt().ok_or_else(|| ServiceError::Malformed("date out of range".to_owned()))?;
        self.end_of(yesterday)
    }
}

fn as_of_required() -> ServiceError {
    ServiceError::Malformed("as_of is required (e.g. as_of=2025-12-31)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> Calendar {
        Calendar::new(chrono_tz::Asia::Shanghai, 300)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("instant").with_timezone(&Utc)
    }

    #[test]
    fn a_date_as_of_includes_the_whole_local_day() {
        let now = utc("2027-03-01T00:00:00Z");
        let a = shanghai().as_of_at("as_of", "2026-12-06", now).expect("date");
        assert_eq!(a.requested, utc("2026-12-06T15:59:59.999999Z"));
        assert_eq!(a.effective, a.requested);
        let utc_cal = Calendar::new(chrono_tz::UTC, 300);
        assert_eq!(
            utc_cal.as_of_at("as_of", "2026-12-06", now).expect("date").requested,
            utc("2026-12-06T23:59:59.999999Z")
        );
    }

    #[test]
    fn from_is_the_first_instant_and_the_default_period_starts_the_local_year() {
        let now = utc("2027-03-01T00:00:00Z");
        let p = shanghai().audit_period_at("2026-12-31", None, None, now).expect("period");
        assert_eq!(p.from, utc("2025-12-31T16:00:00Z"));
        assert_eq!(p.to, p.as_of.effective);
        let p = shanghai().audit_period_at("2026-12-31", Some("2026-06-01"), Some("2026-06-30"), now).expect("period");
        assert_eq!(p.from, utc("2026-05-31T16:00:00Z"));
        assert_eq!(p.to, utc("2026-06-30T15:59:59.999999Z"));
        let err = shanghai().audit_period_at("2026-12-31", Some("2026-07-01"), Some("2026-06-30"), now);
        assert!(matches!(err, Err(ServiceError::Invalid { .. })), "{err:?}");
    }

    #[test]
    fn wall_clock_times_are_local_and_offsets_mean_themselves() {
        let cal = shanghai();
        assert_eq!(cal.parse("as_of", "2026-12-31T18:00", DayEnd::End).expect("t").0, utc("2026-12-31T10:00:00Z"));
        assert_eq!(cal.parse("as_of", "2026-12-31 18:00:30", DayEnd::End).expect("t").0, utc("2026-12-31T10:00:30Z"));
        assert_eq!(cal.parse("as_of", "2026-12-31T18:00:00Z", DayEnd::End).expect("t").0, utc("2026-12-31T18:00:00Z"));
        assert_eq!(
            cal.parse("as_of", "2026-12-31T18:00:00-05:00", DayEnd::End).expect("t").0,
            utc("2026-12-31T23:00:00Z")
        );
        for bad in ["31/12/2026", "2026-02-30", "last tuesday", "", "2026-12-31T25:00"] {
            assert!(matches!(cal.parse("as_of", bad, DayEnd::End), Err(ServiceError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn ambiguous_wall_clock_is_the_earlier_instant_and_a_skipped_one_is_refused() {
        let berlin = Calendar::new(chrono_tz::Europe::Berlin, 300);
        // 2026-10-25 02:30 happens twice in Berlin (CEST then CET): the earlier is 00:30Z.
        assert_eq!(berlin.parse("as_of", "2026-10-25T02:30", DayEnd::End).expect("t").0, utc("2026-10-25T00:30:00Z"));
        // 2026-03-29 02:30 never happens in Berlin.
        assert!(matches!(berlin.parse("as_of", "2026-03-29T02:30", DayEnd::End), Err(ServiceError::Malformed(_))));
        // A day of 23 hours still ends just before the next midnight.
        assert_eq!(
            berlin.end_of(NaiveDate::from_ymd_opt(2026, 3, 29).expect("d")).expect("end"),
            utc("2026-03-29T21:59:59.999999Z")
        );
    }

    #[test]
    fn the_effective_as_of_is_settled_and_the_future_is_refused() {
        let cal = shanghai();
        let now = utc("2026-12-06T04:00:00Z"); // 12:00 in Shanghai
        let today = cal.as_of_at("as_of", "2026-12-06", now).expect("today");
        assert_eq!(today.effective, now - chrono::Duration::seconds(SETTLE_SECS));
        assert!(matches!(cal.as_of_at("as_of", "2026-12-07", now), Err(ServiceError::Invalid { .. })));
        // Within the clock window: accepted, read at the settled instant.
        let soon = cal.as_of_at("as_of", "2026-12-06T04:04:00Z", now).expect("within window");
        assert_eq!(soon.effective, now - chrono::Duration::seconds(SETTLE_SECS));
        assert!(matches!(cal.as_of_at("as_of", "2026-12-06T04:06:00Z", now), Err(ServiceError::Invalid { .. })));
    }

    #[test]
    fn stated_times_and_file_names_carry_the_offset() {
        let cal = shanghai();
        let at = utc("2026-12-06T15:59:59.999999Z");
        assert_eq!(cal.state(at).at, "2026-12-06T23:59:59.999999+08:00");
        assert_eq!(cal.file_stamp(at), "20261206T235959+0800");
    }

    #[test]
    fn daily_snapshots_are_due_at_the_end_of_each_local_day() {
        let cal = shanghai();
        // 00:01 in Shanghai on the 7th: the 6th ended a minute ago, not yet settled.
        assert_eq!(
            cal.daily_snapshot_due(utc("2026-12-06T16:01:00Z")).expect("due"),
            utc("2026-12-05T15:59:59.999999Z")
        );
        assert_eq!(
            cal.daily_snapshot_due(utc("2026-12-06T16:05:00Z")).expect("due"),
            utc("2026-12-06T15:59:59.999999Z")
        );
    }
}

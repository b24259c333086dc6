//! Time as both services need it: unix milliseconds, calendar days in a
//! configured time zone (daily limits), and today's date (expiry and
//! birth-date checks).
use time::{Duration, OffsetDateTime};

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The calendar day number (days since 1970-01-01) of `at_ms` in a zone
/// `utc_offset_minutes` east of UTC.
pub fn day_number(at_ms: i64, utc_offset_minutes: i32) -> i64 {
    let local_ms = at_ms + i64::from(utc_offset_minutes) * 60_000;
    local_ms.div_euclid(86_400_000)
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalDate {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

/// The date of `at_ms` in the zone.
pub fn local_date(at_ms: i64, utc_offset_minutes: i32) -> LocalDate {
    let at = OffsetDateTime::UNIX_EPOCH
        + Duration::milliseconds(at_ms)
        + Duration::minutes(i64::from(utc_offset_minutes));
    LocalDate {
        year: at.year(),
        month: u8::from(at.month()),
        day: at.day(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_turn_at_local_midnight() {
        // 2026-11-25T15:59:59Z is 23:59:59 in UTC+8; one second later is the next day.
        let before = 1_795_622_399_000; // 2026-11-25T15:59:59Z
        let date = |ms| {
            let d = local_date(ms, 480);
            (d.year, d.month, d.day)
        };
        assert_eq!(date(before), (2026, 11, 25));
        assert_eq!(date(before + 1000), (2026, 11, 26));
        assert_eq!(day_number(before + 1000, 480), day_number(before, 480) + 1);
        assert_eq!(day_number(before, 0), day_number(before + 1000, 0));
    }
}

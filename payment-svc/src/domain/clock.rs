//! Time as the domain needs it: unix milliseconds, calendar days in the
//! configured time zone (for daily limits), and today's date (for expiry and
//! birth-date checks).
use time::{Duration, OffsetDateTime};

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The calendar day number (days since 1970-01-01) of `at_ms` in a zone
/// `utc_offset_minutes` east of UTC.
pub fn day_number(at_ms: i64, utc_offset_minutes: i32) -> i32 {
    let local_ms = at_ms + i64::from(utc_offset_minutes) * 60_000;
    local_ms.div_euclid(86_400_000) as i32
}

/// (year, month, day) of `at_ms` in the zone.
pub fn local_date(at_ms: i64, utc_offset_minutes: i32) -> (i32, u8, u8) {
    let at = OffsetDateTime::UNIX_EPOCH
        + Duration::milliseconds(at_ms)
        + Duration::minutes(i64::from(utc_offset_minutes));
    (at.year(), u8::from(at.month()), at.day())
}

/// A protobuf timestamp from unix milliseconds.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_turn_at_local_midnight() {
        // 2026-11-25T15:59:59Z is 23:59:59 in UTC+8; one second later is the next day.
        let before = 1_795_622_399_000; // 2026-11-25T15:59:59Z
        assert_eq!(local_date(before, 480), (2026, 11, 25));
        assert_eq!(local_date(before + 1000, 480), (2026, 11, 26));
        assert_eq!(day_number(before + 1000, 480), day_number(before, 480) + 1);
        assert_eq!(day_number(before, 0), day_number(before + 1000, 0));
    }

    #[test]
    fn timestamps_split_millis() {
        let t = timestamp(1_500);
        assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }
}

//! Wall-clock timestamps for log lines: RFC 3339 in UTC with milliseconds,
//! `2026-12-01T17:25:18.123Z`.
//!
//! Why here and not in the core: the core has no clock (time comes in as `now`, and that is
//! monotonic, not calendar time). The runtime stamps each access-log line when it formats it.
//! Written out by hand (days to civil date, Howard Hinnant's algorithm) rather than pulling
//! in a date crate for one fixed format; tested against known dates below.
//!
//! Failure: a clock before 1970 is written as the epoch; years past 9999 are not expected.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a timestamp: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub const LEN: usize = 24;

/// The current time as an RFC 3339 UTC timestamp with milliseconds.
pub fn now() -> Stamp {
    Stamp::at(SystemTime::now())
}

/// One timestamp, formatted on the stack.
#[derive(Copy, Clone)]
pub struct Stamp([u8; LEN]);

impl Stamp {
    /// `time` as a timestamp (the epoch if `time` is earlier).
    pub fn at(time: SystemTime) -> Stamp {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let millis = since.subsec_millis();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        put(&mut out[0..4], year as u64);
        put(&mut out[5..7], u64::from(month));
        put(&mut out[8..10], u64::from(day));
        put(&mut out[11..13], hour);
        put(&mut out[14..16], minute);
        put(&mut out[17..19], second);
        put(&mut out[20..23], u64::from(millis));
        Stamp(out)
    }

    /// The timestamp as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits and separators")
    }
}

/// Writes `n` as zero-padded decimal filling `slot` (higher digits are cut off).
fn put(slot: &mut [u8], mut n: u64) {
    for b in slot.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
        Stamp::at(t).as_str().to_string()
    }

    #[test]
    fn known_dates() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_764_609_918, 123), "2025-12-01T17:25:18.123Z");
        assert_eq!(at(951_782_400, 999), "2000-02-29T00:00:00.999Z", "leap day");
        assert_eq!(at(951_868_799, 1), "2000-02-29T23:59:59.001Z");
        assert_eq!(
            at(4_107_542_399, 0),
            "2100-02-28T23:59:59.000Z",
            "2100 is no leap year"
        );
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_798_761_599, 500), "2026-12-31T23:59:59.500Z");
        assert_eq!(at(1_798_761_600, 0), "2027-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips_through_the_day_count() {
        // Civil dates must be consecutive: each day is the previous plus one.
        let mut prev = civil_from_days(-1);
        for z in 0..146_097 * 2 {
            let (y, m, d) = civil_from_days(z);
            let next_of_prev = if d == 1 {
                (m == 1 && y == prev.0 + 1 && prev.1 == 12 && prev.2 == 31)
                    || (y == prev.0 && m == prev.1 + 1 && prev.2 >= 28)
            } else {
                (y, m, d - 1) == prev
            };
            assert!(next_of_prev, "day {z}: {prev:?} -> {:?}", (y, m, d));
            prev = (y, m, d);
        }
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(Stamp::at(t).as_str(), "1970-01-01T00:00:00.000Z");
    }
}

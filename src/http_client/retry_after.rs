//! `Retry-After`: delay seconds or an HTTP date (RFC 9110, section 10.2.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::MAX_RETRY_AFTER;

/// The wait a `Retry-After` value asks for at `now`, at most
/// [`MAX_RETRY_AFTER`]; a date already past asks for none. `None` for a
/// value that is neither a number of seconds nor an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, the one form senders may generate).
pub(crate) fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still a number of seconds: the most.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = UNIX_EPOCH + Duration::from_secs(imf_fixdate(value)?);
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Seconds since the epoch of an IMF-fixdate.
fn imf_fixdate(value: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if !DAYS.contains(&value.get(..3)?) {
        return None;
    }
    let rest = value.get(3..)?.strip_prefix(", ")?.strip_suffix(" GMT")?;
    let mut parts = rest.split(' ');
    let (day, month, year, time) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || day.len() != 2 || year.len() != 4 {
        return None;
    }
    let number = |digits: &str| -> Option<u64> {
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let day = number(day)?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year = number(year)?;
    // `HH:MM:SS`, each field two digits.
    let clock = time.as_bytes();
    if clock.len() != 8 || clock[2] != b':' || clock[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        number(time.get(0..2)?)?,
        number(time.get(3..5)?)?,
        number(time.get(6..8)?)?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) || year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`), for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12; // March is 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn delay_seconds_are_taken_up_to_the_bound() {
        assert_eq!(parse(" 7 ", at(0)), Some(Duration::from_secs(7)));
        assert_eq!(parse("18446744073709551615", at(0)), Some(MAX_RETRY_AFTER));
        assert_eq!(parse("99999999999999999999", at(0)), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn an_http_date_is_the_wait_until_it_and_a_past_one_no_wait() {
        // 1994-11-06 08:49:37 UTC, RFC 9110's own example.
        let date = 784_111_777;
        assert_eq!(imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(date));
        let value = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse(value, at(date - 30)), Some(Duration::from_secs(30)));
        assert_eq!(parse(value, at(date + 30)), Some(Duration::ZERO));
        assert_eq!(parse(value, at(date - 100_000)), Some(MAX_RETRY_AFTER));
        assert_eq!(imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            imf_fixdate("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
    }

    #[test]
    fn anything_else_is_no_retry_after() {
        for value in [
            "",
            "-1",
            "soon",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:+7 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "é, 06 Nov 1994 08:49:37 GMT",
            "+7",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 29 Feb 2100 08:49:37 GMT",
            "Sun, 06 Nov 1994 1:2:3:45 GMT",
            "Sun, 06 Nov 1994 0:00:000 GMT",
        ] {
            assert_eq!(parse(value, at(0)), None, "{value:?}");
        }
    }
}

//! Wall-clock times as calendar dates (UTC), and `strftime` with Envoy's access-log additions
//! (`%f`, `%3f` … `%9f` fractional seconds, `%s` epoch seconds) — shared by the access logs,
//! the application log format and the admin API.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub nanos: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    /// Day of the year, 1-based.
    pub yday: u32,
    /// Seconds since the epoch.
    pub epoch: i64,
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl Civil {
    pub fn of(t: SystemTime) -> Civil {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => (-(e.duration().as_secs() as i64), 0),
        };
        Civil::from_epoch(secs, nanos)
    }

    /// The calendar time `secs` seconds (and `nanos`) after the epoch.
    pub fn from_epoch(secs: i64, nanos: u32) -> Civil {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since the epoch (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = BEFORE[month as usize - 1] + day + u32::from(leap && month > 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            min: ((rem % 3600) / 60) as u32,
            sec: (rem % 60) as u32,
            nanos,
            weekday: (days + 4).rem_euclid(7) as u32,
            yday,
            epoch: secs,
        }
    }

    pub fn weekday_name(&self) -> &'static str {
        WEEKDAYS[self.weekday as usize]
    }

    pub fn month_name(&self) -> &'static str {
        MONTHS[(self.month - 1) as usize]
    }

    /// `2026-11-24T10:11:12.345Z`: Envoy's default `%START_TIME%` and the admin API's times.
    pub fn rfc3339_millis(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.min,
            self.sec,
            self.nanos / 1_000_000
        );
    }

    /// The first `digits` digits of the fraction of a second.
    pub fn fraction(&self, digits: u32, out: &mut String) {
        let digits = digits.clamp(1, 9);
        let v = self.nanos / 10u32.pow(9 - digits);
        let _ = write!(out, "{v:0width$}", width = digits as usize);
    }
}

/// `strftime(fmt)` in UTC with Envoy's `%f` (nine digits) / `%Nf` (N digits) and `%s`.
pub fn strftime(fmt: &str, c: &Civil, out: &mut String) {
    let mut chars = fmt.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let mut digits = None;
        if let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            digits = Some(d);
            chars.next();
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        if let Some(d) = digits {
            if spec == 'f' {
                c.fraction(d, out);
            } else {
                let _ = write!(out, "%{d}{spec}");
            }
            continue;
        }
        let _ = match spec {
            'Y' => write!(out, "{:04}", c.year),
            'y' => write!(out, "{:02}", c.year.rem_euclid(100)),
            'C' => write!(out, "{:02}", c.year.div_euclid(100)),
            'm' => write!(out, "{:02}", c.month),
            'd' => write!(out, "{:02}", c.day),
            'e' => write!(out, "{:2}", c.day),
            'j' => write!(out, "{:03}", c.yday),
            'H' => write!(out, "{:02}", c.hour),
            'I' => write!(out, "{:02}", (c.hour + 11) % 12 + 1),
            'M' => write!(out, "{:02}", c.min),
            'S' => write!(out, "{:02}", c.sec),
            'p' => write!(out, "{}", if c.hour < 12 { "AM" } else { "PM" }),
            'a' => write!(out, "{}", &c.weekday_name()[..3]),
            'A' => write!(out, "{}", c.weekday_name()),
            'b' | 'h' => write!(out, "{}", &c.month_name()[..3]),
            'B' => write!(out, "{}", c.month_name()),
            'u' => write!(out, "{}", if c.weekday == 0 { 7 } else { c.weekday }),
            'w' => write!(out, "{}", c.weekday),
            'T' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.min, c.sec),
            'R' => write!(out, "{:02}:{:02}", c.hour, c.min),
            'D' => write!(
                out,
                "{:02}/{:02}/{:02}",
                c.month,
                c.day,
                c.year.rem_euclid(100)
            ),
            'F' => write!(out, "{:04}-{:02}-{:02}", c.year, c.month, c.day),
            'c' => write!(
                out,
                "{} {} {:2} {:02}:{:02}:{:02} {}",
                &c.weekday_name()[..3],
                &c.month_name()[..3],
                c.day,
                c.hour,
                c.min,
                c.sec,
                c.year
            ),
            'z' => write!(out, "+0000"),
            'Z' => write!(out, "UTC"),
            's' => write!(out, "{}", c.epoch),
            'f' => {
                c.fraction(9, out);
                Ok(())
            }
            'n' => writeln!(out),
            't' => write!(out, "\t"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> Civil {
        Civil::of(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn calendar_fields() {
        // 2024-02-29T13:04:05.123456789Z, a Thursday, day 60.
        let c = at(1_709_211_845, 123_456_789);
        assert_eq!((c.year, c.month, c.day), (2024, 2, 29));
        assert_eq!((c.hour, c.min, c.sec), (13, 4, 5));
        assert_eq!((c.weekday, c.yday), (4, 60));
        let mut s = String::new();
        c.rfc3339_millis(&mut s);
        assert_eq!(s, "2024-02-29T13:04:05.123Z");
    }

    #[test]
    fn strftime_with_envoy_fractions() {
        let c = at(1_709_211_845, 123_456_789);
        let mut s = String::new();
        strftime("%Y/%m/%dT%H:%M:%S.%3f|%6f|%f|%s|%a %b %j|%%", &c, &mut s);
        assert_eq!(
            s,
            "2024/02/29T13:04:05.123|123456|123456789|1709211845|Thu Feb 060|%"
        );
    }
}

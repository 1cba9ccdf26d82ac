//! Rate-limit periods and their fixed windows, aligned to the clock as Kong aligns them:
//! seconds to days on multiples of their length since the epoch, months and years on calendar
//! boundaries (UTC).

use http::HeaderName;

/// A period a limit can be set for, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// The config field and the lower-case key part (`second`).
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`: names checked when
    /// this is compiled (`HeaderName::from_static` at run time validates on every call).
    pub fn header_names(self) -> &'static (HeaderName, HeaderName) {
        &HEADER_NAMES[self as usize]
    }

    /// The window containing `now` (Unix seconds), as `[start, end)`.
    pub fn window(self, now: i64) -> (i64, i64) {
        let fixed = |len: i64| {
            let start = now - now.rem_euclid(len);
            (start, start + len)
        };
        match self {
            Period::Second => fixed(1),
            Period::Minute => fixed(60),
            Period::Hour => fixed(3600),
            Period::Day => fixed(86_400),
            Period::Month => {
                let (y, m, _) = civil_from_days(now.div_euclid(86_400));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * 86_400,
                    days_from_civil(ny, nm, 1) * 86_400,
                )
            }
            Period::Year => {
                let (y, _, _) = civil_from_days(now.div_euclid(86_400));
                (
                    days_from_civil(y, 1, 1) * 86_400,
                    days_from_civil(y + 1, 1, 1) * 86_400,
                )
            }
        }
    }
}

const fn names(limit: &'static str, remaining: &'static str) -> (HeaderName, HeaderName) {
    (
        HeaderName::from_static(limit),
        HeaderName::from_static(remaining),
    )
}

/// `Period::header_names`, in the order of `Period::ALL`.
static HEADER_NAMES: [(HeaderName, HeaderName); 6] = [
    names("x-ratelimit-limit-second", "x-ratelimit-remaining-second"),
    names("x-ratelimit-limit-minute", "x-ratelimit-remaining-minute"),
    names("x-ratelimit-limit-hour", "x-ratelimit-remaining-hour"),
    names("x-ratelimit-limit-day", "x-ratelimit-remaining-day"),
    names("x-ratelimit-limit-month", "x-ratelimit-remaining-month"),
    names("x-ratelimit-limit-year", "x-ratelimit-remaining-year"),
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of `days_from_civil`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_windows_align_to_their_length() {
        assert_eq!(
            Period::Second.window(1_000_000_007),
            (1_000_000_007, 1_000_000_008)
        );
        assert_eq!(Period::Minute.window(125), (120, 180));
        assert_eq!(Period::Day.window(86_400 * 3 + 5), (86_400 * 3, 86_400 * 4));
    }

    #[test]
    fn months_and_years_follow_the_calendar() {
        // 2024-02-15T12:00:00Z: February of a leap year has 29 days.
        let t = 1_708_000_000;
        assert_eq!(Period::Month.window(t), (1_706_745_600, 1_709_251_200));
        assert_eq!(Period::Year.window(t), (1_704_067_200, 1_735_689_600));
        // 2026-12-31T23:59:59Z rolls into January of the next year.
        assert_eq!(Period::Month.window(1_798_761_599).1, 1_798_761_600);
    }

    #[test]
    fn header_names_follow_the_period() {
        for p in Period::ALL {
            let (limit, remaining) = p.header_names();
            assert_eq!(limit.as_str(), format!("x-ratelimit-limit-{}", p.name()));
            assert_eq!(
                remaining.as_str(),
                format!("x-ratelimit-remaining-{}", p.name())
            );
        }
    }
}

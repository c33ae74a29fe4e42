//! Calendar arithmetic and RFC 3339 datetimes, without a date library: the proleptic Gregorian
//! day count (H. Hinnant's algorithms) and Qdrant's datetime syntax. Filters compare datetimes
//! with it, and the node formats its audit timestamps with it, so there is one copy of the
//! algorithm.

use std::fmt;

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i128);

/// Parses a datetime the way Qdrant does for ranges and payload values: RFC 3339
/// (`2014-01-01T00:00:00Z`, `...T00:00:00.123+02:00`), with `t` or a space in place of `T`, an
/// offset written `+HH`, `+HHMM` or `+HH:MM`; without an offset (`2014-01-01T00:00:00`,
/// `2014-01-01 00:00`, `2014-01-01`) the time is UTC. Years beyond 0000..9999 need a sign.
pub fn parse_datetime(s: &str) -> Option<Timestamp> {
    let mut c = Bytes {
        b: s.as_bytes(),
        i: 0,
    };
    let year = c.year()?;
    c.eat(b'-')?;
    let month = c.digits(2)?;
    c.eat(b'-')?;
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if c.done() {
        return Some(Timestamp::from_parts(days, 0, 0, 0));
    }
    if !matches!(c.next()?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = c.digits(2)?;
    c.eat(b':')?;
    let minute = c.digits(2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut secs = i64::from(hour * 3600 + minute * 60);
    if c.done() {
        return Some(Timestamp::from_parts(days, secs, 0, 0));
    }
    c.eat(b':')?;
    let second = c.digits(2)?;
    if second > 59 {
        return None;
    }
    secs += i64::from(second);
    let mut nanos = 0u32;
    if c.peek() == Some(b'.') {
        c.i += 1;
        let start = c.i;
        while c.peek().is_some_and(|b| b.is_ascii_digit()) {
            c.i += 1;
        }
        let frac = &c.b[start..c.i];
        if frac.is_empty() {
            return None;
        }
        for k in 0..9 {
            nanos = nanos * 10 + frac.get(k).map_or(0, |d| u32::from(d - b'0'));
        }
    }
    let offset = if c.done() { 0 } else { c.offset()? };
    if !c.done() {
        return None;
    }
    Some(Timestamp::from_parts(days, secs, offset, nanos))
}

struct Bytes<'a> {
    b: &'a [u8],
    i: usize,
}

impl Bytes<'_> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        Some(v)
    }

    /// Four digits, or a sign and four to six digits.
    fn year(&mut self) -> Option<i64> {
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return self.digits(4).map(i64::from),
        };
        self.i += 1;
        let start = self.i;
        let mut v = 0i64;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            v = v * 10 + i64::from(d - b'0');
            self.i += 1;
            if self.i - start > 6 {
                return None;
            }
        }
        (self.i - start >= 4).then_some(sign * v)
    }

    /// `Z`, `z`, or a sign, two digits of hours and optionally two of minutes (with or without `:`).
    fn offset(&mut self) -> Option<i64> {
        let sign = match self.next()? {
            b'Z' | b'z' => return Some(0),
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours = self.digits(2)?;
        let mut minutes = 0;
        if !self.done() {
            if self.peek() == Some(b':') {
                self.i += 1;
            }
            minutes = self.digits(2)?;
        }
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(sign * i64::from(hours * 3600 + minutes * 60))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day since 1970-01-01, proleptic Gregorian (H. Hinnant's
/// algorithm); also used to format timestamps elsewhere in tessera.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are small by construction (1..=12, 1..=31).
    (y, m as u32, d as u32)
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

impl Timestamp {
    fn from_parts(days: i64, secs_of_day: i64, offset_secs: i64, nanos: u32) -> Self {
        let secs = i128::from(days) * 86_400 + i128::from(secs_of_day) - i128::from(offset_secs);
        Timestamp(secs * NANOS_PER_SEC + i128::from(nanos))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with nanoseconds, e.g. `2014-01-01T00:00:00.000000000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let Ok(days) = i64::try_from(days) else {
            return write!(f, "<timestamp out of range>");
        };
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            write!(f, "{y:04}")?;
        } else {
            write!(f, "{y:+05}")?;
        }
        write!(
            f,
            "-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::filter::JsonPath;

    #[test]
    fn datetime_formats() {
        let z = |s: &str| parse_datetime(s).unwrap_or_else(|| panic!("{s} should parse"));
        let base = z("2020-03-01T00:00:00Z");
        let same = [
            "2020-03-01T00:00:00z",
            "2020-03-01t00:00:00Z",
            "2020-03-01 00:00:00Z",
            "2020-03-01T00:00:00+00:00",
            "2020-03-01T09:00:00+09:00",
            "2020-03-01 09:00:00+0900",
            "2020-03-01T09:00:00+09",
            "2020-02-29T15:00:00-09:00",
            "2020-03-01T00:00:00.000",
            "2020-03-01T00:00:00",
            "2020-03-01 00:00",
            "2020-03-01T00:00",
            "2020-03-01",
        ];
        for s in same {
            assert_eq!(z(s), base, "{s}");
        }
        assert_eq!(z("2020-03-01T00:00:00.5Z").0 - base.0, 500_000_000);
        assert_eq!(
            z("2020-03-01T00:00:00.123456789123Z").0 - base.0,
            123_456_789
        );
        assert_eq!(z("1970-01-01T00:00:00Z"), Timestamp(0));
        assert_eq!(z("1969-12-31T23:59:59Z"), Timestamp(-1_000_000_000));
        assert_eq!(
            z("2000-02-29").0 - z("2000-02-28").0,
            86_400 * 1_000_000_000
        );
        // Qdrant's own ordering case, offsets with and without colons and minutes.
        let ordered = [
            "2000-06-08 00:18:53+0900",
            "2000-06-07 07:25:34-1100",
            "2000-07-10T00:18:53+0100",
            "2000-07-11 00:25:34-01:00",
            "2000-07-11 00:25:35-01",
        ];
        for w in ordered.windows(2) {
            assert!(z(w[0]) < z(w[1]), "{} < {}", w[0], w[1]);
        }
        let bad = [
            "",
            "2020",
            "2020-3-01",
            "2020-13-01",
            "2020-02-30",
            "2019-02-29",
            "2020-03-01T",
            "2020-03-01T24:00",
            "2020-03-01T00:60",
            "2020-03-01T00:00:60Z",
            "2020-03-01T00:00Z",
            "2020-03-01T00:00:00.Z",
            "2020-03-01T00:00:00+24:00",
            "2020-03-01T00:00:00+09:0",
            "2020-03-01T00:00:00BAD",
            "2020-03-01X00:00:00",
            "2020-03-01T00:00:00Z ",
            "+123-01-01",
        ];
        for s in bad {
            assert_eq!(parse_datetime(s), None, "{s:?} should be refused");
        }
        for s in [
            "2020-03-01T01:02:03.000000004Z",
            "0000-01-01",
            "9999-12-31T23:59:59.999999999Z",
            "-0001-06-01",
            "+10000-01-01",
        ] {
            let t = z(s);
            assert_eq!(parse_datetime(&t.to_string()), Some(t), "{s} -> {t}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn datetimes_and_paths_never_panic(s in ".{0,40}", t in "[0-9T:+\\-. Zz]{0,30}") {
            let _ = parse_datetime(&s);
            if let Some(ts) = parse_datetime(&t) {
                prop_assert_eq!(parse_datetime(&ts.to_string()), Some(ts));
            }
            if let Ok(p) = JsonPath::parse(&s) {
                prop_assert_eq!(JsonPath::parse(&p.to_string()), Ok(p));
            }
        }
    }
}

//! Values after `field:`: times, IP addresses and decimal numbers parsed, and times formatted for SQL.

use super::{qerr, Cmp, Pat, QueryError, Term, DAY};
use std::net::IpAddr;

pub(super) fn time(op: Cmp, text: Option<String>, vpos: usize) -> Result<Term, QueryError> {
    let t = text.ok_or_else(|| qerr(vpos, "wildcards are not allowed in times"))?;
    if let Some(rest) = t.get(..3).filter(|p| p.eq_ignore_ascii_case("now")).map(|_| &t[3..]) {
        let (secs, iv) =
            relative(rest).ok_or_else(|| qerr(vpos, "expected a relative time like now-24h (units s, m, h, d, w)"))?;
        if op == Cmp::Eq {
            return Err(qerr(vpos, "a relative time needs a comparison, e.g. at:>now-24h"));
        }
        return Ok(Term::Rel(op, secs, iv));
    }
    let (t, date) =
        absolute(&t).ok_or_else(|| qerr(vpos, "expected a time like now-24h, 2024-01-01 or 2024-01-01T10:00:00Z"))?;
    Ok(match (op, date) {
        (Cmp::Eq, true) => Term::Day(t),
        (Cmp::Gt, true) => Term::Abs(Cmp::Ge, t + DAY),
        (Cmp::Le, true) => Term::Abs(Cmp::Lt, t + DAY),
        _ => Term::Abs(op, t),
    })
}

/// `""` | `[+-]N[smhdw]` → (signed seconds, interval text).
fn relative(rest: &str) -> Option<(i64, String)> {
    if rest.is_empty() {
        return Some((0, String::new()));
    }
    let sign = match rest.as_bytes().first()? {
        b'-' => -1,
        b'+' => 1,
        _ => return None,
    };
    let body = &rest[1..];
    let unit = body.chars().last()?;
    let num = &body[..body.len() - unit.len_utf8()];
    if num.is_empty() || num.len() > 12 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = num.parse().ok()?;
    let (secs, factor, name) = match unit.to_ascii_lowercase() {
        's' => (1, 1, "seconds"),
        'm' => (60, 1, "minutes"),
        'h' => (3600, 1, "hours"),
        'd' => (86_400, 24, "hours"),
        'w' => (604_800, 168, "hours"),
        _ => return None,
    };
    (n * secs <= 100_000_000_000).then(|| (sign * n * secs, format!("{} {name}", n * factor)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, doy - (153 * mp + 2) / 5 + 1)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]][Z|±hh:mm]]` → (UTC micros, date only?).
pub(super) fn absolute(s: &str) -> Option<(i64, bool)> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let x = b.get(from..to)?;
        x.iter().all(u8::is_ascii_digit).then(|| x.iter().fold(0, |a, d| a * 10 + i64::from(d - b'0')))
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let days = days_from_civil(y, mo, d);
    if y < 1 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || civil_from_days(days) != (y, mo, d) {
        return None;
    }
    if b.len() == 10 {
        return Some((days * DAY, true));
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.get(13) != Some(&b':') {
        return None;
    }
    let (h, mi) = (num(11, 13)?, num(14, 16)?);
    let (mut sec, mut us, mut p) = (0, 0, 16);
    if b.get(p) == Some(&b':') {
        sec = num(17, 19)?;
        p = 19;
        if b.get(p) == Some(&b'.') {
            let n = b[p + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 6 {
                return None;
            }
            us = num(p + 1, p + 1 + n)? * 10i64.pow(6 - n as u32);
            p += 1 + n;
        }
    }
    let off = match &b[p.min(b.len())..] {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(p + 1, p + 3)?, num(p + 4, p + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (oh * 60 + om) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let t = (days * 86_400 + h * 3600 + mi * 60 + sec - off * 60) * 1_000_000 + us;
    (t >= days_from_civil(1, 1, 1) * DAY).then_some((t, false))
}

/// Micros → `YYYY-MM-DD HH:MM:SS[.ffffff]+00`.
pub(super) fn fmt_ts(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let (us, s) = (t.rem_euclid(DAY), t.rem_euclid(DAY) / 1_000_000);
    let mut o = format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if us % 1_000_000 != 0 {
        o += &format!(".{:06}", us % 1_000_000);
    }
    o + "+00"
}

/// inet text (`addr` or `addr/len`) → (address, prefix length).
pub(super) fn inet(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let a: IpAddr = a.parse().ok()?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    match l {
        None => Some((a, max)),
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
            l.parse().ok().filter(|l| *l <= max).map(|l| (a, l))
        }
        _ => None,
    }
}

/// Query value: address (equality), CIDR, or IPv4 prefix with trailing `*` octets.
pub(super) fn ip_value(p: &Pat) -> Option<(IpAddr, u8, bool)> {
    if !p.wild() {
        let t = p.text();
        return inet(&t).map(|(a, l)| (a, l, !t.contains('/')));
    }
    let (first, rest) = p.0.split_first()?;
    let octet = |o: &str| {
        let ok =
            !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()) && (o == "0" || !o.starts_with('0'));
        ok.then(|| o.parse::<u8>().ok()).flatten()
    };
    let octs: Vec<u8> = first.strip_suffix('.')?.split('.').map(octet).collect::<Option<_>>()?;
    let (last, mid) = rest.split_last()?;
    if !last.is_empty() || mid.iter().any(|s| s != ".") || octs.len() + rest.len() > 4 {
        return None;
    }
    let mut a = [0u8; 4];
    a[..octs.len()].copy_from_slice(&octs);
    Some((IpAddr::from(a), 8 * octs.len() as u8, false))
}

pub(super) fn ip_bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(x) => (u128::from(u32::from(x)), 32),
        IpAddr::V6(x) => (u128::from(x), 128),
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: valid as both a JSON number and a jsonpath literal.
pub(super) fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "1"));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac) && (int == "0" || !int.starts_with('0'))
}

//! Duplicati's time strings: the `time` query/body value, `--webservice-token-duration`, and the
//! `Time` it prints for filesets.
//! // Duplicati/Library/Utility/Timeparser.cs (ParseTimeInterval, ParseTimeSpan)

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// `ParseTimeSpan`: an integer is seconds; otherwise `<n><s|m|h|D|W|M|Y>` groups
/// (M = 30 days, Y = 365 days).
pub fn parse_timespan(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.trim().parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'D' => 86_400,
            'W' => 7 * 86_400,
            'M' => 30 * 86_400,
            'Y' => 365 * 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !digits.is_empty() || s.is_empty() {
        return None;
    }
    Some(std::time::Duration::from_secs(total))
}

/// `ParseTimeInterval(datestring, DateTime.Now)` as BackupGet.cs calls it. Order as in
/// Timeparser.cs: interval (`2D`, `1h30m`, added to now), `now`, an integer (seconds *added to
/// now*, not epoch seconds: that is what the C# does), then `DateTime.TryParse` forms (ISO-8601
/// with or without offset, assumed local = UTC here), then the compact `yyyyMMddTHHmmssZ`
/// (Utility.TryDeserializeDateTime). Anything else is an error (the C# throws a plain Exception,
/// which the web server turns into a 500).
pub fn parse_time_interval(s: &str, now: DateTime<Utc>) -> Result<DateTime<FixedOffset>, String> {
    let utc = FixedOffset::east_opt(0).ok_or("offset")?;
    let now = now.with_timezone(&utc);
    let t = s.trim();
    if is_interval(t) {
        let mut at = now;
        let mut digits = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: i64 = digits
                .parse()
                .map_err(|_| format!("invalid integer in {t}"))?;
            digits.clear();
            at = match c {
                's' | 'S' => at + Duration::seconds(n),
                'm' => at + Duration::minutes(n),
                'h' | 'H' => at + Duration::hours(n),
                'D' | 'd' => at + Duration::days(n),
                'W' | 'w' => at + Duration::days(7 * n),
                'M' => at + Duration::days(30 * n),
                'Y' | 'y' => at + Duration::days(365 * n),
                other => return Err(format!("Invalid specifier: {other}")),
            };
        }
        return Ok(at);
    }
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(now + Duration::seconds(secs));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d);
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(t, fmt) {
            return Ok(d);
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(utc.from_utc_datetime(&n));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(n) = d.and_hms_opt(0, 0, 0) {
            return Ok(utc.from_utc_datetime(&n));
        }
    }
    if let Some(compact) = t.strip_suffix('Z') {
        if let Ok(n) = NaiveDateTime::parse_from_str(compact, "%Y%m%dT%H%M%S") {
            return Ok(utc.from_utc_datetime(&n));
        }
    }
    Err(format!("The value \"{t}\" is not a valid date or time"))
}

// Timeparser.cs: `^(\d+[smhDWMY])+$`, RegexOptions.IgnoreCase.
fn is_interval(t: &str) -> bool {
    let mut saw_digit = false;
    let mut groups = 0;
    for c in t.chars() {
        if c.is_ascii_digit() {
            saw_digit = true;
        } else if saw_digit && "smhdwmy".contains(c.to_ascii_lowercase()) {
            saw_digit = false;
            groups += 1;
        } else {
            return false;
        }
    }
    groups > 0 && !saw_digit
}

/// How System.Text.Json writes a local `DateTime` with whole seconds in a UTC container:
/// `2026-11-26T18:00:00+00:00`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Cookie `expires=` as ASP.NET's SetCookieHeaderValue writes it (RFC 1123).
pub fn cookie_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 18, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn fileset_time_string_round_trips() {
        let t = format_time(now());
        assert_eq!(t, "2026-11-26T18:00:00+00:00");
        let p = parse_time_interval(&t, Utc::now()).map(|d| d.timestamp());
        assert_eq!(p, Ok(now().timestamp()));
        let plus2 =
            parse_time_interval("2026-11-26T20:00:00+02:00", Utc::now()).map(|d| d.timestamp());
        assert_eq!(plus2, Ok(now().timestamp()));
    }

    #[test]
    fn now_integers_and_intervals_are_relative_to_now() {
        let n = now();
        assert_eq!(
            parse_time_interval("now", n).map(|d| d.timestamp()),
            Ok(n.timestamp())
        );
        assert_eq!(
            parse_time_interval("60", n).map(|d| d.timestamp()),
            Ok(n.timestamp() + 60)
        );
        assert_eq!(
            parse_time_interval("1h30m", n).map(|d| d.timestamp()),
            Ok(n.timestamp() + 5400)
        );
        assert_eq!(
            parse_time_interval("20261126T180000Z", n).map(|d| d.timestamp()),
            Ok(n.timestamp())
        );
    }

    #[test]
    fn a_decoded_plus_breaks_the_time() {
        // A proxy that turns %2B into '+' makes the server read a space (form rules).
        assert!(parse_time_interval("2026-11-26T20:00:00 02:00", now()).is_err());
        assert!(parse_time_interval("yesterday", now()).is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(
            parse_timespan("30D").map(|d| d.as_secs()),
            Some(30 * 86_400)
        );
        assert_eq!(parse_timespan("90").map(|d| d.as_secs()), Some(90));
        assert_eq!(parse_timespan("1x"), None);
    }
}

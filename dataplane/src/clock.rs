//! Wall-clock formatting without a date crate: the civil (proleptic
//! Gregorian, UTC) date of a Unix time, after Howard Hinnant's
//! `civil_from_days`.

/// A UTC date and time to the millisecond.
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    pub millis: u32,
}

/// Now, in UTC.
pub fn now() -> Civil {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut c = at(now.as_secs());
    c.millis = now.subsec_millis();
    c
}

/// The UTC date and time of Unix time `secs`.
pub fn at(secs: u64) -> Civil {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis: 0,
    }
}

/// `2026-12-02 09:30 UTC` for Unix time `secs`.
pub fn minutes(secs: u64) -> String {
    let c = at(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        c.year, c.month, c.day, c.hour, c.minute
    )
}

/// A span for people: `45s`, `12m`, `3h 05m`, `2d 4h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_spans() {
        assert_eq!(minutes(0), "1970-01-01 00:00 UTC");
        assert_eq!(minutes(1_796_203_800), "2026-12-02 09:30 UTC");
        assert_eq!(minutes(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(span(59), "59s");
        assert_eq!(span(600), "10m");
        assert_eq!(span(3 * 3600 + 5 * 60), "3h 05m");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
    }
}

//! The cells of the tables and their layout: ages as kubectl writes them,
//! `-` for nothing, `ENV/NAME` outside the default environment, and the
//! columns themselves.

use convoy_api::env::DEFAULT_ENV;

/// `NAME`, or `ENV/NAME` outside the default env.
pub(super) fn qualified(env: &str, name: &str) -> String {
    if env.is_empty() || env == DEFAULT_ENV {
        name.to_owned()
    } else {
        format!("{env}/{name}")
    }
}

pub(super) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub(super) fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A duration as kubectl shows ages: `45s`, `3m`, `5h`, `2d`.
pub fn format_age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 60 * 60 => format!("{}m", s / 60),
        s if s < 24 * 60 * 60 => format!("{}h", s / (60 * 60)),
        s => format!("{}d", s / (24 * 60 * 60)),
    }
}

/// `3m ago` for a timestamp, `unset` when it is zero.
pub(super) fn ago(unix_ms: i64, now_ms: i64, unset: &str) -> String {
    if unix_ms <= 0 {
        unset.to_owned()
    } else {
        format!("{} ago", format_age(now_ms - unix_ms))
    }
}

/// `in 23h` for a future timestamp, `expired` for a past one.
pub(super) fn expires_in(unix_ms: i64, now_ms: i64) -> String {
    if unix_ms <= 0 {
        "-".to_owned()
    } else if unix_ms <= now_ms {
        "expired".to_owned()
    } else {
        format!("in {}", format_age(unix_ms - now_ms))
    }
}

pub(super) fn format_gib(bytes: u64) -> String {
    if bytes == 0 {
        return "-".to_owned();
    }
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Left-aligned columns three spaces apart; the last one is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 3;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(-5_000), "0s");
        assert_eq!(format_age(59_999), "59s");
        assert_eq!(format_age(60_000), "1m");
        assert_eq!(format_age(3 * 60_000 + 59_000), "3m");
        assert_eq!(format_age(3_600_000), "1h");
        assert_eq!(format_age(23 * 3_600_000), "23h");
        assert_eq!(format_age(3 * 86_400_000), "3d");
        assert_eq!(ago(0, NOW, "never"), "never");
        assert_eq!(ago(NOW - 42_000, NOW, "never"), "42s ago");
    }

    #[test]
    fn memory_is_shown_in_gib_with_one_decimal() {
        assert_eq!(format_gib(0), "-");
        assert_eq!(format_gib(8_192 * (1 << 20)), "8.0 GiB");
        assert_eq!(format_gib(1_610_612_736), "1.5 GiB");
    }
}

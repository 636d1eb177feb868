//! Limits the coordinator and the CLI both apply, so that the CLI refuses
//! what the coordinator would refuse before sending it.

/// The largest spec file `convoyd` reads by default: 1 MiB
/// (`convoyd --max-spec-bytes` raises it).
pub const DEFAULT_MAX_SPEC_BYTES: usize = 1024 * 1024;

/// One line saying a spec of `size` bytes is over `limit` and how to raise
/// the limit (`raise`: the flag that does, e.g. "`convoyd --max-spec-bytes`").
pub fn spec_too_large(size: usize, limit: usize, raise: &str) -> String {
    format!(
        "the spec is {} ({size} bytes), over the limit of {} ({limit} bytes); \
         split it into several files or raise {raise}",
        human_bytes(size),
        human_bytes(limit)
    )
}

/// `1 MiB`, `2.5 MiB`, `800 KiB`, `12 bytes`.
pub fn human_bytes(n: usize) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    let (value, unit) = if x >= KIB * KIB * KIB {
        (x / (KIB * KIB * KIB), "GiB")
    } else if x >= KIB * KIB {
        (x / (KIB * KIB), "MiB")
    } else if x >= KIB {
        (x / KIB, "KiB")
    } else {
        return format!("{n} bytes");
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(800 * 1024), "800 KiB");
        assert_eq!(human_bytes(1024 * 1024), "1 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 / 2), "2.5 MiB");
        assert_eq!(
            spec_too_large(
                45_488_969,
                DEFAULT_MAX_SPEC_BYTES,
                "`convoyd --max-spec-bytes`"
            ),
            "the spec is 43.4 MiB (45488969 bytes), over the limit of 1 MiB (1048576 bytes); \
             split it into several files or raise `convoyd --max-spec-bytes`"
        );
    }
}

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

/// Reads a size as a flag gives it: `1048576`, `512KiB`, `4MiB`, `1GiB`
/// (also `K`, `M`, `G`, `KB`, `MB`, `GB`, read as powers of 1024).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write e.g. `1048576`, `512KiB` or `4MiB`"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(factor)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a usable size"))
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
    fn sizes_parse_with_or_without_a_unit() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("2M"), Ok(2 << 20));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("4 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("lots").unwrap_err().contains("is not a size"));
    }

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

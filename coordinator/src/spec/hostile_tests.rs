//! Hostile spec files: each shape a network client could send is refused
//! with a one-line error naming the file and the limit, within 1 s of the
//! parsing thread's CPU time (measured as CPU time, so a busy machine does
//! not fail the test), and a bounded property test of the parser.

use std::time::Duration;

use proptest::prelude::*;

use super::{parse, parse_with, Limits};

/// CPU time the current thread spent in `f` (the lesser of two runs when
/// the first is over the bound, so that a hiccup of a busy machine is not
/// read as a slow parser: a slow input is slow twice), and what `f` returned.
fn cpu<T>(f: impl Fn() -> T) -> (Duration, T) {
    let (took, out) = cpu_once(&f);
    if took < Duration::from_secs(1) {
        return (took, out);
    }
    let (again, out) = cpu_once(&f);
    (took.min(again), out)
}

fn cpu_once<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let now = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let start = now();
    let out = f();
    (now() - start, out)
}

/// Parses `bytes`, expecting an error within 1 s of CPU; returns the error.
fn refused(what: &str, bytes: &[u8]) -> String {
    let (took, result) = cpu(|| parse_with("hostile.yaml", bytes, &Limits::default()));
    let err = match result {
        Ok(_) => panic!("{what}: accepted"),
        Err(err) => err.to_string(),
    };
    assert!(
        took < Duration::from_secs(1),
        "{what}: {took:?} of CPU to refuse ({err})"
    );
    assert!(err.starts_with("hostile.yaml"), "{what}: {err}");
    assert!(!err.contains('\n'), "{what}: {err}");
    err
}

fn service_with(extra: &str) -> String {
    format!("services:\n  web:\n    image: nginx\n{extra}")
}

#[test]
fn deep_flow_nesting_is_refused_at_the_depth_limit() {
    // The shape that kept a coordinator worker busy for 77 s.
    let text = service_with(&format!("    labels: {}\n", "[".repeat(100_000)));
    let err = refused("100,000 nested [", text.as_bytes());
    assert!(err.contains("nests deeper than 32 levels"), "{err}");
    assert!(err.starts_with("hostile.yaml:4:"), "{err}");
    let text = service_with(&format!("    x-deep: {}\n", "{a: ".repeat(50_000)));
    let err = refused("50,000 nested {", text.as_bytes());
    assert!(err.contains("nests deeper than 32 levels"), "{err}");
}

#[test]
fn deep_block_nesting_is_refused_at_the_depth_limit() {
    let mut text = String::from("services:\n  web:\n    image: nginx\n    x-deep:\n");
    for depth in 0..200 {
        text.push_str(&" ".repeat(6 + depth));
        text.push_str("a:\n");
    }
    let err = refused("200 nested keys", text.as_bytes());
    assert!(err.contains("nests deeper than 32 levels"), "{err}");
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_parsed() {
    let text = service_with(&format!("    x-pad: \"{}\"\n", "a".repeat(2 << 20)));
    let err = refused("2 MiB", text.as_bytes());
    assert!(
        err.starts_with("hostile.yaml: the spec is 2 MiB ("),
        "{err}"
    );
    assert!(
        err.contains("over the limit of 1 MiB (1048576 bytes)") && err.contains("--max-spec-bytes"),
        "{err}"
    );
    // A raised limit lets it through.
    let limits = Limits::with_max_bytes(4 << 20);
    assert!(parse_with("big.yaml", text.as_bytes(), &limits).is_ok());
}

#[test]
fn many_keys_are_refused_at_the_node_limit() {
    let mut text = service_with("    environment:\n");
    for i in 0..60_000 {
        text.push_str(&format!("      K{i}: v\n"));
    }
    assert!(text.len() < 1 << 20);
    let err = refused("60,000 environment keys", text.as_bytes());
    assert!(
        err.contains("more than 100000 keys, values and list items"),
        "{err}"
    );
}

#[test]
fn many_keys_under_the_limit_parse_in_linear_time() {
    // 40,000 keys: once O(n²) in the duplicate check, now one hash lookup each.
    let mut text = service_with("    environment:\n");
    for i in 0..40_000 {
        text.push_str(&format!("      K{i}: v\n"));
    }
    let (took, file) = cpu(|| parse("many.yaml", &text));
    let file = file.expect("valid");
    assert_eq!(file.services["web"].environment.len(), 40_000);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn alias_bombs_are_refused() {
    // Billion laughs: each level is ten aliases of the one before.
    let mut text = String::from("x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let prev = format!("*a{}", level - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("x-a{level}: &a{level} [{items}]\n"));
    }
    text.push_str("services:\n  web:\n    image: nginx\n    labels:\n      x: *a9\n");
    let err = refused("billion laughs", text.as_bytes());
    assert!(
        err.contains("aliases expand to more than") || err.contains("anchors or aliases"),
        "{err}"
    );
    // Many aliases of one small anchor.
    let mut text = String::from("x-a: &a v\nservices:\n  web:\n    image: nginx\n    x-many:\n");
    for _ in 0..5_000 {
        text.push_str("      - *a\n");
    }
    assert!(refused("5,000 aliases", text.as_bytes()).contains("more than 1000 anchors or aliases"));
}

#[test]
fn long_lines_parse_in_linear_time_or_are_refused_by_size() {
    // One line of almost 1 MiB: a long value is fine.
    let text = service_with(&format!("    x-long: {}\n", "a".repeat((1 << 20) - 100)));
    let (took, result) = cpu(|| parse("long.yaml", &text));
    assert!(result.is_ok(), "{:?}", result.err());
    assert!(took < Duration::from_secs(1), "{took:?}");
    // A long key is an error, not a stall.
    let text = service_with(&format!("    {}: v\n", "k".repeat(100_000)));
    refused("a 100,000-character key", text.as_bytes());
    // A flow sequence of 200,000 items on one line: over the node limit.
    let text = service_with(&format!("    x-flow: [{}]\n", "1,".repeat(200_000)));
    assert!(refused("200,000 items", text.as_bytes()).contains("more than 100000"));
}

#[test]
fn bad_utf8_is_refused_naming_line_and_byte() {
    let mut bytes = service_with("    labels:\n      a: ").into_bytes();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let err = refused("bad UTF-8", &bytes);
    assert!(
        err.starts_with("hostile.yaml:5:10: the file is not UTF-8 text: byte 55 (0xff)"),
        "{err}"
    );
}

#[test]
fn nul_bytes_are_refused_naming_line_and_column() {
    let text = service_with("    labels:\n      a: b\0c\n");
    let err = refused("NUL", text.as_bytes());
    assert_eq!(
        err,
        "hostile.yaml:5:11: the file holds a NUL byte, which YAML does not allow"
    );
}

#[test]
fn several_documents_and_unknown_anchors_are_errors() {
    refused("two documents", b"services: {}\n---\nservices: {}\n");
    let err = refused(
        "unknown alias",
        service_with("    labels: *nope\n").as_bytes(),
    );
    assert!(err.starts_with("hostile.yaml:4:"), "{err}");
}

/// Pieces of YAML that stress the parser: nesting, anchors, aliases,
/// merge keys, quotes, odd indentation and bytes YAML does not allow.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(": ".to_owned()),
        Just("- ".to_owned()),
        Just("\n".to_owned()),
        Just("\n  ".to_owned()),
        Just("\n    ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: ".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("? ".to_owned()),
        Just("|\n".to_owned()),
        Just("!!str ".to_owned()),
        Just("---\n".to_owned()),
        Just("services".to_owned()),
        Just("image".to_owned()),
        Just("ports".to_owned()),
        Just("nginx".to_owned()),
        Just("80:80".to_owned()),
        Just("\u{0}".to_owned()),
        Just("#".to_owned()),
        "[a-z0-9_.-]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the text, parsing ends (no panic) within the CPU bound, and
    /// an error is one line naming the file.
    #[test]
    fn any_text_is_parsed_or_refused_with_one_line(
        pieces in proptest::collection::vec(fragment(), 0..200),
        start in prop_oneof![Just(""), Just("services:\n  web:\n    image: nginx\n    ")],
    ) {
        let text = format!("{start}{}", pieces.concat());
        let (took, result) = cpu(|| parse("fuzz.yaml", &text));
        prop_assert!(took < Duration::from_secs(1), "{took:?} for {text:?}");
        if let Err(err) = result {
            let err = err.to_string();
            prop_assert!(err.starts_with("fuzz.yaml"), "{err}");
            prop_assert!(!err.contains('\n'), "{err}");
        }
    }

    /// Arbitrary bytes: refused or parsed, never a panic.
    #[test]
    fn any_bytes_are_parsed_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (took, result) = cpu(|| parse_with("bytes.yaml", &bytes, &Limits::default()));
        prop_assert!(took < Duration::from_secs(1), "{took:?}");
        if let Err(err) = result {
            prop_assert!(err.to_string().starts_with("bytes.yaml"));
        }
    }
}

#[test]
fn a_key_with_a_line_break_gives_a_one_line_error() {
    let err = refused(
        "key with a newline",
        b"services:\n  web:\n    image: x\n    \"a\\nb\": 1\n",
    );
    assert!(err.contains("services.web.a\\nb: unknown field"), "{err}");
}

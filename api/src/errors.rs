//! Errors as one line of text.

/// An error and its sources on one line ("client error (Connect): tcp
/// connect error: Connection refused"), without repeating a source whose
/// text the line already holds.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn sources_follow_on_one_line_and_repeats_are_left_out() {
        let e = E(
            "client error (Connect)",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E("connect error", None))),
            ))),
        );
        // "connect error" is already in the line: not repeated.
        assert_eq!(chain(&e), "client error (Connect): tcp connect error");
        let e = E("a", Some(Box::new(E("b", None))));
        assert_eq!(chain(&e), "a: b");
    }
}

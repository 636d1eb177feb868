//! `.env` and `env_file` lines as Compose reads them, handed to dotenvy.
//! dotenvy parses like a shell, so an unquoted value with a space in it
//! (`GREETING=hi there`) is an error there, while Compose takes the whole
//! rest of the line (less a ` #` comment, trimmed). Such values are quoted
//! here before dotenvy reads them; every other line is left as written, so
//! quotes, escapes, `export` and `${VAR}` keep dotenvy's meaning.

/// `text` with each unquoted value that holds whitespace double-quoted (its
/// `\` and `"` escaped) and its inline comment dropped. Lines stay lines, so
/// line numbers in errors still point into the file.
pub fn quote_spaced_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body.strip_suffix('\r').unwrap_or(body), &line[body.len()..]),
            None => (line, ""),
        };
        out.push_str(&quote_line(body));
        out.push_str(end);
    }
    out
}

fn quote_line(line: &str) -> String {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return line.to_owned();
    }
    let Some((key, value)) = line.split_once('=') else {
        return line.to_owned();
    };
    let value = value.trim_start();
    if value.starts_with('"') || value.starts_with('\'') {
        return line.to_owned();
    }
    // A comment starts at ` #` (or a tab before it), as Compose reads it.
    let comment = [" #", "\t#"].iter().filter_map(|c| value.find(c)).min();
    let value = comment.map_or(value, |at| &value[..at]).trim_end();
    if !value.contains(char::is_whitespace) {
        return line.to_owned();
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{key}=\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        dotenvy::from_read_iter(quote_spaced_values(text).as_bytes())
            .map(|e| e.unwrap())
            .collect()
    }

    #[test]
    fn unquoted_values_with_spaces_are_read_as_compose_reads_them() {
        assert_eq!(
            parse("GREETING=hi from .env\nA=1 # a comment\nB=two words   # and one\n"),
            [
                ("GREETING".to_string(), "hi from .env".to_string()),
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
            ]
        );
    }

    #[test]
    fn quoted_values_comments_export_and_expansion_are_dotenvys() {
        let text = "# top\nexport X=1\nQ=\"a \\\"b\\\"\"\nS='lit $X'\nE=${X}2\nW=say hi ${X}\n\n";
        assert_eq!(
            parse(text),
            [
                ("X".to_string(), "1".to_string()),
                ("Q".to_string(), "a \"b\"".to_string()),
                ("S".to_string(), "lit $X".to_string()),
                ("E".to_string(), "12".to_string()),
                ("W".to_string(), "say hi 1".to_string()),
            ]
        );
        // Lines stay lines (CRLF too), so errors keep their line numbers.
        assert_eq!(quote_spaced_values("A=b c\r\nD=e\n").lines().count(), 2);
    }
}

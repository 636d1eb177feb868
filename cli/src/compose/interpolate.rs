//! Compose's variable interpolation, done by the CLI on the text of a spec
//! before it is sent, so that the coordinator stores (and `history` and
//! `diff` show) what really runs.
//!
//! The syntax is the Compose Specification's: `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` / `${VAR?message}` (required), `${VAR:+alt}` /
//! `${VAR+alt}` (replacement), defaults holding further interpolations,
//! and `$$` for a literal `$`. An unset variable without a default becomes
//! an empty string, with a warning, as Compose does.
//!
//! Compose interpolates the values of the parsed YAML; this works on the
//! text, line by line, so that errors name the line and the coordinator
//! still sees the user's lines. Comments are left as they are (a `#` at the
//! start of a line or after a space, outside quotes), and so are the lines
//! of block scalars (`|`, `>`), where a `#` is text. The one difference
//! that shows: a value holding YAML syntax (`a: b`, a newline) is inserted
//! as text, where Compose would keep it one string; quote such values'
//! places in the file (`"${VAR}"`). No crate covers Compose's whole
//! syntax (`shellexpand` lacks `?`, `+` and the colon-less forms), so it
//! is written here, with the Compose Specification's examples as tests.

use std::fmt;

/// A variable's value, or `None` when it is not set.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The interpolated text and one warning per variable that was not set.
#[derive(Debug, PartialEq, Eq)]
pub struct Interpolated {
    pub text: String,
    /// `FILE:LINE: the variable `X` is not set; an empty string is used`.
    pub warnings: Vec<String>,
}

/// Why a file cannot be interpolated; displays as `FILE:LINE: message`.
#[derive(Debug, PartialEq, Eq)]
pub struct InterpolationError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for InterpolationError {}

/// Interpolates `text`, the content of `file` (named in messages).
pub fn interpolate(
    file: &str,
    text: &str,
    vars: &dyn Lookup,
) -> Result<Interpolated, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut warnings = Vec::new();
    // The indentation of the line that opened a block scalar, while in one.
    let mut block: Option<usize> = None;
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line = index + 1;
        let fail = |message: String| InterpolationError {
            file: file.to_owned(),
            line,
            message,
        };
        let body = raw.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start_matches(' ').len();
        if let Some(parent) = block {
            if body.trim().is_empty() || indent > parent {
                // Block scalar content: all text, `#` included.
                out.push_str(&expand_segment(body, vars, &mut warnings, file, line).map_err(fail)?);
                out.push_str(&raw[body.len()..]);
                continue;
            }
            block = None;
        }
        let code_end = comment_start(body).unwrap_or(body.len());
        let (code, comment) = body.split_at(code_end);
        out.push_str(&expand_segment(code, vars, &mut warnings, file, line).map_err(fail)?);
        out.push_str(comment);
        out.push_str(&raw[body.len()..]);
        if opens_block_scalar(code) {
            block = Some(indent);
        }
    }
    Ok(Interpolated {
        text: out,
        warnings,
    })
}

/// Where a YAML comment starts on `line`: a `#` at the start or after
/// whitespace, outside single and double quotes.
fn comment_start(line: &str) -> Option<usize> {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '\\' if double => {
                chars.next();
            }
            '#' if !single && !double && prev.is_whitespace() => return Some(i),
            _ => {}
        }
        prev = c;
    }
    None
}

/// Whether `code` (a line without its comment) ends with a block scalar
/// indicator: `key: |`, `- >-`, `key: |2+`.
fn opens_block_scalar(code: &str) -> bool {
    let code = code.trim_end();
    let Some(last) = code.rsplit([' ', '\t']).next() else {
        return false;
    };
    let mut chars = last.chars();
    let starts = matches!(chars.next(), Some('|' | '>'));
    let before = &code[..code.len() - last.len()];
    starts
        && chars.all(|c| c.is_ascii_digit() || c == '+' || c == '-')
        && (before.trim_end().ends_with(':')
            || before.trim_end().ends_with('-')
            || before.trim().is_empty())
}

/// A parsed template: literal text and variables.
#[derive(Debug)]
enum Piece {
    Text(String),
    Var {
        name: String,
        op: Option<(Op, Vec<Piece>)>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `:-` (`colon`) or `-`.
    Default { colon: bool },
    /// `:?` or `?`.
    Required { colon: bool },
    /// `:+` or `+`.
    Alternative { colon: bool },
}

fn expand_segment(
    text: &str,
    vars: &dyn Lookup,
    warnings: &mut Vec<String>,
    file: &str,
    line: usize,
) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let pieces = parse(&chars, &mut pos, false)?;
    let mut out = String::new();
    eval(&pieces, vars, &mut out, &mut |name| {
        let warning =
            format!("{file}:{line}: the variable `{name}` is not set; an empty string is used");
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    })?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses from `pos` to the end, or (`nested`) to the `}` that closes the
/// `${` being read, which it consumes.
fn parse(chars: &[char], pos: &mut usize, nested: bool) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    while *pos < chars.len() {
        let c = chars[*pos];
        if nested && c == '}' {
            *pos += 1;
            if !text.is_empty() {
                pieces.push(Piece::Text(text));
            }
            return Ok(pieces);
        }
        if c != '$' {
            text.push(c);
            *pos += 1;
            continue;
        }
        let start = *pos;
        *pos += 1;
        match chars.get(*pos) {
            Some('$') => {
                text.push('$');
                *pos += 1;
            }
            Some(&c) if is_name_start(c) => {
                let name = take_name(chars, pos);
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var { name, op: None });
            }
            Some('{') => {
                *pos += 1;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(parse_braced(chars, pos, start)?);
            }
            _ => {
                let shown: String = chars[start..(start + 2).min(chars.len())].iter().collect();
                return Err(format!(
                    "invalid interpolation `{shown}`: write `$$` for a literal `$`, \
                     or `${{NAME}}` for a variable"
                ));
            }
        }
    }
    if nested {
        return Err("a `${` is not closed by `}`".to_owned());
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn take_name(chars: &[char], pos: &mut usize) -> String {
    let begin = *pos;
    while chars.get(*pos).is_some_and(|&c| is_name_char(c)) {
        *pos += 1;
    }
    chars[begin..*pos].iter().collect()
}

/// After `${`: `NAME}` or `NAME` OP WORD `}`.
fn parse_braced(chars: &[char], pos: &mut usize, start: usize) -> Result<Piece, String> {
    let shown = || -> String {
        let end = chars[start..]
            .iter()
            .position(|&c| c == '}')
            .map_or(chars.len(), |i| start + i + 1);
        chars[start..end].iter().collect()
    };
    if !chars.get(*pos).is_some_and(|&c| is_name_start(c)) {
        return Err(format!(
            "invalid interpolation `{}`: a variable name starts with a letter or `_`",
            shown()
        ));
    }
    let name = take_name(chars, pos);
    let colon = chars.get(*pos) == Some(&':');
    let at = *pos + usize::from(colon);
    let op = match chars.get(at) {
        Some('}') if !colon => {
            *pos += 1;
            return Ok(Piece::Var { name, op: None });
        }
        Some('-') => Op::Default { colon },
        Some('?') => Op::Required { colon },
        Some('+') => Op::Alternative { colon },
        None => {
            return Err(format!(
                "invalid interpolation `{}`: a `${{` is not closed by `}}`",
                shown()
            ))
        }
        _ => {
            return Err(format!(
                "invalid interpolation `{}`: expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+` \
                 after `{name}`",
                shown()
            ))
        }
    };
    *pos = at + 1;
    let word =
        parse(chars, pos, true).map_err(|e| format!("invalid interpolation `{}`: {e}", shown()))?;
    Ok(Piece::Var {
        name,
        op: Some((op, word)),
    })
}

fn eval(
    pieces: &[Piece],
    vars: &dyn Lookup,
    out: &mut String,
    unset: &mut dyn FnMut(&str),
) -> Result<(), String> {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var { name, op } => {
                let value = vars.get(name);
                // Set, and for the colon forms also not empty.
                let present = |colon: bool| match &value {
                    Some(v) => !(colon && v.is_empty()),
                    None => false,
                };
                match op {
                    None => match &value {
                        Some(v) => out.push_str(v),
                        None => unset(name),
                    },
                    Some((Op::Default { colon }, word)) => {
                        if present(*colon) {
                            out.push_str(value.as_deref().unwrap_or_default());
                        } else {
                            eval(word, vars, out, unset)?;
                        }
                    }
                    Some((Op::Required { colon }, word)) => {
                        if present(*colon) {
                            out.push_str(value.as_deref().unwrap_or_default());
                        } else {
                            let mut message = String::new();
                            eval(word, vars, &mut message, unset)?;
                            let why = if value.is_some() {
                                "is empty"
                            } else {
                                "is not set"
                            };
                            return Err(if message.is_empty() {
                                format!("required variable `{name}` {why}")
                            } else {
                                format!("required variable `{name}` {why}: {message}")
                            });
                        }
                    }
                    Some((Op::Alternative { colon }, word)) => {
                        if present(*colon) {
                            eval(word, vars, out, unset)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    fn one(text: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
        interpolate("app.yaml", text, &vars(pairs))
            .map(|i| i.text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_compose_specification_examples() {
        // From the Compose Specification's "Interpolation" section.
        let env = [("TAG", "v1.5"), ("EMPTY", ""), ("FOO", "foo")];
        assert_eq!(
            one("image: \"webapp:${TAG}\"", &env),
            Ok("image: \"webapp:v1.5\"".into())
        );
        assert_eq!(one("x: ${UNSET:-default}", &env), Ok("x: default".into()));
        assert_eq!(one("x: ${EMPTY:-default}", &env), Ok("x: default".into()));
        assert_eq!(one("x: ${EMPTY-default}", &env), Ok("x: ".into()));
        assert_eq!(one("x: ${UNSET-default}", &env), Ok("x: default".into()));
        assert_eq!(
            one("x: ${FOO:+replacement}", &env),
            Ok("x: replacement".into())
        );
        assert_eq!(one("x: ${EMPTY:+replacement}", &env), Ok("x: ".into()));
        assert_eq!(
            one("x: ${EMPTY+replacement}", &env),
            Ok("x: replacement".into())
        );
        assert_eq!(one("x: ${UNSET+replacement}", &env), Ok("x: ".into()));
        // Nested: `${VARIABLE:-${FOO}}`, `${VARIABLE?$FOO}`,
        // `${VARIABLE:-${FOO:-default}}`.
        assert_eq!(one("x: ${UNSET:-${FOO}}", &env), Ok("x: foo".into()));
        assert_eq!(
            one("x: ${UNSET:-${ALSO_UNSET:-default}}", &env),
            Ok("x: default".into())
        );
        assert_eq!(
            one("x: ${UNSET?$FOO}", &env),
            Err("app.yaml:1: required variable `UNSET` is not set: foo".into())
        );
        assert_eq!(
            one("command: echo $$HOME", &env),
            Ok("command: echo $HOME".into())
        );
        assert_eq!(one("x: $FOO-$TAG", &env), Ok("x: foo-v1.5".into()));
    }

    #[test]
    fn required_variables_name_variable_file_and_line() {
        let text = "services:\n  db:\n    image: postgres\n    environment:\n      PASSWORD: ${DB_PASSWORD:?set it in .env}\n";
        assert_eq!(
            one(text, &[]),
            Err("app.yaml:5: required variable `DB_PASSWORD` is not set: set it in .env".into())
        );
        assert_eq!(
            one("x: ${DB_PASSWORD:?}", &[("DB_PASSWORD", "")]),
            Err("app.yaml:1: required variable `DB_PASSWORD` is empty".into())
        );
        assert_eq!(
            one("x: ${DB_PASSWORD?}", &[("DB_PASSWORD", "")]),
            Ok("x: ".into())
        );
        // An unused default is not evaluated: its own requirement does not apply.
        assert_eq!(one("x: ${A:-${B:?no}}", &[("A", "a")]), Ok("x: a".into()));
    }

    #[test]
    fn unset_variables_are_empty_with_one_warning_each() {
        let out =
            interpolate("app.yaml", "a: $NOPE\nb: ${NOPE}\nc: ${NOPE}\n", &vars(&[])).unwrap();
        assert_eq!(out.text, "a: \nb: \nc: \n");
        assert_eq!(
            out.warnings,
            [
                "app.yaml:1: the variable `NOPE` is not set; an empty string is used",
                "app.yaml:2: the variable `NOPE` is not set; an empty string is used",
                "app.yaml:3: the variable `NOPE` is not set; an empty string is used",
            ]
        );
    }

    #[test]
    fn invalid_templates_are_errors_naming_the_line() {
        assert_eq!(
            one("a: 1\nb: ${FOO", &[]),
            Err("app.yaml:2: invalid interpolation `${FOO`: a `${` is not closed by `}`".into())
        );
        assert_eq!(
            one("b: ${1abc}", &[]),
            Err("app.yaml:1: invalid interpolation `${1abc}`: a variable name starts with a letter or `_`".into())
        );
        assert_eq!(
            one("b: ${FOO=bar}", &[]),
            Err("app.yaml:1: invalid interpolation `${FOO=bar}`: expected `}`, `:-`, `-`, `:?`, `?`, `:+` or `+` after `FOO`".into())
        );
        assert_eq!(
            one("b: cost $5", &[]),
            Err("app.yaml:1: invalid interpolation `$5`: write `$$` for a literal `$`, or `${NAME}` for a variable".into())
        );
    }

    #[test]
    fn comments_are_left_alone_but_block_scalars_are_interpolated() {
        let env = [("X", "x")];
        assert_eq!(
            one("a: $X # costs $5 ${", &env),
            Ok("a: x # costs $5 ${".into())
        );
        assert_eq!(
            one("# ${REQUIRED:?}\na: 1\n", &env),
            Ok("# ${REQUIRED:?}\na: 1\n".into())
        );
        // `#` inside quotes is text.
        assert_eq!(one("a: \"#$X\"", &env), Ok("a: \"#x\"".into()));
        assert_eq!(one("a: b#$X", &env), Ok("a: b#x".into()));
        // In a block scalar, `#` is text and is interpolated.
        let text = "command: |\n  echo # $X\n  done\nb: $X # $Y\n";
        assert_eq!(
            one(text, &env),
            Ok("command: |\n  echo # x\n  done\nb: x # $Y\n".into())
        );
        let text = "- >-\n    # $X\n- $X\n";
        assert_eq!(one(text, &env), Ok("- >-\n    # x\n- x\n".into()));
    }

    #[test]
    fn line_endings_and_text_without_dollars_are_kept() {
        let text = "a: 1\r\nb: $X\r\n\nc: 3";
        assert_eq!(
            one(text, &[("X", "2")]),
            Ok("a: 1\r\nb: 2\r\n\nc: 3".into())
        );
        assert_eq!(
            one("ünïcode: ✓ ${X}", &[("X", "é")]),
            Ok("ünïcode: ✓ é".into())
        );
    }
}

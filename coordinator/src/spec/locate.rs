//! Key paths, and the line a key path sits on in the text of a spec file.
//!
//! The parser knows where an error is while it reads, but not where a warning
//! is, nor, for some errors, where the value at fault is; for
//! those this module finds the line by reading the indentation of the text,
//! which covers the block style every Compose file is written in.

use std::fmt;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path as the messages show it: `services.web.ports[0]`.
pub(super) struct PathDisplay<'a>(pub &'a [Seg]);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) if i == 0 => f.write_str(key)?,
                Seg::Key(key) => write!(f, ".{key}")?,
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A line that holds YAML content (not blank, not a comment).
#[derive(Clone, Copy)]
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

/// The 1-based line of the deepest key of `path` found in `content`, or
/// `None` when not even the first key is found.
pub(super) fn line_of(content: &str, path: &[Seg]) -> Option<usize> {
    position_of(content, path).map(|(line, _)| line)
}

/// The 1-based line of the deepest key of `path` found in `content`, and
/// the column where the last key of `path` starts when all of it is found.
pub(super) fn position_of(content: &str, path: &[Seg]) -> Option<(usize, Option<usize>)> {
    let mut block: Vec<Line<'_>> = content
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let text = raw.trim_start_matches(' ');
            let skip = text.is_empty()
                || text.starts_with('#')
                || text.starts_with("---")
                || text.starts_with("...")
                || text.starts_with('%');
            (!skip).then(|| Line {
                number: i + 1,
                indent: raw.len() - text.len(),
                text,
            })
        })
        .collect();
    let mut found = None;
    let mut column = None;
    for (depth, seg) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let Some(indent) = block.first().map(|l| l.indent) else {
            break;
        };
        match seg {
            Seg::Key(key) => {
                let as_key = block
                    .iter()
                    .position(|l| l.indent == indent && key_of(l.text) == Some(key.as_str()));
                // `KEY` or `KEY=VALUE` in a list, as `environment` and `labels` allow.
                let as_item = || {
                    block.iter().position(|l| {
                        l.indent == indent && is_item(l.text) && item_names(&l.text[1..], key)
                    })
                };
                let Some(pos) = as_key.or_else(as_item) else {
                    break;
                };
                found = Some(block[pos].number);
                column = last.then_some(block[pos].indent + 1);
                // A block sequence may sit at its key's own indentation.
                block = block[pos + 1..]
                    .iter()
                    .take_while(|l| l.indent > indent || (l.indent == indent && is_item(l.text)))
                    .copied()
                    .collect();
            }
            Seg::Index(index) => {
                let Some(pos) = block
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.indent == indent && is_item(l.text))
                    .map(|(pos, _)| pos)
                    .nth(*index)
                else {
                    break;
                };
                let item = block[pos];
                found = Some(item.number);
                column = last.then_some(item.indent + 1);
                // The item's own content starts on its line, after the dash.
                let rest = &item.text[1..];
                let text = rest.trim_start_matches(' ');
                let mut inner = Vec::new();
                if !text.is_empty() {
                    inner.push(Line {
                        number: item.number,
                        indent: indent + 1 + (rest.len() - text.len()),
                        text,
                    });
                }
                inner.extend(block[pos + 1..].iter().take_while(|l| l.indent > indent));
                block = inner;
            }
        }
    }
    found.map(|line| (line, column))
}

/// What the text holds at `line`:`column` (1-based), in serde's words:
/// `sequence` for `[` or `- `, `map` otherwise (a flow `{` or a block key).
pub(super) fn collection_at(content: &str, line: usize, column: usize) -> &'static str {
    let rest = content
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|text| text.get(text.char_indices().nth(column - 1)?.0..))
        .unwrap_or_default();
    if rest.starts_with('[') || is_item(rest) {
        "sequence"
    } else {
        "map"
    }
}

/// The column of the value when `line`:`column` is a key with its value
/// on the same line (`ports: 5` → the `5`); `column` otherwise.
pub(super) fn value_column(content: &str, line: usize, column: usize) -> usize {
    let Some(text) = content.lines().nth(line.saturating_sub(1)) else {
        return column;
    };
    let Some((start, _)) = text.char_indices().nth(column.saturating_sub(1)) else {
        return column;
    };
    let rest = &text[start..];
    if key_of(rest).is_none() {
        return column;
    }
    // `key_of` found `KEY:` followed by a space or the end of the line.
    let Some(colon) = rest
        .char_indices()
        .find(|&(i, c)| c == ':' && matches!(rest[i + 1..].chars().next(), None | Some(' ')))
        .map(|(i, _)| i)
    else {
        return column;
    };
    let after = &rest[colon + 1..];
    let value = after.trim_start_matches(' ');
    if value.is_empty() || value.starts_with('#') {
        return column;
    }
    column + rest[..colon + 1].chars().count() + (after.len() - value.len())
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Whether a list item is `KEY` or `KEY=VALUE`, quoted or not.
fn item_names(item: &str, key: &str) -> bool {
    let item = item.trim();
    let item = item
        .strip_prefix(['"', '\''])
        .and_then(|i| i.strip_suffix(['"', '\'']))
        .unwrap_or(item);
    item.strip_prefix(key)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
}

/// The key a `key: value` line starts with, quoted or plain.
fn key_of(text: &str) -> Option<&str> {
    let (key, rest) = match text.chars().next()? {
        quote @ ('"' | '\'') => {
            let end = text[1..].find(quote)? + 1;
            (&text[1..end], &text[end + 1..])
        }
        _ => {
            let colon = text
                .char_indices()
                .find(|&(i, c)| {
                    c == ':' && matches!(text[i + 1..].chars().next(), None | Some(' '))
                })?
                .0;
            (text[..colon].trim_end(), &text[colon..])
        }
    };
    let rest = rest.trim_start_matches(' ');
    (rest == ":" || rest.starts_with(": ")).then_some(key)
}

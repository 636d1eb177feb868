//! How much a spec file may hold, and the checks made on its text before
//! the YAML parser sees it. A spec comes from the network: every limit
//! bounds the parser's time and memory, so that reading a hostile file
//! takes time linear in its size and ends with an error naming the limit.

/// The default largest spec, in bytes: 1 MiB. `convoyd --max-spec-bytes`
/// raises it; the CLI checks the same default before sending.
pub const DEFAULT_MAX_SPEC_BYTES: usize = convoy_api::limits::DEFAULT_MAX_SPEC_BYTES;

/// The limits one spec file is read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest file, in bytes.
    pub max_bytes: usize,
    /// The deepest nesting of mappings and lists (block or flow). The
    /// deepest key a Compose file has (`services.S.deploy.resources.limits.cpus`)
    /// sits at depth 5.
    pub max_depth: usize,
    /// The most nodes (keys, values and list items, counted once each).
    pub max_nodes: usize,
    /// The most alias uses (`*name`) in the file.
    pub max_aliases: usize,
    /// The most nodes that aliases may copy in all (alias bombs: an alias
    /// of a list of aliases of a list ...).
    pub max_alias_expansion: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_SPEC_BYTES,
            max_depth: 32,
            max_nodes: 100_000,
            max_aliases: 1_000,
            max_alias_expansion: 100_000,
        }
    }
}

impl Limits {
    /// The default limits, with `max_bytes` as the largest file.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Limits {
            max_bytes,
            ..Limits::default()
        }
    }

    /// The parser's options: these limits, merge keys (`<<: *base`)
    /// applied, and repeated keys handed to the readers, which refuse them
    /// naming what repeats (`duplicate service `web``).
    pub(super) fn options(&self) -> serde_saphyr::Options {
        let budget = serde_saphyr::budget! {
            max_depth: self.max_depth,
            flow_nesting_limit: self.max_depth,
            max_nodes: self.max_nodes,
            // Every node is at most a start and an end event.
            max_events: self.max_nodes.saturating_mul(2).saturating_add(16),
            max_aliases: self.max_aliases,
            max_anchors: self.max_aliases,
            max_merge_keys: self.max_aliases,
            max_total_scalar_bytes: self.max_bytes,
            max_recorded_anchor_events: self.max_alias_expansion,
            max_recorded_anchor_bytes: self.max_bytes,
            max_documents: 1,
        };
        let alias_limits = serde_saphyr::alias_limits! {
            max_total_replayed_events: self.max_alias_expansion,
            max_replay_stack_depth: self.max_depth,
        };
        serde_saphyr::options! {
            budget: budget,
            alias_limits: alias_limits,
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
            merge_keys: serde_saphyr::MergeKeyPolicy::Merge,
            with_snippet: false,
        }
    }
}

/// What is wrong with a file's text before it is parsed, and where.
pub(super) struct TextError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Checks the size of `bytes` against `limits` and that it is UTF-8 text
/// without NUL bytes; linear in the size, and the size is checked first.
pub(super) fn check_text<'a>(bytes: &'a [u8], limits: &Limits) -> Result<&'a str, TextError> {
    if bytes.len() > limits.max_bytes {
        return Err(TextError {
            line: None,
            column: None,
            message: too_large(bytes.len(), limits.max_bytes),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let at = err.valid_up_to();
        let (line, column) = position(&bytes[..at]);
        TextError {
            line: Some(line),
            column: Some(column),
            message: format!(
                "the file is not UTF-8 text: byte {at} (0x{:02x}) starts no UTF-8 character; \
                 save the file as UTF-8",
                bytes[at]
            ),
        }
    })?;
    if let Some(at) = memchr_nul(bytes) {
        let (line, column) = position(&bytes[..at]);
        return Err(TextError {
            line: Some(line),
            column: Some(column),
            message: "the file holds a NUL byte, which YAML does not allow".to_owned(),
        });
    }
    Ok(text)
}

/// "the spec is 5 MiB (5242880 bytes); the limit is 1 MiB ..."
pub fn too_large(size: usize, limit: usize) -> String {
    convoy_api::limits::spec_too_large(size, limit, "the coordinator's `--max-spec-bytes`")
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// The 1-based line and column (in characters) just after `before`.
fn position(before: &[u8]) -> (usize, usize) {
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

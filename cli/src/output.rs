//! What the commands print: kubectl-style tables for people and the JSON
//! documents of INTERFACES.md for scripts, both built from the proto answers.
//! One module per answer: `apply` (changes), `status` (services, checks,
//! events), `nodes`; `cells` holds the column layout and cell formats they
//! share. The JSON shapes live in `convoy_api::views`.

use serde::Serialize;

mod apply;
mod cells;
mod logs;
mod nodes;
mod status;

pub use apply::{apply_table, apply_warnings, delete_line};
pub use cells::format_age;
pub(crate) use cells::table;
pub use convoy_api::clock::rfc3339_ms;
pub use convoy_api::env::DEFAULT_ENV;
pub use convoy_api::views::*;
pub use logs::{use_colour, LogPrinter};
pub use nodes::{node_removed_line, nodes_table, NodeRemovedJson};
pub use status::{event_line, status_table, verify_table};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// One JSON document and a newline.
pub fn json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers: serialising cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_read_as_unspecified() {
        assert_eq!(change_action_word(99), "unspecified");
        assert_eq!(workload_state_word(-1), "unspecified");
        assert_eq!(node_state_word(7), "unspecified");
    }
}

//! Placement constraints, Swarm's syntax (`node.labels.zone == eu`): how
//! they are parsed, shown, stored, and matched against a node.

use std::fmt;
use std::str::FromStr;

use convoy_proto::NodeFacts;
use serde::{Deserialize, Serialize};

/// A placement constraint, Swarm's syntax: `node.labels.zone == eu`.
/// Compared case-insensitively, as Swarm does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Constraint {
    pub attribute: NodeAttribute,
    pub op: ConstraintOp,
    pub value: String,
}

/// What a constraint looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAttribute {
    /// `node.name`: the Convoy node name (its certificate's CN).
    Name,
    /// `node.hostname`.
    Hostname,
    /// `node.labels.KEY`: the agent's `--label`s.
    Label(String),
    /// `node.platform.os`, e.g. `linux`.
    Os,
    /// `node.platform.arch`, e.g. `x86_64` (`amd64` too).
    Arch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintOp {
    Eq,
    Ne,
}

impl Constraint {
    /// Whether the node `node_name` with `facts` satisfies the constraint. A
    /// label the node lacks compares as empty, as in Swarm.
    pub fn matches(&self, node_name: &str, facts: &NodeFacts) -> bool {
        let equal = match &self.attribute {
            NodeAttribute::Name => node_name.eq_ignore_ascii_case(&self.value),
            NodeAttribute::Hostname => facts.hostname.eq_ignore_ascii_case(&self.value),
            NodeAttribute::Label(key) => facts
                .labels
                .get(key)
                .map_or("", String::as_str)
                .eq_ignore_ascii_case(&self.value),
            NodeAttribute::Os => facts.platform_os.eq_ignore_ascii_case(&self.value),
            NodeAttribute::Arch => canonical_arch(&facts.arch) == canonical_arch(&self.value),
        };
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::Ne => !equal,
        }
    }
}

/// Docker says `x86_64` and `aarch64`, Go and image platforms `amd64` and
/// `arm64`; both mean the same machines.
fn canonical_arch(arch: &str) -> String {
    let arch = arch.to_ascii_lowercase();
    match arch.as_str() {
        "amd64" | "x86-64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        _ => arch,
    }
}

impl FromStr for Constraint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid constraint `{s}`: {why}");
        let operator = [("==", ConstraintOp::Eq), ("!=", ConstraintOp::Ne)]
            .into_iter()
            .filter_map(|(token, op)| s.find(token).map(|at| (at, token, op)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, token, op)) = operator else {
            return Err(invalid(
                "expected `ATTRIBUTE == VALUE` or `ATTRIBUTE != VALUE`",
            ));
        };
        let attribute = s[..at].trim();
        let value = s[at + token.len()..].trim();
        if value.is_empty() {
            return Err(invalid("the value is empty"));
        }
        if value.contains("==") || value.contains("!=") {
            return Err(invalid("more than one operator"));
        }
        let attribute = match attribute {
            "node.name" => NodeAttribute::Name,
            "node.hostname" => NodeAttribute::Hostname,
            "node.platform.os" => NodeAttribute::Os,
            "node.platform.arch" => NodeAttribute::Arch,
            other => match other.strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() => NodeAttribute::Label(key.to_owned()),
                _ if other == "node.id"
                    || other == "node.role"
                    || other.starts_with("engine.labels.") =>
                {
                    return Err(invalid(&format!(
                        "`{other}` is not supported by Convoy yet"
                    )));
                }
                _ => {
                    return Err(invalid(&format!(
                        "unknown attribute `{other}`, expected one of `node.name`, `node.hostname`, \
                         `node.labels.KEY`, `node.platform.os`, `node.platform.arch`"
                    )));
                }
            },
        };
        Ok(Constraint {
            attribute,
            op,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            NodeAttribute::Name => f.write_str("node.name")?,
            NodeAttribute::Hostname => f.write_str("node.hostname")?,
            NodeAttribute::Label(key) => write!(f, "node.labels.{key}")?,
            NodeAttribute::Os => f.write_str("node.platform.os")?,
            NodeAttribute::Arch => f.write_str("node.platform.arch")?,
        }
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, " {op} {}", self.value)
    }
}

impl TryFrom<String> for Constraint {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Constraint> for String {
    fn from(c: Constraint) -> Self {
        c.to_string()
    }
}

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
pub(crate) fn canonical_arch(arch: &str) -> String {
    let arch = arch.to_ascii_lowercase();
    match arch.as_str() {
        "amd64" | "x86-64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        _ => arch,
    }
}

/// What the operator position may hold; `==` and `!=` are the operators.
const OPERATOR_CHARS: [char; 5] = ['=', '!', '<', '>', '~'];

impl FromStr for Constraint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid constraint `{s}`: {why}");
        let unknown = |op: &str| {
            invalid(&format!(
                "unknown operator `{op}`, the operators are `==` and `!=`"
            ))
        };
        let expected = "expected `ATTRIBUTE == VALUE` or `ATTRIBUTE != VALUE`";
        let Some(at) = s.find(OPERATOR_CHARS) else {
            return Err(invalid(expected));
        };
        let attribute = s[..at].trim();
        let rest = &s[at..];
        let token_len = rest
            .find(|c: char| !OPERATOR_CHARS.contains(&c))
            .unwrap_or(rest.len());
        let op = match &rest[..token_len] {
            "==" => ConstraintOp::Eq,
            "!=" => ConstraintOp::Ne,
            // A lone `=` keeps the message that names the whole form, which
            // the spec's tests assert on.
            "=" => return Err(invalid(expected)),
            other => return Err(unknown(other)),
        };
        let value = rest[token_len..].trim();
        if value.starts_with(OPERATOR_CHARS) {
            // `== =gpu`: an operator broken by a space, not a value.
            let op_len = rest
                .find(|c: char| !(OPERATOR_CHARS.contains(&c) || c.is_whitespace()))
                .unwrap_or(rest.len());
            return Err(unknown(rest[..op_len].trim_end()));
        }
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

#[cfg(test)]
mod tests {
    use super::{Constraint, ConstraintOp, NodeAttribute};

    fn error(text: &str) -> String {
        match text.parse::<Constraint>() {
            Ok(constraint) => panic!("`{text}` was read as `{constraint}`"),
            Err(error) => error,
        }
    }

    /// Issue 14: `node.labels.role === gpu` was read as `role == "= gpu"`.
    #[test]
    fn operators_other_than_eq_and_ne_are_refused_naming_the_operator() {
        for (text, op) in [
            ("node.labels.role === gpu", "==="),
            ("node.labels.role !== gpu", "!=="),
            ("node.labels.role <= 2", "<="),
            ("node.labels.role >= 2", ">="),
            ("node.labels.role < 2", "<"),
            ("node.labels.role > 2", ">"),
            ("node.labels.role <> gpu", "<>"),
            ("node.labels.role =~ gp.", "=~"),
            ("node.labels.role ~= gpu", "~="),
            ("node.labels.role ! gpu", "!"),
            ("node.labels.role==!gpu", "==!"),
            ("node.labels.role == =gpu", "== ="),
            ("node.labels.role != = gpu", "!= ="),
            ("node.labels.role == <gpu>", "== <"),
        ] {
            let expected = format!(
                "invalid constraint `{text}`: unknown operator `{op}`, the operators are \
                 `==` and `!=`"
            );
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn a_spec_with_an_unknown_operator_is_refused_naming_key_and_operator() {
        let spec = "services:\n  web:\n    image: nginx\n    deploy:\n      placement:\n        \
                    constraints: [\"node.labels.role === gpu\"]\n";
        let error = crate::spec::parse("app.yaml", spec)
            .expect_err("`===` was accepted")
            .to_string();
        assert!(
            error.starts_with("app.yaml:6:")
                && error.ends_with(
                    "services.web.deploy.placement.constraints[0]: invalid constraint \
                     `node.labels.role === gpu`: unknown operator `===`, the operators are `==` \
                     and `!=`"
                ),
            "{error}"
        );
    }

    #[test]
    fn a_lone_equals_sign_is_refused_with_the_form_to_write() {
        assert_eq!(
            error("node.labels.role = gpu"),
            "invalid constraint `node.labels.role = gpu`: expected `ATTRIBUTE == VALUE` or \
             `ATTRIBUTE != VALUE`"
        );
        assert_eq!(
            error("node.labels.role gpu"),
            "invalid constraint `node.labels.role gpu`: expected `ATTRIBUTE == VALUE` or \
             `ATTRIBUTE != VALUE`"
        );
    }

    #[test]
    fn eq_and_ne_are_read_with_or_without_spaces() {
        for (text, op, value) in [
            ("node.labels.role == gpu", ConstraintOp::Eq, "gpu"),
            ("node.labels.role==gpu", ConstraintOp::Eq, "gpu"),
            ("  node.labels.role  !=  gpu ", ConstraintOp::Ne, "gpu"),
            ("node.labels.role!=gpu", ConstraintOp::Ne, "gpu"),
            // Operator characters inside a value are the value's.
            ("node.labels.role == a<b", ConstraintOp::Eq, "a<b"),
        ] {
            assert_eq!(
                text.parse::<Constraint>(),
                Ok(Constraint {
                    attribute: NodeAttribute::Label("role".to_owned()),
                    op,
                    value: value.to_owned(),
                }),
                "{text}"
            );
        }
    }
}

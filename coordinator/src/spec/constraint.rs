//! Placement constraints, Swarm's syntax (`node.labels.zone == eu`): how
//! they are parsed, shown, stored, and matched against a node.

use std::fmt;
use std::str::FromStr;

use crate::facts::Facts;
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
    /// `node.gpu.count`: how many GPUs the node has (0 without any).
    GpuCount,
    /// `node.gpu.model`: the model every GPU of the node is (a node
    /// without GPUs, or with two models, is no model).
    GpuModel,
    /// `node.gpu.memory`: the memory of the node's smallest GPU (0
    /// without any), so every GPU it assigns has at least that.
    GpuMemory,
}

impl NodeAttribute {
    /// Whether the attribute is a number, compared with `<`, `<=`, `>`, `>=` too.
    fn is_numeric(&self) -> bool {
        matches!(self, NodeAttribute::GpuCount | NodeAttribute::GpuMemory)
    }

    /// A numeric attribute's value as written: a count, or a size (`40g`).
    fn number(&self, text: &str) -> Result<u64, String> {
        match self {
            NodeAttribute::GpuMemory => crate::spec::resources::parse_bytes(text),
            _ => text
                .parse::<u64>()
                .map_err(|_| format!("`{text}` is not a number")),
        }
    }

    /// A numeric attribute of a node.
    fn of(&self, facts: &Facts) -> u64 {
        match self {
            NodeAttribute::GpuCount => facts.gpus.len() as u64,
            NodeAttribute::GpuMemory => facts
                .gpus
                .iter()
                .map(|g| g.memory_total_bytes)
                .min()
                .unwrap_or(0),
            _ => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintOp {
    Eq,
    Ne,
    /// `<`, `<=`, `>`, `>=`: numeric attributes only (`node.gpu.count`,
    /// `node.gpu.memory`).
    Lt,
    Le,
    Gt,
    Ge,
}

impl Constraint {
    /// Whether the node `node_name` with `facts` satisfies the constraint. A
    /// label the node lacks compares as empty, as in Swarm.
    pub fn matches(&self, node_name: &str, facts: &Facts) -> bool {
        if self.attribute.is_numeric() {
            // Checked when parsed; a stored value that no longer reads matches nothing.
            let Ok(want) = self.attribute.number(&self.value) else {
                return false;
            };
            let have = self.attribute.of(facts);
            return match self.op {
                ConstraintOp::Eq => have == want,
                ConstraintOp::Ne => have != want,
                ConstraintOp::Lt => have < want,
                ConstraintOp::Le => have <= want,
                ConstraintOp::Gt => have > want,
                ConstraintOp::Ge => have >= want,
            };
        }
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
            NodeAttribute::GpuModel => {
                !facts.gpus.is_empty()
                    && facts
                        .gpus
                        .iter()
                        .all(|g| g.name.eq_ignore_ascii_case(&self.value))
            }
            NodeAttribute::GpuCount | NodeAttribute::GpuMemory => false,
        };
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::Ne => !equal,
            // Refused when parsed for attributes that are not numbers.
            _ => false,
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
        let numeric = matches!(attribute, "node.gpu.count" | "node.gpu.memory");
        let op = match &rest[..token_len] {
            "==" => ConstraintOp::Eq,
            "!=" => ConstraintOp::Ne,
            "<" if numeric => ConstraintOp::Lt,
            "<=" if numeric => ConstraintOp::Le,
            ">" if numeric => ConstraintOp::Gt,
            ">=" if numeric => ConstraintOp::Ge,
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
            "node.gpu.count" => NodeAttribute::GpuCount,
            "node.gpu.model" => NodeAttribute::GpuModel,
            "node.gpu.memory" => NodeAttribute::GpuMemory,
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
                         `node.labels.KEY`, `node.platform.os`, `node.platform.arch`, \
                         `node.gpu.count`, `node.gpu.model`, `node.gpu.memory`"
                    )));
                }
            },
        };
        let value = match attribute {
            // A model has spaces: `node.gpu.model == "NVIDIA H100 80GB HBM3"`.
            NodeAttribute::GpuModel => unquote(value),
            _ => value,
        };
        if value.is_empty() {
            return Err(invalid("the value is empty"));
        }
        if attribute.is_numeric() {
            attribute.number(value).map_err(|why| invalid(&why))?;
        }
        Ok(Constraint {
            attribute,
            op,
            value: value.to_owned(),
        })
    }
}

/// `"text"` or `'text'` without its quotes; anything else as it is.
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.trim();
        }
    }
    value
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            NodeAttribute::Name => f.write_str("node.name")?,
            NodeAttribute::Hostname => f.write_str("node.hostname")?,
            NodeAttribute::Label(key) => write!(f, "node.labels.{key}")?,
            NodeAttribute::Os => f.write_str("node.platform.os")?,
            NodeAttribute::Arch => f.write_str("node.platform.arch")?,
            NodeAttribute::GpuCount => f.write_str("node.gpu.count")?,
            NodeAttribute::GpuModel => f.write_str("node.gpu.model")?,
            NodeAttribute::GpuMemory => f.write_str("node.gpu.memory")?,
        }
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
            ConstraintOp::Lt => "<",
            ConstraintOp::Le => "<=",
            ConstraintOp::Gt => ">",
            ConstraintOp::Ge => ">=",
        };
        if self.attribute == NodeAttribute::GpuModel {
            return write!(f, " {op} \"{}\"", self.value);
        }
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
    use super::{Constraint, ConstraintOp, Facts, NodeAttribute};

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

    fn gpus(models: &[(&str, u64)]) -> Facts {
        Facts::from(convoy_proto::NodeFacts {
            gpus: models
                .iter()
                .enumerate()
                .map(|(i, (name, gib))| convoy_proto::GpuDevice {
                    index: i as u32,
                    uuid: format!("GPU-{i}"),
                    name: name.to_string(),
                    memory_total_bytes: gib << 30,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// Issue 16: constraints on a node's GPUs: count and memory compare as
    /// numbers, the model names every GPU of the node.
    #[test]
    fn gpu_constraints_compare_count_memory_and_model() {
        let h100 = "NVIDIA H100 80GB HBM3";
        let two = gpus(&[(h100, 80), (h100, 80)]);
        let mixed = gpus(&[("Tesla T4", 16), (h100, 80)]);
        let none = gpus(&[]);
        let holds = |text: &str, facts: &Facts| {
            text.parse::<Constraint>()
                .unwrap_or_else(|e| panic!("{e}"))
                .matches("n", facts)
        };
        assert!(holds("node.gpu.count >= 2", &two));
        assert!(!holds("node.gpu.count >= 2", &none));
        assert!(holds("node.gpu.count == 0", &none));
        assert!(holds("node.gpu.count<3", &two));
        assert!(!holds("node.gpu.count > 2", &two));
        assert!(holds("node.gpu.memory >= 40g", &two));
        // The smallest GPU counts.
        assert!(!holds("node.gpu.memory >= 40g", &mixed));
        assert!(!holds("node.gpu.memory >= 1g", &none));
        assert!(holds(&format!("node.gpu.model == \"{h100}\""), &two));
        assert!(holds("node.gpu.model == 'nvidia h100 80gb hbm3'", &two));
        assert!(!holds(&format!("node.gpu.model == \"{h100}\""), &mixed));
        assert!(!holds(&format!("node.gpu.model == \"{h100}\""), &none));
        assert!(holds(&format!("node.gpu.model != \"{h100}\""), &none));
        // Shown (and stored) so that they read back the same.
        for text in [
            "node.gpu.count >= 2",
            "node.gpu.memory < 40g",
            "node.gpu.model == \"A B\"",
        ] {
            let c: Constraint = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
            assert_eq!(c.to_string().parse::<Constraint>().unwrap(), c);
        }
        assert_eq!(
            error("node.gpu.count >= two"),
            "invalid constraint `node.gpu.count >= two`: `two` is not a number"
        );
        assert!(error("node.gpu.memory > lots").contains("invalid size `lots`"));
        // Other attributes keep `==` and `!=` only.
        assert!(error("node.gpu.model >= x").contains("unknown operator `>=`"));
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

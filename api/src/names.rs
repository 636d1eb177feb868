//! Names that must be usable as DNS labels and in Docker object names.

/// Node names: 1 to 63 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit (what DNS labels and Docker names both accept).
pub fn is_valid_node_name(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 63
        && node
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_dns_and_docker_rules() {
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(!is_valid_node_name(bad), "{bad:?}");
        }
        for good in ["a", "node-1", "gpu_3.rack2", &"a".repeat(63)] {
            assert!(is_valid_node_name(good), "{good:?}");
        }
    }
}

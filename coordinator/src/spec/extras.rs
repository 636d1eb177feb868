//! The container settings Compose has beside the main ones, each handed to
//! Docker as written: `read_only`, `tmpfs`, `init`, `cap_drop`, `tty`,
//! `stdin_open`, `sysctls` (the namespaced ones) and `logging`. None of them
//! gives a container more of the host than it has (host access is
//! `host_access.rs`'s).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerExtras {
    /// The root filesystem is mounted read-only.
    pub read_only: bool,
    /// `tmpfs` mounts: target path → options (`size=64m`, may be empty).
    pub tmpfs: BTreeMap<String, String>,
    /// Run an init process (tini) as PID 1.
    pub init: bool,
    /// Capabilities dropped (`ALL`, `NET_RAW`, ...).
    pub cap_drop: Vec<String>,
    pub tty: bool,
    pub stdin_open: bool,
    /// Namespaced kernel parameters (`net.*`, `kernel.shm*`, ...).
    pub sysctls: BTreeMap<String, String>,
    /// `logging.driver` (empty: Docker's default).
    pub log_driver: String,
    pub log_options: BTreeMap<String, String>,
    /// `pull_policy`: `always`, `never`, or (empty) pull when missing.
    pub pull_policy: String,
    /// `platform` (`linux/arm64`): the service runs only on nodes of that
    /// OS and architecture, and Docker checks the image against it. Left
    /// out of the stored spec and the hash when empty (it came later).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub platform: String,
}

impl ContainerExtras {
    pub fn is_empty(&self) -> bool {
        *self == ContainerExtras::default()
    }
}

/// Whether `name` is a kernel parameter Docker lets a container set in its
/// own namespaces; others would change the host, and are refused.
pub(crate) fn check_sysctl(name: &str) -> Result<(), String> {
    const PREFIXES: &[&str] = &["net.", "kernel.shm", "kernel.msg", "fs.mqueue."];
    const NAMES: &[&str] = &["kernel.sem", "kernel.domainname", "kernel.hostname"];
    if NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p)) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a namespaced kernel parameter: a container may set `net.*`, \
             `kernel.shm*`, `kernel.msg*`, `kernel.sem` and `fs.mqueue.*` only"
        ))
    }
}

/// `platform`: `OS[/ARCH[/VARIANT]]` as image platforms are written
/// (`linux/amd64`, `linux/arm64/v8`), lowercase.
pub(crate) fn platform(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let word = |p: &&str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if parts.len() > 3 || !parts.iter().all(word) {
        return Err(format!(
            "`{text}` is not a platform: write `OS/ARCH` or `OS/ARCH/VARIANT` in lowercase, \
             e.g. `linux/amd64` or `linux/arm64/v8`"
        ));
    }
    Ok(text.to_owned())
}

/// Whether a node with `facts` runs `platform` (empty: any). A node that
/// does not report its OS or architecture is taken at its word.
pub fn platform_matches(platform: &str, facts: &crate::facts::Facts) -> bool {
    if platform.is_empty() {
        return true;
    }
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or("");
    let arch = parts.next().unwrap_or("");
    let os_ok = facts.platform_os.is_empty() || facts.platform_os.eq_ignore_ascii_case(os);
    let arch_ok = arch.is_empty()
        || facts.arch.is_empty()
        || super::constraint::canonical_arch(&facts.arch)
            == super::constraint::canonical_arch(arch);
    os_ok && arch_ok
}

/// `pull_policy`: `always`, `never`, `missing`/`if_not_present` (the
/// default, stored empty); `build` is refused: Convoy deploys images built
/// elsewhere.
pub(crate) fn pull_policy(text: &str) -> Result<String, String> {
    match text {
        "always" | "never" => Ok(text.to_owned()),
        "missing" | "if_not_present" => Ok(String::new()),
        "build" => Err(
            "Convoy deploys images built elsewhere: build and push the image, \
                        then use `always`, `missing` or `never`"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown pull policy `{other}`, expected one of `always`, `missing`, \
             `if_not_present`, `never`"
        )),
    }
}

/// A capability name as Docker takes it: `NET_RAW` or `CAP_NET_RAW`, `ALL`.
pub(crate) fn check_capability(name: &str) -> Result<String, String> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        Ok(bare.to_owned())
    } else {
        Err(format!(
            "invalid capability `{name}`: write it as Docker does, e.g. `NET_RAW` or `ALL`"
        ))
    }
}

/// One `tmpfs` entry: `/run` or `/run:size=64m,mode=1777`.
pub(crate) fn tmpfs_entry(text: &str) -> Result<(String, String), String> {
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    if !target.starts_with('/') {
        return Err(format!(
            "invalid tmpfs `{text}`: the target must be an absolute path"
        ));
    }
    Ok((target.to_owned(), options.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls() {
        assert!(check_sysctl("net.core.somaxconn").is_ok());
        assert!(check_sysctl("kernel.shmmax").is_ok());
        assert!(check_sysctl("vm.swappiness")
            .unwrap_err()
            .contains("not a namespaced kernel parameter"));
        assert!(check_sysctl("kernel.panic").is_err());
    }

    #[test]
    fn capabilities_and_tmpfs() {
        assert_eq!(check_capability("CAP_NET_RAW"), Ok("NET_RAW".into()));
        assert_eq!(check_capability("ALL"), Ok("ALL".into()));
        assert!(check_capability("net_raw").is_err());
        assert_eq!(
            tmpfs_entry("/run:size=64m"),
            Ok(("/run".into(), "size=64m".into()))
        );
        assert_eq!(tmpfs_entry("/tmp"), Ok(("/tmp".into(), String::new())));
        assert!(tmpfs_entry("tmp").is_err());
    }

    fn extras(extra: &str) -> Result<ContainerExtras, String> {
        let mut yaml = String::from("services:\n  web:\n    image: nginx\n");
        for line in extra.lines() {
            yaml += &format!("    {line}\n");
        }
        crate::spec::parse("app.yaml", &yaml)
            .map(|f| f.services["web"].extras.clone())
            .map_err(|e| e.to_string())
    }

    /// Issue 14: `platform` is checked, matched against a node's OS and
    /// architecture (either spelling), and kept out of older hashes.
    #[test]
    fn platform_is_read_checked_and_matched() {
        assert_eq!(
            extras("platform: linux/arm64").unwrap().platform,
            "linux/arm64"
        );
        let err = extras("platform: Linux/AMD64").unwrap_err();
        assert!(
            err.starts_with(
                "app.yaml:4:15: services.web.platform: `Linux/AMD64` is not a platform"
            ),
            "{err}"
        );
        assert!(extras("platform: linux/arm64/v8/x").is_err());
        let node = |os: &str, arch: &str| {
            crate::facts::Facts::from(convoy_proto::NodeFacts {
                platform_os: os.into(),
                arch: arch.into(),
                ..Default::default()
            })
        };
        assert!(platform_matches("linux/amd64", &node("linux", "x86_64")));
        assert!(platform_matches(
            "linux/arm64/v8",
            &node("linux", "aarch64")
        ));
        assert!(platform_matches("linux", &node("linux", "aarch64")));
        assert!(!platform_matches("linux/arm64", &node("linux", "x86_64")));
        assert!(!platform_matches("windows/amd64", &node("linux", "x86_64")));
        assert!(platform_matches("", &node("linux", "x86_64")));
        // Hashes of specs without it stay as they were, with other settings.
        let hash = |extra: &str| {
            let yaml = format!("services:\n  web:\n    image: nginx\n    init: true\n{extra}");
            crate::spec::parse("app.yaml", &yaml).unwrap().services["web"].spec_hash()
        };
        let json = serde_json::to_string(&extras("init: true").unwrap()).unwrap();
        assert!(!json.contains("platform"), "{json}");
        assert_ne!(hash("    platform: linux/amd64\n"), hash(""));
    }

    #[test]
    fn settings_are_read_from_a_spec() {
        let e = extras(
            "read_only: true\ntmpfs: [/run, \"/tmp:size=64m\"]\ninit: true\ncap_drop: [ALL]\ntty: true\nstdin_open: true\nsysctls: {net.core.somaxconn: 1024}\nlogging:\n  driver: json-file\n  options: {max-size: 10m}",
        )
        .unwrap();
        assert!(e.read_only && e.init && e.tty && e.stdin_open);
        assert_eq!(e.tmpfs["/tmp"], "size=64m");
        assert_eq!(e.tmpfs["/run"], "");
        assert_eq!(e.cap_drop, ["ALL"]);
        assert_eq!(e.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(e.log_driver, "json-file");
        assert_eq!(e.log_options["max-size"], "10m");
        assert_eq!(extras("tmpfs: /run").unwrap().tmpfs.len(), 1);
        assert_eq!(
            extras("sysctls: [net.ipv4.ip_forward=1]").unwrap().sysctls["net.ipv4.ip_forward"],
            "1"
        );
    }

    #[test]
    fn pull_policies() {
        assert_eq!(extras("pull_policy: always").unwrap().pull_policy, "always");
        assert_eq!(extras("pull_policy: never").unwrap().pull_policy, "never");
        assert_eq!(extras("pull_policy: missing").unwrap().pull_policy, "");
        assert_eq!(
            extras("pull_policy: if_not_present").unwrap().pull_policy,
            ""
        );
        let err = extras("pull_policy: build").unwrap_err();
        assert!(
            err.starts_with(
                "app.yaml:4:18: services.web.pull_policy: Convoy deploys images built elsewhere"
            ),
            "{err}"
        );
        assert!(extras("pull_policy: sometimes")
            .unwrap_err()
            .contains("unknown pull policy `sometimes`, expected one of `always`, `missing`"));
    }

    #[test]
    fn bad_settings_are_errors_naming_the_key() {
        let err = extras("sysctls: {vm.swappiness: 10}").unwrap_err();
        assert!(
            err.starts_with("app.yaml:4:") && err.contains("services.web.sysctls"),
            "{err}"
        );
        assert!(err.contains("not a namespaced kernel parameter"), "{err}");
        assert!(extras("cap_drop: [net_raw]")
            .unwrap_err()
            .contains("invalid capability"));
        assert!(extras("tmpfs: [run]")
            .unwrap_err()
            .contains("absolute path"));
        assert!(extras("logging: {driver: local, level: x}")
            .unwrap_err()
            .contains("unknown field `level`"));
    }
}

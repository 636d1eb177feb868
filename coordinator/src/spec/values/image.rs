//! Docker image references (`registry.example.com:5000/team/app:v1@sha256:…`),
//! checked against Docker's grammar (distribution/reference, as `docker pull`
//! normalises it), so a name Docker would refuse is refused at apply, with the
//! rule it breaks.
//!
//! No crate: `oci-spec`'s `distribution::Reference` pulls in derive_builder,
//! darling, getset, strum, const_format and regex, and answers most faults
//! with "invalid reference format" (an uppercase name included); `oci-client`
//! brings reqwest. The grammar is small enough to check by hand.

/// Docker's `NameTotalLengthMax`: host, port and path together. Docker
/// counts the `docker.io/library/` it puts before a bare name too; this
/// counts the name as written, so it refuses nothing Docker takes.
const NAME_MAX: usize = 255;
/// `[\w][\w.-]{0,127}`.
const TAG_MAX: usize = 128;

/// `reference` if Docker would take it as an image to run.
pub(in crate::spec) fn image(reference: &str) -> Result<String, String> {
    if reference.trim().is_empty() {
        Err("must not be empty: name the image to run, e.g. `nginx:1.27`".to_owned())
    } else if reference.chars().any(char::is_whitespace) {
        Err(format!(
            "invalid image `{reference}`: an image reference has no spaces"
        ))
    } else {
        check(reference)
            .map(|()| reference.to_owned())
            .map_err(|why| format!("invalid image `{reference}`: {why}"))
    }
}

/// Docker Hub's name as image references and `docker login` know it.
pub const DOCKER_HUB: &str = "docker.io";

/// The registry an image reference pulls from, as Docker splits it
/// (`splitDockerDomain`): the first part when it has a `.` or `:`, is
/// `localhost` or has a capital letter; else Docker Hub.
pub fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            }
        }
        _ => DOCKER_HUB,
    }
}

/// A registry as `convoy registry login` takes it: `HOST[:PORT]` as image
/// references name it (no scheme, no path); Docker Hub's aliases become
/// `docker.io`.
pub fn registry_server(server: &str) -> Result<String, String> {
    let server = server.trim();
    let bare = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.is_empty() {
        return Err("name the registry: HOST[:PORT], e.g. `registry.example.com:5000`".to_owned());
    }
    if matches!(
        bare,
        "index.docker.io" | "registry-1.docker.io" | "index.docker.io/v1"
    ) {
        return Ok(DOCKER_HUB.to_owned());
    }
    if bare.contains('/') {
        return Err(format!(
            "`{server}` is not a registry: give HOST[:PORT] only, as image names start with it \
             (e.g. `registry.example.com:5000` for `registry.example.com:5000/team/app`)"
        ));
    }
    check_host(bare).map_err(|why| format!("invalid registry `{server}`: {why}"))?;
    Ok(bare.to_owned())
}

/// `NAME[:TAG][@DIGEST]`: the rule `reference` breaks, if any, reading
/// from the left.
fn check(reference: &str) -> Result<(), String> {
    if reference.len() == 64 && reference.bytes().all(is_lower_hex) {
        return Err(
            "64 hex digits are an image ID, which Docker refuses as a name: name the image \
             and pin it by digest (e.g. `nginx@sha256:` and the 64 digits)"
                .to_owned(),
        );
    }
    // Neither a name nor a tag has an `@`; the digest is all after the first.
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
        None => (reference, None),
    };
    // The tag follows the last `:`, unless a `/` follows it: then that `:`
    // was a registry's port (`localhost:5000/app`).
    let (name, tag) = match name_and_tag.rfind(':') {
        Some(at) if !name_and_tag[at..].contains('/') => {
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        _ => (name_and_tag, None),
    };
    check_name(name)?;
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    Ok(())
}

/// `[HOST[:PORT]/]PATH`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "the repository name before `:` or `@` is empty (e.g. `nginx:1.27`)".to_owned(),
        );
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "the name is {} characters long, over Docker's limit of {NAME_MAX}",
            name.len()
        ));
    }
    let Some((first, rest)) = name.split_once('/') else {
        return check_path(name);
    };
    // Docker's rule (`splitDockerDomain`): the first part names a registry
    // if it has a `.` or `:`, is `localhost`, or has a capital letter.
    let names_host = first.contains(['.', ':']);
    if !(names_host || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase())) {
        return check_path(name);
    }
    match check_host(first) {
        Ok(()) => check_path(rest),
        // Docker then matches its whole grammar, where the host is optional:
        // `my_team.v2/app` is a path.
        Err(host_fault) => match check_path(name) {
            Ok(()) => Ok(()),
            Err(_) if names_host => Err(host_fault),
            Err(path_fault) => Err(path_fault),
        },
    }
}

/// A registry: `HOST[:PORT]`, the host a DNS name, an IPv4 address or
/// `[IPv6]`.
fn check_host(registry: &str) -> Result<(), String> {
    let port = if let Some(bracketed) = registry.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "the registry address `{registry}` lacks its closing `]` (e.g. `[::1]:5000/app`)"
            ));
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!(
                "`[{address}]` is not an IPv6 address (e.g. `[::1]:5000/app`)"
            ));
        }
        match after {
            "" => None,
            after => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(format!(
                        "`{after}` follows the IPv6 address `[{address}]`; only `:PORT` may \
                         (e.g. `[::1]:5000/app`)"
                    ))
                }
            },
        }
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        let label_ok = |label: &str| {
            label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.ends_with(|c: char| c.is_ascii_alphanumeric())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "the registry host `{host}` is not a host name: each part between dots has \
                 letters, digits and `-`, and starts and ends with a letter or digit \
                 (e.g. `registry.example.com:5000/team/app`)"
            ));
        }
        port
    };
    match port {
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "the registry port `{port}` is not a number (e.g. `localhost:5000/app`)"
        )),
        _ => Ok(()),
    }
}

/// The repository path: parts separated by `/`, each lowercase letters and
/// digits joined by `.`, `_`, `__` or dashes.
fn check_path(path: &str) -> Result<(), String> {
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            return Err("a repository name must be lowercase (e.g. `nginx:1.27`)".to_owned());
        }
        if c == ':' {
            return Err(
                "more than one `:` after the name: `:` goes only before the tag and a \
                 registry's port (e.g. `localhost:5000/app:v1`)"
                    .to_owned(),
            );
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')) {
            return Err(format!(
                "`{c}` is not allowed in a repository name: use lowercase letters and digits, \
                 joined by `.`, `_`, `__` or `-` (e.g. `team/my_app-v2`)"
            ));
        }
    }
    for part in path.split('/') {
        if part.is_empty() {
            return Err(
                "a repository name has an empty part: no leading, trailing or doubled `/` \
                 (e.g. `team/app`)"
                    .to_owned(),
            );
        }
        if !(part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "each part of a repository name starts and ends with a letter or digit, \
                 `{part}` does not (e.g. `team/app`)"
            ));
        }
        let separators = part
            .split(|c: char| c.is_ascii_alphanumeric())
            .filter(|run| !run.is_empty());
        for run in separators {
            if !(matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-')) {
                return Err(format!(
                    "`{run}` is not a separator: join letters and digits with one `.`, one or \
                     two `_`, or dashes (e.g. `my_app-v2.web`)"
                ));
            }
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() {
        return Err("the tag after `:` is empty (e.g. `nginx:1.27`)".to_owned());
    }
    if !tag.starts_with(word) {
        return Err(format!(
            "the tag `{tag}` starts with neither a letter, a digit nor `_` (e.g. `nginx:1.27`)"
        ));
    }
    if let Some(c) = tag.chars().find(|&c| !(word(c) || c == '.' || c == '-')) {
        return Err(format!(
            "`{c}` is not allowed in a tag: use letters, digits, `_`, `.` and `-` \
             (e.g. `nginx:1.27-alpine`)"
        ));
    }
    if tag.len() > TAG_MAX {
        return Err(format!(
            "a tag has at most {TAG_MAX} characters, this one has {}",
            tag.len()
        ));
    }
    Ok(())
}

/// `ALGORITHM:HEX` with an algorithm Docker knows and its exact length of
/// lowercase hex.
fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "the digest `{digest}` is not `ALGORITHM:HEX` (e.g. `nginx@sha256:` and 64 hex digits)"
        ));
    };
    let digits = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => {
            return Err(format!(
                "unsupported digest algorithm `{other}`: use `sha256`, `sha384` or `sha512` \
                 (e.g. `nginx@sha256:` and 64 hex digits)"
            ))
        }
    };
    if !hex.bytes().all(is_lower_hex) {
        return Err(format!(
            "a digest has only lowercase hex digits (`0-9`, `a-f`) after `{algorithm}:`"
        ));
    }
    if hex.len() != digits {
        return Err(format!(
            "a {algorithm} digest has {digits} hex digits, this one has {}",
            hex.len()
        ));
    }
    Ok(())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

#[cfg(test)]
mod tests {
    use super::{image, registry_of, registry_server};

    const SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn references_docker_accepts_are_accepted() {
        let long_name = format!("registry.example.com/{}", "b".repeat(234));
        let long_tag = format!("app:{}", "t".repeat(128));
        let sha512 = format!("app@sha512:{}", "0".repeat(128));
        let sha384 = format!("app@sha384:{}", "f".repeat(96));
        let pinned = format!("registry.example.com:443/team/app@{SHA256}");
        let tagged_and_pinned = format!("app:v1@{SHA256}");
        for reference in [
            "nginx",
            "nginx:1.27",
            "library/nginx",
            "localhost/app",
            "localhost:5000/app:v1",
            // Docker reads this as the repository `localhost` with tag `5000`.
            "localhost:5000",
            "192.168.1.10:5000/app",
            "[::1]:5000/app:v1",
            "[fe80::1]/app",
            &pinned,
            &tagged_and_pinned,
            &sha384,
            &sha512,
            "convoy-testapp:latest",
            "a/b/c_d__e-f.g:T_a-g.1",
            "my--app:_underscore",
            "example.com",
            // A capitalised first part names a registry host, as in Docker.
            "MyRegistry/app",
            // Not a host name, so Docker reads it all as the path.
            "my_team.v2/app",
            // The test specs' own images.
            "x",
            "x:1",
            "web:1",
            "postgres:16",
            "httpd",
            &long_name,
            &long_tag,
        ] {
            assert_eq!(image(reference), Ok(reference.to_owned()), "{reference}");
        }
    }

    /// Issue 14: `image: "NGINX:::latest"` was accepted and planned.
    #[test]
    fn references_docker_refuses_are_refused_naming_the_rule() {
        let invalid = |reference: &str, why: &str| (reference.to_owned(), why.to_owned());
        let lowercase = "a repository name must be lowercase (e.g. `nginx:1.27`)";
        let colons = "more than one `:` after the name: `:` goes only before the tag and a \
                      registry's port (e.g. `localhost:5000/app:v1`)";
        let empty_part = "a repository name has an empty part: no leading, trailing or doubled \
                          `/` (e.g. `team/app`)";
        let cases = [
            invalid("NGINX:::latest", lowercase),
            invalid("Nginx", lowercase),
            invalid("team/App:v1", lowercase),
            invalid("nginx:::latest", colons),
            invalid("app:v1:v2", colons),
            invalid("nginx:", "the tag after `:` is empty (e.g. `nginx:1.27`)"),
            invalid(
                "nginx:.x",
                "the tag `.x` starts with neither a letter, a digit nor `_` (e.g. `nginx:1.27`)",
            ),
            invalid(
                "nginx:a+b",
                "`+` is not allowed in a tag: use letters, digits, `_`, `.` and `-` \
                 (e.g. `nginx:1.27-alpine`)",
            ),
            invalid(
                &format!("nginx:{}", "t".repeat(129)),
                "a tag has at most 128 characters, this one has 129",
            ),
            invalid(
                ":latest",
                "the repository name before `:` or `@` is empty (e.g. `nginx:1.27`)",
            ),
            invalid(
                &format!("@{SHA256}"),
                "the repository name before `:` or `@` is empty (e.g. `nginx:1.27`)",
            ),
            invalid(
                &format!("registry.example.com/{}", "b".repeat(235)),
                "the name is 256 characters long, over Docker's limit of 255",
            ),
            invalid("team//app", empty_part),
            invalid("/app", empty_part),
            invalid("app/", empty_part),
            invalid(
                "-app",
                "each part of a repository name starts and ends with a letter or digit, `-app` \
                 does not (e.g. `team/app`)",
            ),
            invalid(
                "team/app_",
                "each part of a repository name starts and ends with a letter or digit, `app_` \
                 does not (e.g. `team/app`)",
            ),
            invalid(
                "a..b",
                "`..` is not a separator: join letters and digits with one `.`, one or two `_`, \
                 or dashes (e.g. `my_app-v2.web`)",
            ),
            invalid(
                "a___b",
                "`___` is not a separator: join letters and digits with one `.`, one or two \
                 `_`, or dashes (e.g. `my_app-v2.web`)",
            ),
            invalid(
                "a.-b",
                "`.-` is not a separator: join letters and digits with one `.`, one or two `_`, \
                 or dashes (e.g. `my_app-v2.web`)",
            ),
            invalid(
                "app$",
                "`$` is not allowed in a repository name: use lowercase letters and digits, \
                 joined by `.`, `_`, `__` or `-` (e.g. `team/my_app-v2`)",
            ),
            invalid(
                "localhost:port/app",
                "the registry port `port` is not a number (e.g. `localhost:5000/app`)",
            ),
            invalid(
                "localhost:/app",
                "the registry port `` is not a number (e.g. `localhost:5000/app`)",
            ),
            invalid(
                "-bad.example.com/app",
                "the registry host `-bad.example.com` is not a host name: each part between \
                 dots has letters, digits and `-`, and starts and ends with a letter or digit \
                 (e.g. `registry.example.com:5000/team/app`)",
            ),
            // Not a host name (`_`), so a path, which must be lowercase.
            invalid("My_Registry/app", lowercase),
            invalid(
                "[::1/app",
                "the registry address `[::1` lacks its closing `]` (e.g. `[::1]:5000/app`)",
            ),
            invalid(
                "[zz]:5000/app",
                "`[zz]` is not an IPv6 address (e.g. `[::1]:5000/app`)",
            ),
            invalid(
                "app@sha256",
                "the digest `sha256` is not `ALGORITHM:HEX` (e.g. `nginx@sha256:` and 64 hex \
                 digits)",
            ),
            invalid(
                "app@md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported digest algorithm `md5`: use `sha256`, `sha384` or `sha512` \
                 (e.g. `nginx@sha256:` and 64 hex digits)",
            ),
            invalid(
                "app@sha256:abc",
                "a sha256 digest has 64 hex digits, this one has 3",
            ),
            invalid(
                &format!("app@{}", SHA256.to_uppercase().replace("SHA", "sha")),
                "a digest has only lowercase hex digits (`0-9`, `a-f`) after `sha256:`",
            ),
            invalid(
                &format!("app@{SHA256}@{SHA256}"),
                "a digest has only lowercase hex digits (`0-9`, `a-f`) after `sha256:`",
            ),
            invalid(
                &SHA256["sha256:".len()..],
                "64 hex digits are an image ID, which Docker refuses as a name: name the image \
                 and pin it by digest (e.g. `nginx@sha256:` and the 64 digits)",
            ),
        ];
        for (reference, why) in cases {
            assert_eq!(
                image(&reference),
                Err(format!("invalid image `{reference}`: {why}")),
                "{reference}"
            );
        }
    }

    #[test]
    fn a_spec_with_an_image_docker_refuses_is_refused_naming_key_and_rule() {
        let spec = |image: &str| format!("services:\n  web:\n    image: \"{image}\"\n");
        let error = crate::spec::parse("app.yaml", &spec("NGINX:::latest"))
            .expect_err("an uppercase image name was accepted")
            .to_string();
        assert!(
            error.starts_with("app.yaml:3:")
                && error.ends_with(
                    "services.web.image: invalid image `NGINX:::latest`: a repository name \
                     must be lowercase (e.g. `nginx:1.27`)"
                ),
            "{error}"
        );
        let pinned = format!("localhost:5000/team/app:v1@{SHA256}");
        let file = crate::spec::parse("app.yaml", &spec(&pinned))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(file.services["web"].image(), pinned);
    }

    #[test]
    fn empty_and_spaced_references_keep_their_messages() {
        assert_eq!(
            image(" "),
            Err("must not be empty: name the image to run, e.g. `nginx:1.27`".to_owned())
        );
        assert_eq!(
            image("nginx :1"),
            Err("invalid image `nginx :1`: an image reference has no spaces".to_owned())
        );
    }

    #[test]
    fn the_registry_of_an_image_is_split_as_docker_splits_it() {
        for (reference, registry) in [
            ("nginx:1.27", "docker.io"),
            ("team/app:1", "docker.io"),
            ("docker.io/library/nginx", "docker.io"),
            ("index.docker.io/team/app", "docker.io"),
            ("localhost/app", "localhost"),
            ("localhost:5000/app:v1", "localhost:5000"),
            ("127.0.0.1:41234/convoy/app:t", "127.0.0.1:41234"),
            (
                "registry.example.com/team/app@sha256:abc",
                "registry.example.com",
            ),
            ("[::1]:5000/app", "[::1]:5000"),
        ] {
            assert_eq!(registry_of(reference), registry, "{reference}");
        }
    }

    #[test]
    fn a_registry_server_is_host_and_port_only() {
        assert_eq!(registry_server("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(registry_server("https://r.example/").unwrap(), "r.example");
        assert_eq!(registry_server("index.docker.io").unwrap(), "docker.io");
        assert_eq!(registry_server("docker.io").unwrap(), "docker.io");
        let err = registry_server("r.example/team").unwrap_err();
        assert!(err.contains("HOST[:PORT]"), "{err}");
        let err = registry_server("r.example:port").unwrap_err();
        assert!(err.contains("port"), "{err}");
        assert!(registry_server("").is_err());
        assert!(registry_server("bad_host").is_err());
    }
}

//! Webhook notifiers (`convoy notify add|ls|rm|test`, docs/NOTIFY.md): where
//! events are delivered. Stored at `notifiers/NAME` through the commit path
//! like any desired state (a snapshot holds them; `convoyd secrets rewrap`
//! re-seals their signing secrets), held open in memory and published on a
//! watch channel for the delivery engine (`crate::notify`).

use super::*;
use crate::secrets::{Sealed, Secret};

/// The most notifiers a coordinator keeps (each has its own queue).
pub const MAX_NOTIFIERS: usize = 64;
/// The longest URL accepted.
const MAX_URL: usize = 2048;
/// The longest signing secret accepted.
const MAX_SIGNING_SECRET: usize = 4096;

/// What a notifier delivers when it names no events: what the issue calls a
/// team's signal (rollout started, step, promoted, succeeded, failed, rolled
/// back; node lost and ready; secret rotated), not every instance's state.
pub const DEFAULT_EVENTS: &[&str] = &["rollout.*", "node.lost", "node.ready", "secret.rotated"];

/// How a delivery's body is shaped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// The event as JSON (docs/NOTIFY.md has its fields).
    #[default]
    Json,
    /// A Slack incoming webhook's `{"text": ...}`.
    Slack,
}

impl NotifyFormat {
    pub fn parse(word: &str) -> Result<Self, StateError> {
        match word {
            "" | "json" => Ok(Self::Json),
            "slack" => Ok(Self::Slack),
            other => Err(StateError::Invalid(format!(
                "unknown notification format `{other}`: use `json` or `slack`"
            ))),
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
        }
    }
}

/// A notifier as stored: the signing secret sealed, bound to its key.
#[derive(Clone, Serialize, Deserialize)]
pub struct NotifierRecord {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub format: NotifyFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Sealed>,
    pub created_by: String,
    pub created_unix_ms: i64,
}

/// A notifier in memory, its signing secret open (`Debug` hides it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierTarget {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub format: NotifyFormat,
    pub secret: Option<Secret<Vec<u8>>>,
    pub created_by: String,
    pub created_unix_ms: i64,
}

impl NotifierTarget {
    /// Whether an event of `kind` goes to this notifier.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|p| pattern_matches(p, kind))
    }
}

/// The notifiers by name, as the delivery engine sees them.
pub type NotifierTargets = Arc<BTreeMap<String, NotifierTarget>>;

pub(super) fn notifier_key(name: &str) -> String {
    format!("notifiers/{name}")
}

/// `*`, `PREFIX.*` or an exact kind.
fn pattern_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Checks a notifier's name: 1 to 63 of `a-z 0-9 - _`, starting with a
/// letter or digit.
pub fn check_notifier_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "invalid notifier name `{name}`: use 1 to 63 lowercase letters, digits, `-` or `_`, \
             starting with a letter or digit"
        )))
    }
}

/// Checks the event patterns a notifier asks for; none: [`DEFAULT_EVENTS`].
/// Every pattern must name a kind Convoy emits (or a prefix of some), so a
/// typo is an error, not a notifier that never fires.
pub fn check_event_patterns(patterns: &[String]) -> Result<Vec<String>, StateError> {
    let mut out: Vec<String> = Vec::new();
    let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    names.push(crate::notify::TEST_KIND);
    for raw in patterns.iter().flat_map(|p| p.split(',')) {
        let p = raw.trim();
        if p.is_empty() {
            continue;
        }
        let known = match p.strip_suffix('*') {
            Some(prefix) => {
                (prefix.is_empty() || prefix.ends_with('.'))
                    && names.iter().any(|n| n.starts_with(prefix))
            }
            None => names.contains(&p),
        };
        if !known {
            return Err(StateError::Invalid(format!(
                "unknown event `{p}` in `--events`: give event kinds or `PREFIX.*` \
                 (kinds: {})",
                names.join(", ")
            )));
        }
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    if out.is_empty() {
        out = DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect();
    }
    Ok(out)
}

/// Checks a webhook URL: `http://` or `https://`, a host, no user info.
pub fn check_notifier_url(url: &str) -> Result<(), StateError> {
    let bad = |why: &str| {
        Err(StateError::Invalid(format!(
            "invalid notifier URL `{url}`: {why}"
        )))
    };
    if url.len() > MAX_URL {
        return bad(&format!("longer than {MAX_URL} bytes"));
    }
    let Ok(uri) = url.parse::<::http::Uri>() else {
        return bad("not a URL");
    };
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return bad("use http:// or https://"),
    }
    let Some(authority) = uri.authority() else {
        return bad("no host");
    };
    if authority.as_str().contains('@') {
        return bad("credentials in the URL would be stored in plain text; use a signing secret");
    }
    if authority.host().is_empty() {
        return bad("no host");
    }
    Ok(())
}

/// What `convoy notify add` asks for.
pub struct NewNotifier {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub format: String,
    pub secret: Option<Secret<Vec<u8>>>,
    pub replace: bool,
}

impl Coordinator {
    /// Opens every stored notifier (on load).
    pub(super) async fn load_notifiers(
        &self,
    ) -> Result<BTreeMap<String, NotifierTarget>, StateError> {
        let mut out = BTreeMap::new();
        for (key, rec) in store::scan_json::<NotifierRecord>(&*self.store, "notifiers/").await? {
            let secret = match &rec.secret {
                Some(sealed) => Some(self.sealer.open(&key, sealed)?),
                None => None,
            };
            out.insert(
                rec.name.clone(),
                NotifierTarget {
                    name: rec.name,
                    url: rec.url,
                    events: rec.events,
                    format: rec.format,
                    secret,
                    created_by: rec.created_by,
                    created_unix_ms: rec.created_unix_ms,
                },
            );
        }
        Ok(out)
    }

    /// Adds (or, with `replace`, replaces) a notifier.
    pub async fn add_notifier(
        &self,
        new: NewNotifier,
        by: &str,
    ) -> Result<NotifierTarget, StateError> {
        check_notifier_name(&new.name)?;
        check_notifier_url(&new.url)?;
        let events = check_event_patterns(&new.events)?;
        let format = NotifyFormat::parse(&new.format)?;
        if let Some(s) = &new.secret {
            if s.expose().len() > MAX_SIGNING_SECRET {
                return Err(StateError::Invalid(format!(
                    "the signing secret is over {MAX_SIGNING_SECRET} bytes"
                )));
            }
        }
        let key = notifier_key(&new.name);
        let target = NotifierTarget {
            name: new.name.clone(),
            url: new.url,
            events,
            format,
            secret: new.secret,
            created_by: by.to_string(),
            created_unix_ms: now_unix_ms(),
        };
        let record = NotifierRecord {
            name: target.name.clone(),
            url: target.url.clone(),
            events: target.events.clone(),
            format,
            secret: target
                .secret
                .as_ref()
                .map(|s| self.sealer.seal(&key, s.expose())),
            created_by: target.created_by.clone(),
            created_unix_ms: target.created_unix_ms,
        };
        let mut txn = self.begin("notifier add").await;
        let existing = txn.desired().notifiers.contains_key(&new.name);
        if existing && !new.replace {
            return Err(StateError::SecretConflict(format!(
                "notifier `{}` exists already: remove it first, or add it with `--replace`",
                new.name
            )));
        }
        if !existing && txn.desired().notifiers.len() >= MAX_NOTIFIERS {
            return Err(StateError::Invalid(format!(
                "a coordinator keeps at most {MAX_NOTIFIERS} notifiers"
            )));
        }
        Arc::make_mut(&mut txn.stage().notifiers).insert(new.name, target.clone());
        txn.put(Op::put_json(key, &record));
        txn.commit().await?;
        self.publish_notifiers().await;
        Ok(target)
    }

    /// Removes a notifier; what it had queued is dropped with it.
    pub async fn remove_notifier(&self, name: &str) -> Result<NotifierTarget, StateError> {
        let mut txn = self.begin("notifier remove").await;
        let Some(gone) = Arc::make_mut(&mut txn.stage().notifiers).remove(name) else {
            return Err(StateError::NotifierNotFound(name.to_string()));
        };
        txn.put(Op::Delete(notifier_key(name)));
        txn.commit().await?;
        self.publish_notifiers().await;
        Ok(gone)
    }

    /// The notifiers, signing secrets open (for the delivery engine only).
    pub fn notifier_targets(&self) -> watch::Receiver<NotifierTargets> {
        self.notifiers.subscribe()
    }

    pub(super) async fn publish_notifiers(&self) {
        let now = self.desired.lock().await.notifiers.clone();
        self.notifiers.send_replace(now);
    }

    /// The record of `target` sealed under `to` (`convoyd secrets rewrap`).
    pub(super) fn resealed_notifier(target: &NotifierTarget, to: &Sealer) -> NotifierRecord {
        let key = notifier_key(&target.name);
        NotifierRecord {
            name: target.name.clone(),
            url: target.url.clone(),
            events: target.events.clone(),
            format: target.format,
            secret: target.secret.as_ref().map(|s| to.seal(&key, s.expose())),
            created_by: target.created_by.clone(),
            created_unix_ms: target.created_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_kinds_and_prefixes() {
        let t = NotifierTarget {
            name: "n".into(),
            url: "http://x".into(),
            events: check_event_patterns(&["rollout.*,node.lost".into()]).unwrap(),
            format: NotifyFormat::Json,
            secret: None,
            created_by: "t".into(),
            created_unix_ms: 0,
        };
        assert!(t.wants("rollout.rolled_back"));
        assert!(t.wants("node.lost"));
        assert!(!t.wants("node.ready"));
        assert!(!t.wants("instance.state"));
    }

    #[test]
    fn unknown_events_are_refused_by_name() {
        let e = check_event_patterns(&["rollout.*".into(), "node.lots".into()]).unwrap_err();
        assert!(e.to_string().contains("`node.lots`"), "{e}");
        let e = check_event_patterns(&["nope.*".into()]).unwrap_err();
        assert!(e.to_string().contains("`nope.*`"), "{e}");
        // A prefix must end at a dot: `rollout*` would be a typo for `rollout.*`.
        assert!(check_event_patterns(&["roll*".into()]).is_err());
        assert_eq!(check_event_patterns(&[]).unwrap(), DEFAULT_EVENTS);
        assert_eq!(check_event_patterns(&["*".into()]).unwrap(), vec!["*"]);
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(check_notifier_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_notifier_url("https://hooks.example.test/T/B").is_ok());
        for bad in [
            "ftp://x/y",
            "127.0.0.1:9000",
            "http://user:pw@host/x",
            "not a url",
            "http:///path",
        ] {
            let e = check_notifier_url(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_notifier_name("team-slack_1").is_ok());
        for bad in ["", "-x", "Team", "a/b", &"x".repeat(64)] {
            assert!(check_notifier_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn notifiers_are_stored_sealed_and_load_back_open() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let sealer = Sealer::ephemeral();
        let coord = Coordinator::load_sealed(
            store.clone(),
            Liveness::default(),
            CancellationToken::new(),
            sealer.clone(),
        )
        .await
        .unwrap();
        let added = coord
            .add_notifier(
                NewNotifier {
                    name: "ops".into(),
                    url: "http://127.0.0.1:1/hook".into(),
                    events: vec![],
                    format: "slack".into(),
                    secret: Some(Secret::new(b"s3cret-value".to_vec())),
                    replace: false,
                },
                "admin",
            )
            .await
            .unwrap();
        assert_eq!(added.format, NotifyFormat::Slack);
        // The store never holds the secret in the clear.
        let raw = store.get("notifiers/ops").await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("s3cret-value"));
        // A second add of the name is refused, `replace` replaces.
        let again = NewNotifier {
            name: "ops".into(),
            url: "http://127.0.0.1:2/hook".into(),
            events: vec!["node.*".into()],
            format: String::new(),
            secret: None,
            replace: false,
        };
        assert!(coord.add_notifier(again, "admin").await.is_err());
        let watch = coord.notifier_targets();
        assert_eq!(
            watch.borrow()["ops"].secret.as_ref().unwrap().expose(),
            b"s3cret-value"
        );
        let back = Coordinator::load_sealed(
            store.clone(),
            Liveness::default(),
            CancellationToken::new(),
            sealer,
        )
        .await
        .unwrap();
        let targets = back.notifier_targets().borrow().clone();
        assert_eq!(targets["ops"], added);
        back.remove_notifier("ops").await.unwrap();
        assert!(store.get("notifiers/ops").await.unwrap().is_none());
        assert!(matches!(
            back.remove_notifier("ops").await,
            Err(StateError::NotifierNotFound(_))
        ));
    }
}

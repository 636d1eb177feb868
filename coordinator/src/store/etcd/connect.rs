//! Connecting to etcd: the store's first round trip, further clients
//! (unbounded, or pinned to one member), and the TLS files read for them.

use super::*;

impl EtcdStore {
    /// Connects and makes one round trip, so a wrong address or a dead
    /// cluster is reported here, naming the endpoints.
    pub async fn connect(cfg: EtcdConfig) -> Result<Self, StoreError> {
        let location = cfg.endpoints.join(",");
        let open_err = |message: String| StoreError::Open {
            path: format!("etcd {location}"),
            message,
        };
        if cfg.endpoints.is_empty() {
            return Err(open_err("no etcd endpoints given".into()));
        }
        if cfg.prefix.is_empty() {
            return Err(open_err(
                "the key prefix is empty: the store needs a prefix of its own (e.g. /convoy/)"
                    .into(),
            ));
        }
        let mut prefix = cfg.prefix.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for e in &cfg.endpoints {
            let e = e.trim();
            let url = if e.contains("://") {
                e.to_string()
            } else {
                format!("{scheme}://{e}")
            };
            if cfg.tls.is_some() && url.starts_with("http://") {
                return Err(open_err(format!(
                    "endpoint `{url}` is plain http but TLS files were given: use https (etcds://)"
                )));
            }
            if cfg.tls.is_none() && url.starts_with("https://") {
                return Err(open_err(format!(
                    "endpoint `{url}` is https but no CA was given to check the members' certificates"
                )));
            }
            endpoints.push(url);
        }
        let tls = match &cfg.tls {
            Some(t) => Some(tls_options(t).map_err(open_err)?),
            None => None,
        };
        let client = connect_client(
            &endpoints,
            tls.clone(),
            cfg.dial_timeout,
            Some(cfg.request_timeout),
        )
        .await
        .map_err(|e| open_err(format!("cannot connect: {e}")))?;
        let store = EtcdStore {
            client,
            endpoints,
            prefix,
            tls,
            dial_timeout: cfg.dial_timeout,
            request_timeout: cfg.request_timeout,
            scan_page: cfg.scan_page.max(1),
            fence: RwLock::new(None),
            last_latency_ns: AtomicU64::new(0),
        };
        // The client connects lazily: one read proves a member answers
        // (tried again on members that are down, as every request is).
        let key = store.prefix.clone();
        let probe = store
            .within(cfg.dial_timeout, |client| {
                let key = key.clone();
                async move {
                    let opts = GetOptions::new().with_count_only();
                    client.kv_client().get(key, Some(opts)).await
                }
            })
            .await;
        match probe {
            Ok(_) => Ok(store),
            Err(e) => {
                let hint = match &cfg.tls {
                    Some(t) if t.cert.is_none() => {
                        " (if the members require client certificates, give one)"
                    }
                    _ => "",
                };
                Err(open_err(format!("no member answered: {e}{hint}")))
            }
        }
    }

    /// Another connection to the same members without the per-request
    /// timeout: an election's campaign blocks until it wins, and lease
    /// keep-alives are one long stream (callers bound their own waits).
    pub async fn unbounded_client(&self) -> Result<Client, StoreError> {
        connect_client(&self.endpoints, self.tls.clone(), self.dial_timeout, None)
            .await
            .map_err(|e| StoreError::Open {
                path: format!("etcd {}", self.location()),
                message: format!("cannot connect: {e}"),
            })
    }

    /// One client per member, each pinned to that member (those that can be
    /// set up; none is dialled yet): a lease keep-alive moves to the next
    /// member at once when one dies, where a balanced channel may keep
    /// picking the dead one for a while.
    pub async fn pinned_clients(&self) -> Vec<Client> {
        let mut out = Vec::new();
        for e in &self.endpoints {
            if let Ok(c) = connect_client(
                std::slice::from_ref(e),
                self.tls.clone(),
                self.dial_timeout,
                None,
            )
            .await
            {
                out.push(c);
            }
        }
        out
    }
}

pub(super) async fn connect_client(
    endpoints: &[String],
    tls: Option<TlsOptions>,
    dial_timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Client, etcd_client::Error> {
    let mut opts = ConnectOptions::new().with_connect_timeout(dial_timeout);
    if let Some(t) = request_timeout {
        opts = opts.with_timeout(t);
    }
    let mut opts = opts
        .with_keep_alive(Duration::from_secs(10), dial_timeout)
        // A member that lost its leader says so at once instead of waiting.
        .with_require_leader(true);
    if let Some(tls) = tls {
        opts = opts.with_tls(tls);
    }
    match tokio::time::timeout(dial_timeout, Client::connect(endpoints, Some(opts))).await {
        Ok(r) => r,
        Err(_) => Err(etcd_client::Error::InvalidArgs(format!(
            "connecting took over {dial_timeout:?}"
        ))),
    }
}

fn tls_options(t: &EtcdTls) -> Result<TlsOptions, String> {
    let read = |what: &str, p: &PathBuf| {
        std::fs::read(p).map_err(|e| format!("cannot read the etcd {what} {}: {e}", p.display()))
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA", &t.ca)?));
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("client certificate", cert)?,
                read("client key", key)?,
            ));
        }
        (None, None) => {}
        (Some(_), None) => return Err("an etcd client certificate needs its key too".into()),
        (None, Some(_)) => return Err("an etcd client key needs its certificate too".into()),
    }
    Ok(tls)
}

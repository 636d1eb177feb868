//! Spec files in Compose syntax, as a user would write them.

use std::collections::BTreeMap;

/// One Compose service running convoy-testapp.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// `deploy.replicas`; `None` leaves it out (e.g. for `mode: global`).
    pub replicas: Option<u32>,
    pub ports: Vec<String>,
    /// Raw YAML appended to the service, indented by four spaces.
    pub extra: Vec<String>,
    /// Raw YAML under `deploy:`, indented by six spaces.
    pub deploy: Vec<String>,
}

impl ServiceSpec {
    /// One replica of the testapp listening on 8080, stopped within 1 s.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            command: vec![
                "/convoy-testapp".into(),
                "--listen".into(),
                "0.0.0.0:8080".into(),
            ],
            env: BTreeMap::new(),
            replicas: Some(1),
            ports: Vec::new(),
            extra: Vec::new(),
            deploy: Vec::new(),
        }
    }

    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = Some(n);
        self
    }

    /// `deploy.mode: global`: one instance per (matching) node.
    pub fn global(mut self) -> Self {
        self.replicas = None;
        self.deploy("mode: global")
    }

    /// Adds a raw line under `deploy:` (give it without indentation).
    pub fn deploy(mut self, line: &str) -> Self {
        self.deploy.push(line.to_string());
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_string();
        self
    }

    pub fn command(mut self, args: &[&str]) -> Self {
        self.command = args.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    pub fn port(mut self, port: &str) -> Self {
        self.ports.push(port.to_string());
        self
    }

    /// Adds a raw line under the service (give it without indentation).
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// The service's block, to go under `services:`.
    pub fn yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let mut y = format!("  {}:\n    image: {}\n", self.name, q(&self.image));
        if !self.command.is_empty() {
            let args: Vec<String> = self.command.iter().map(|a| q(a)).collect();
            y += &format!("    command: [{}]\n", args.join(", "));
        }
        if !self.env.is_empty() {
            y += "    environment:\n";
            for (k, v) in &self.env {
                y += &format!("      {k}: {}\n", q(v));
            }
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(|p| q(p)).collect();
            y += &format!("    ports: [{}]\n", ports.join(", "));
        }
        y += "    stop_grace_period: 1s\n";
        if self.replicas.is_some() || !self.deploy.is_empty() {
            y += "    deploy:\n";
        }
        if let Some(n) = self.replicas {
            y += &format!("      replicas: {n}\n");
        }
        for line in &self.deploy {
            y += &format!("      {line}\n");
        }
        for line in &self.extra {
            y += &format!("    {line}\n");
        }
        y
    }
}

/// A whole Compose file with these services.
pub fn compose(services: &[&ServiceSpec]) -> String {
    let mut y = String::from("services:\n");
    for s in services {
        y += &s.yaml();
    }
    y
}

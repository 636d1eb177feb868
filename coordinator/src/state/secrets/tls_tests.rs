//! `x-convoy.ingress.tls` at apply and rotation: certificates are secrets
//! pinned like mounts, checked before anything is stored, and sent only to
//! the nodes whose proxy presents them.

use super::delivery_tests::{coordinator, hello};
use super::*;
use crate::spec::SecretInputs;

/// One PEM with the chain and the key of a self-signed certificate.
fn pem(names: &[&str]) -> String {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    format!("{}{}", c.cert.pem(), c.key_pair.serialize_pem())
}

/// `web` on node a with a certificate for app.example.com in secret
/// `site` (file ./site.pem); `other` on node b with no ingress.
const STACK: &str = "services:
  web:
    image: app:1
    deploy:
      placement:
        constraints: [\"node.name == a\"]
    x-convoy:
      ingress:
        routes: [{host: app.example.com, port: 80}]
        tls: [{hosts: [app.example.com], certificate: site}]
  other:
    image: app:1
    deploy:
      placement:
        constraints: [\"node.name == b\"]
secrets:
  site:
    file: ./site.pem
";

fn with_pem(value: &str) -> ApplyOptions {
    ApplyOptions {
        secrets: SecretInputs {
            files: [(
                "./site.pem".to_string(),
                Secret::new(value.as_bytes().to_vec()),
            )]
            .into(),
            env: BTreeMap::new(),
        },
        ..ApplyOptions::default()
    }
}

/// (name, version) of the certificate and key refs of `service` in `plan`.
fn tls_refs(plan: &pb::NodePlan, service: &str) -> Vec<(String, u64)> {
    plan.workloads
        .iter()
        .filter(|w| w.service == service)
        .flat_map(|w| w.ingress.iter().flat_map(|i| i.tls.clone()))
        .flat_map(|t| [t.certificate, t.key])
        .flatten()
        .map(|r| (r.name, r.version))
        .collect()
}

#[tokio::test]
async fn a_certificate_is_checked_pinned_and_sent_only_to_its_services_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let coord = coordinator(&store).await;
    let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();

    // A certificate for another name is refused, and nothing is stored.
    let wrong = pem(&["shop.example.com"]);
    let e = coord
        .apply_with("default", "s.yaml", STACK, &with_pem(&wrong), false, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s.yaml: services.web.x-convoy.ingress.tls: [0]: the certificate in secret `site` does not cover host `app.example.com` (it names: shop.example.com)"),
        "{e}"
    );
    assert!(!e.contains("PRIVATE KEY"), "{e}");
    assert!(coord.secrets("default", |_| true).await.is_empty());
    assert!(coord.history("web", "default").await.is_err());

    let first = pem(&["app.example.com"]);
    coord
        .apply_with("default", "s.yaml", STACK, &with_pem(&first), false, "t")
        .await
        .unwrap();
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(
        tls_refs(&plan_a, "web"),
        [("site".to_string(), 1), ("site".to_string(), 1)]
    );
    let values: Vec<_> = plan_a
        .secret_values
        .iter()
        .map(|v| (v.name.as_str(), v.version, v.value.as_slice()))
        .collect();
    assert_eq!(values, [("site", 1, first.as_bytes())]);
    let plan_b = b.plan_rx.borrow_and_update().clone().unwrap();
    assert!(plan_b.secret_values.is_empty(), "b runs no user of it");
    let listed = coord.secrets("default", |_| true).await;
    assert_eq!(listed[0].used_by, ["web"]);
    let e = coord
        .remove_secret("default", "site")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("used by web"), "{e}");
    let revision = coord.history("web", "default").await.unwrap().current;

    // A renewal by rotation: the service gets a revision pinning it, the
    // node the new value.
    let renewed = pem(&["app.example.com"]);
    let info = coord
        .write_secret(
            "default",
            "site",
            SecretValue::Given(Secret::new(renewed.clone().into_bytes())),
            SecretWrite::Rotate,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(
        coord.history("web", "default").await.unwrap().current,
        revision + 1
    );
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    assert!(tls_refs(&plan_a, "web").contains(&("site".to_string(), 2)));
    assert!(plan_a
        .secret_values
        .iter()
        .any(|v| v.version == 2 && v.value == renewed.as_bytes()));

    // A rotation to something that is not a certificate is refused whole.
    let e = coord
        .write_secret(
            "default",
            "site",
            SecretValue::Given(Secret::new(b"not a certificate".to_vec())),
            SecretWrite::Rotate,
            "t",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("secret `site` of environment `default` was not rotated")
            && e.contains("holds no PEM certificate"),
        "{e}"
    );
    let (info, versions) = coord.secret_history("default", "site").await.unwrap();
    assert_eq!((info.version, versions.len()), (2, 2));
    assert_eq!(
        coord.history("web", "default").await.unwrap().current,
        revision + 1
    );
}

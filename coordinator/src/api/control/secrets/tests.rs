use super::*;
use crate::{state::Liveness, store::Store};
use pb::control_service_server::ControlService as _;
use tokio_util::sync::CancellationToken;

const CANARY: &str = "canary-0d1e-api-secret";

struct Fixture {
    api: ControlApi,
    audit: Arc<Audit>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(crate::store::SledStore::open(&dir.path().join("store")).unwrap());
    let tokens = Arc::new(
        Tokens::load(store.clone(), &dir.path().join("admin.token"))
            .await
            .unwrap(),
    );
    let audit = Arc::new(Audit::load(store.clone()).await.unwrap());
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    Fixture {
        api: ControlApi::new(coord, tokens, audit.clone(), String::new()),
        audit,
        _dir: dir,
    }
}

fn as_caller<T>(role: Role, envs: &[&str], msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.extensions_mut().insert(Caller {
        id: format!("{role}-id"),
        name: role.to_string(),
        role,
        envs: envs.iter().map(|e| e.to_string()).collect(),
    });
    req
}

fn set(env: &str, name: &str, value: &str, rotate: bool) -> pb::SetSecretRequest {
    pb::SetSecretRequest {
        env: env.into(),
        name: name.into(),
        value: value.as_bytes().to_vec(),
        rotate,
    }
}

#[tokio::test]
async fn a_staging_deployer_can_neither_list_nor_set_prod_secrets_and_a_viewer_only_lists() {
    let f = fixture().await;
    f.api
        .set_secret(admin(set("prod", "db", CANARY, false)))
        .await
        .unwrap();
    f.api
        .set_secret(admin(set("staging", "db", "s", false)))
        .await
        .unwrap();

    // The staging deployer: its environment yes, prod no.
    let info = f
        .api
        .set_secret(dep(set("staging", "api-key", "k", false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.env.as_str(), info.version), ("staging", 1));
    let err = f
        .api
        .set_secret(as_caller(
            Role::Deployer,
            &["staging"],
            set("prod", "db", "evil", true),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("`prod`"), "{}", err.message());
    let err = f
        .api
        .list_secrets(dep(pb::ListSecretsRequest { env: "prod".into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = f
        .api
        .secret_history(as_caller(
            Role::Deployer,
            &["staging"],
            pb::SecretHistoryRequest {
                env: "prod".into(),
                name: "db".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = f
        .api
        .generate_secret(as_caller(
            Role::Deployer,
            &["staging"],
            pb::GenerateSecretRequest {
                env: "prod".into(),
                name: "new".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = f
        .api
        .remove_secret(as_caller(
            Role::Deployer,
            &["staging"],
            pb::RemoveSecretRequest {
                env: "prod".into(),
                name: "db".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Listing every environment shows staging's only.
    let all = f
        .api
        .list_secrets(dep(pb::ListSecretsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all
        .secrets
        .iter()
        .map(|s| format!("{}/{}", s.env, s.name))
        .collect();
    assert_eq!(names, vec!["staging/api-key", "staging/db"]);

    // A viewer lists names (and versions), writes nothing.
    let all = f
        .api
        .list_secrets(viewer(pb::ListSecretsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.secrets.len(), 3);
    let err = f
        .api
        .set_secret(viewer(set("staging", "x", "v", false)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Nothing answered or audited holds the value.
    assert!(!format!("{all:?}").contains(CANARY));
    let entries = f.audit.list(0).await.unwrap();
    let text = format!("{entries:?}");
    assert!(!text.contains(CANARY), "{text}");
    assert!(!text.contains("evil"), "{text}");
    // The refused prod writes are audited by name, with the refusal.
    let refused: Vec<_> = entries
        .iter()
        .filter(|e| e.target.starts_with("prod/") && e.result != "ok")
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        refused,
        vec![
            ("secret.rotate", "prod/db"),
            ("secret.generate", "prod/new"),
            ("secret.remove", "prod/db")
        ]
    );
}

#[tokio::test]
async fn every_write_is_audited_by_name_and_version_never_by_value() {
    let f = fixture().await;
    f.api
        .set_secret(admin(set("prod", "db", CANARY, false)))
        .await
        .unwrap();
    let info = f
        .api
        .generate_secret(admin(pb::GenerateSecretRequest {
            env: "prod".into(),
            name: "db".into(),
            length: 24,
            charset: "urlsafe".into(),
            rotate: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.version, 2);
    assert_eq!(info.origin, "generated (24 urlsafe)");
    f.api
        .generate_secret(admin(pb::GenerateSecretRequest {
            env: "prod".into(),
            name: "token".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let history = f
        .api
        .secret_history(admin(pb::SecretHistoryRequest {
            env: "prod".into(),
            name: "db".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.versions.len(), 2);
    assert!(history.versions[1].current);
    // Too big, empty, bad charset: refused, naming the secret; audited.
    let big = "x".repeat(MAX_SECRET_BYTES + 1);
    let err = f
        .api
        .set_secret(admin(set("prod", "big", &big, false)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("`big`"), "{}", err.message());
    let err = f
        .api
        .set_secret(admin(set("prod", "empty", "", false)))
        .await
        .unwrap_err();
    assert!(err.message().contains("`empty`"), "{}", err.message());
    let err = f
        .api
        .generate_secret(admin(pb::GenerateSecretRequest {
            env: "prod".into(),
            name: "g".into(),
            charset: "base32".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert!(err.message().contains("base32"), "{}", err.message());
    f.api
        .remove_secret(admin(pb::RemoveSecretRequest {
            env: "prod".into(),
            name: "db".into(),
        }))
        .await
        .unwrap();

    let entries = f.audit.list(0).await.unwrap();
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str(), e.result == "ok"))
        .collect();
    assert_eq!(
        got,
        vec![
            ("secret.set", "prod/db v1", true),
            ("secret.rotate", "prod/db v2", true),
            ("secret.generate", "prod/token v1", true),
            ("secret.set", "prod/big", false),
            ("secret.set", "prod/empty", false),
            ("secret.generate", "prod/g", false),
            ("secret.remove", "prod/db v2", true),
        ]
    );
    let text = format!("{entries:?}");
    assert!(
        !text.contains(CANARY) && !text.contains(&big),
        "audit holds a value"
    );
    assert!(entries.iter().all(|e| e.who == "admin-id (admin)"));

    // A name far too long is refused, and audited cut to 128 characters.
    let long = "n".repeat(100_000);
    let err = f
        .api
        .set_secret(admin(set("prod", &long, "v", false)))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("invalid secret name"),
        "{}",
        err.message()
    );
    assert!(err.message().len() < 1000, "{}", err.message().len());
    let last = f.audit.list(0).await.unwrap().pop().unwrap();
    assert_eq!(
        last.target,
        format!("prod/{}…", "n".repeat(MAX_SECRET_NAME))
    );
}

fn admin<T>(msg: T) -> Request<T> {
    as_caller(Role::Admin, &[], msg)
}

fn dep<T>(msg: T) -> Request<T> {
    as_caller(Role::Deployer, &["staging"], msg)
}

fn viewer<T>(msg: T) -> Request<T> {
    as_caller(Role::Viewer, &[], msg)
}

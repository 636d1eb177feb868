use std::{fs, os::unix::fs::PermissionsExt};

use super::*;

#[test]
fn a_sealed_value_opens_only_with_its_key_and_context() {
    let sealer = Sealer::ephemeral();
    let sealed = sealer.seal("registries/r.example:5000", b"hunter2");
    let json = serde_json::to_string(&sealed).unwrap();
    assert!(!json.contains("hunter2"), "{json}");
    assert!(!json.contains(&hex::encode(b"hunter2")), "{json}");
    assert!(json.starts_with("\"xc20p1:"), "{json}");
    let open = sealer
        .open_string("registries/r.example:5000", &sealed)
        .unwrap();
    assert_eq!(open.expose(), "hunter2");
    assert_eq!(format!("{open:?}"), "<redacted>");
    assert_eq!(format!("{sealed:?}"), "Sealed(..)");

    let err = sealer.open("registries/other", &sealed).unwrap_err();
    assert!(matches!(err, SecretsError::Open { .. }), "{err}");
    let err = Sealer::ephemeral()
        .open("registries/r.example:5000", &sealed)
        .unwrap_err();
    assert!(matches!(err, SecretsError::Open { .. }), "{err}");
    // Random nonces: the same secret never seals to the same bytes.
    assert_ne!(sealer.seal("k", b"x"), sealer.seal("k", b"x"));
}

#[test]
fn a_tampered_or_malformed_value_is_refused() {
    let sealer = Sealer::ephemeral();
    let sealed = sealer.seal("k", b"secret");
    let mut text = serde_json::to_string(&sealed).unwrap();
    // Flip one hex digit of the ciphertext.
    let at = text.len() - 3;
    let flipped = if &text[at..at + 1] == "0" { "1" } else { "0" };
    text.replace_range(at..at + 1, flipped);
    let tampered: Sealed = serde_json::from_str(&text).unwrap();
    assert!(matches!(
        sealer.open("k", &tampered),
        Err(SecretsError::Open { .. })
    ));
    for bad in ["\"plain\"", "\"xc20p1:zz\"", "\"xc20p1:00\""] {
        let bad: Sealed = serde_json::from_str(bad).unwrap();
        let err = sealer.open("k", &bad).unwrap_err();
        assert!(matches!(err, SecretsError::Malformed { .. }), "{err}");
    }
}

#[test]
fn the_key_file_is_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Sealer::open_or_create(dir.path()).unwrap();
    let path = dir.path().join(KEY_FILE);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), KEY_LEN as u64);
    let sealed = a.seal("k", b"v");
    let b = Sealer::open_or_create(dir.path()).unwrap();
    assert_eq!(b.open("k", &sealed).unwrap().expose(), b"v");
}

#[test]
fn a_key_file_too_open_or_of_the_wrong_size_stops_the_coordinator_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    Sealer::open_or_create(dir.path()).unwrap();
    let path = dir.path().join(KEY_FILE);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = Sealer::open_or_create(dir.path()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("640") && err.contains("chmod 600"), "{err}");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, b"short").unwrap();
    let err = Sealer::open_or_create(dir.path()).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("5 bytes, not 32"), "{err}");
}

#[test]
fn an_envelope_opens_with_its_key_and_context_and_a_rewrap_moves_it_to_the_new_key() {
    let kek = Sealer::ephemeral();
    let context = "secrets/prod/db-password";
    let sealed = kek.seal_envelope(context, b"canary-value");
    let json = serde_json::to_string(&sealed).unwrap();
    assert!(!json.contains("canary-value"), "{json}");
    assert!(!json.contains(&hex::encode(b"canary-value")), "{json}");
    assert_eq!(
        kek.open_envelope(context, &sealed).unwrap().expose(),
        b"canary-value"
    );
    assert_eq!(format!("{sealed:?}"), "Envelope(..)");
    // Each seal draws a new data key.
    let again = kek.seal_envelope(context, b"canary-value");
    assert_ne!(again.data_key, sealed.data_key);
    assert_ne!(again.value, sealed.value);
    // Another record, or the data key and value swapped, do not open.
    assert!(kek.open_envelope("secrets/prod/other", &sealed).is_err());
    let swapped = Envelope {
        data_key: sealed.value.clone(),
        value: sealed.data_key.clone(),
    };
    assert!(kek.open_envelope(context, &swapped).is_err());
    assert!(Sealer::ephemeral().open_envelope(context, &sealed).is_err());

    // Re-wrap: the value stays, the data key moves to the new KEK.
    let new = Sealer::ephemeral();
    let moved = kek.rewrap(&new, context, &sealed).unwrap();
    assert_eq!(moved.value, sealed.value);
    assert_ne!(moved.data_key, sealed.data_key);
    assert_eq!(
        new.open_envelope(context, &moved).unwrap().expose(),
        b"canary-value"
    );
    let err = kek.open_envelope(context, &moved).unwrap_err();
    assert!(matches!(err, SecretsError::Open { .. }), "{err}");
}

#[test]
fn a_new_key_file_is_checked_and_installed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let old = Sealer::open_or_create(dir.path()).unwrap();
    let new_path = dir.path().join("new.key");
    fs::write(&new_path, [7u8; KEY_LEN]).unwrap();
    fs::set_permissions(&new_path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Sealer::from_key_file(&new_path).unwrap_err().to_string();
    assert!(
        err.contains("new.key") && err.contains("chmod 600"),
        "{err}"
    );
    fs::set_permissions(&new_path, fs::Permissions::from_mode(0o600)).unwrap();
    let new = Sealer::from_key_file(&new_path).unwrap();
    let err = Sealer::from_key_file(&dir.path().join("absent.key"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.key"), "{err}");

    let sealed = new.seal("k", b"v");
    install_key(dir.path(), &new_path).unwrap();
    let installed = Sealer::open_or_create(dir.path()).unwrap();
    assert_eq!(installed.open("k", &sealed).unwrap().expose(), b"v");
    assert!(old.open("k", &sealed).is_err());
    let meta = fs::metadata(dir.path().join(KEY_FILE)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join(format!("{KEY_FILE}.new")).exists());
}

//! `x-convoy.ingress.tls`: certificates of the proxy's TLS listener as
//! references to the top-level `secrets:`, and the errors that name file,
//! line and key.

use super::*;

fn read(tls: &str) -> Result<ServiceSpec, String> {
    let text = format!(
        "services:\n  web:\n    image: x:1\n    x-convoy:\n      ingress:\n        routes: [{{port: 80}}]\n{tls}secrets:\n  site_cert: {{external: true, name: site-cert}}\n  site_key: {{external: true}}\n  both: {{external: true}}\n"
    );
    crate::spec::parse("app.yaml", &text)
        .map(|f| f.services["web"].clone())
        .map_err(|e| e.to_string())
}

#[test]
fn certificates_name_their_secrets_and_stay_out_of_the_spec_hash() {
    let plain = read("").unwrap();
    let tls = read(
        "        tls:\n          - {hosts: [App.Example.com, '*.apps.example.com'], certificate: site_cert, key: site_key}\n          - {hosts: [other.example.com], certificate: both}\n",
    )
    .unwrap();
    let ingress = tls.ingress.clone().unwrap();
    assert_eq!(ingress.tls.len(), 2);
    let first = &ingress.tls[0];
    assert_eq!(first.hosts, ["app.example.com", "*.apps.example.com"]);
    assert_eq!(
        (
            first.certificate.source.as_str(),
            first.certificate.name.as_str()
        ),
        ("site_cert", "site-cert"),
        "the store name is the entry's `name:`"
    );
    assert_eq!(first.key.name, "site_key");
    // Without `key`, the certificate's secret holds the key too.
    assert_eq!(ingress.tls[1].key, ingress.tls[1].certificate);
    assert_eq!(ingress.tls[1].key.name, "both");
    // A certificate is not how a container runs.
    assert_eq!(tls.spec_hash(), plain.spec_hash());
    assert_eq!(
        crate::spec::changed_fields(&plain, &tls),
        ["x-convoy.ingress"]
    );
    let wire = tls.ingress().unwrap();
    assert_eq!(wire.tls.len(), 2);
    assert_eq!(wire.tls[0].certificate.as_ref().unwrap().name, "site-cert");
    assert_eq!(wire.tls[0].key.as_ref().unwrap().name, "site_key");
    // Versions are pinned at apply (0 until then).
    assert_eq!(wire.tls[0].key.as_ref().unwrap().version, 0);
    // Cleartext requests for those hosts go to https unless told not to.
    assert!(ingress.https_redirect && wire.https_redirect);
    assert!(!plain.ingress().unwrap().https_redirect, "no certificate");
    let kept = read(
        "        https_redirect: false\n        tls: [{hosts: [a.example.com], certificate: both}]\n",
    )
    .unwrap();
    assert!(!kept.ingress().unwrap().https_redirect);
    assert_eq!(kept.spec_hash(), plain.spec_hash());
}

#[test]
fn bad_certificate_entries_are_refused_naming_file_line_and_key() {
    let e = read("        tls: [{certificate: site_cert}]\n").unwrap_err();
    assert!(e.starts_with("app.yaml:7:"), "{e}");
    assert!(e.contains("services.web.x-convoy.ingress.tls"), "{e}");
    assert!(e.contains("a certificate needs `hosts:`"), "{e}");
    let e = read("        tls: [{hosts: [a.example.com]}]\n").unwrap_err();
    assert!(e.contains("a certificate needs `certificate:`"), "{e}");
    let e =
        read("        tls: [{hosts: ['https://a.example.com'], certificate: both}]\n").unwrap_err();
    assert!(e.contains("is not a host name"), "{e}");
    let e = read(
        "        tls:\n          - {hosts: [a.example.com], certificate: both}\n          - {hosts: [A.example.com], certificate: site_cert, key: site_key}\n",
    )
    .unwrap_err();
    assert!(
        e.contains("host `a.example.com` is in two certificate entries"),
        "{e}"
    );
    let e = read("        tls: [{hosts: [a.example.com, a.example.com], certificate: both}]\n")
        .unwrap_err();
    assert!(e.contains("named twice"), "{e}");
    let e =
        read("        tls: [{hosts: [a.example.com], certificate: both, ca: x}]\n").unwrap_err();
    assert!(e.contains("`ca`"), "{e}");
    let e = read("        https_redirect: true\n").unwrap_err();
    assert!(e.contains("`https_redirect` needs `tls:`"), "{e}");
    let e = read(
        "        https_redirect: sometimes\n        tls: [{hosts: [a.example.com], certificate: both}]\n",
    )
    .unwrap_err();
    assert!(e.contains("is not `true` or `false`"), "{e}");
    let e = read("        tls: [{hosts: [a.example.com], certificate: nope}]\n").unwrap_err();
    assert!(
        e.contains("services.web.x-convoy.ingress.tls[0].certificate")
            && e.contains("refers to undefined secret `nope`"),
        "{e}"
    );
    let e = read("        tls: [{hosts: [a.example.com], certificate: both, key: nokey}]\n")
        .unwrap_err();
    assert!(e.contains("tls[0].key") && e.contains("`nokey`"), "{e}");
}

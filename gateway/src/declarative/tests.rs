use super::*;

const SEED: &str = r#"
_format_version: "3.0"
services:
  - name: pytbak
    url: http://127.0.0.1:5000
    routes:
      - name: api
        paths: ["/api/"]
      - name: api-get
        paths:
          - /api/get/
consumers:
  - username: slow_user
    keyauth_credentials:
      - key: 332d05445a560ee65a76aeaa372d8904
routes:
  - name: loose
    service: pytbak
    hosts: ["*.example.com"]
"#;

#[test]
fn nested_and_top_level_entities_are_read() {
    let c = load(SEED, 1).unwrap();
    let kinds: Vec<Kind> = c.records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Service,
            Kind::Route,
            Kind::Route,
            Kind::Route,
            Kind::Consumer,
            Kind::KeyAuth
        ]
    );
    let service_id = c.records[0].id;
    assert!(c.records[1..4]
        .iter()
        .all(|r| r.keys.service_id == Some(service_id)));
    assert_eq!(c.records[5].keys.consumer_id, Some(c.records[4].id));
}

#[test]
fn the_same_file_gives_the_same_ids() {
    let a: Vec<Uuid> = load(SEED, 1)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    let b: Vec<Uuid> = load(SEED, 2)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(a, b);
}

#[test]
fn errors_carry_lines_and_paths() {
    let text = "_format_version: \"3.0\"\nservices:\n  - name: s\n    host: ok.local\n    routes:\n      - name: r\n        paths: [\"api\"]\n        strip_path: maybe\n";
    let errs = load(text, 1).unwrap_err();
    let shown: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    assert!(
        shown.contains(&"line 8: services[0].routes[0].strip_path: expected a boolean".to_string()),
        "{shown:?}"
    );
}

#[test]
fn unknown_references_and_duplicates_are_reported() {
    let text = "_format_version: \"3.0\"\nroutes:\n  - name: r\n    paths: [/a]\n    service: nowhere\nconsumers:\n  - username: u\n  - username: u\n";
    let shown: Vec<String> = load(text, 1)
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("line 5: routes[0].service: no services named")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s == "line 8: consumers[1]: uniqueness violation: 'consumers' entity with username set to 'u' already declared"),
        "{shown:?}"
    );
}

#[test]
fn format_version_is_required_and_checked() {
    assert!(load("services: []\n", 1).unwrap_err()[0]
        .message
        .contains("_format_version is required"));
    assert!(load("_format_version: \"9\"\n", 1).unwrap_err()[0]
        .message
        .contains("unsupported format version"));
    let legacy = load(
        "_format_version: \"1.1\"\nroutes:\n  - name: r\n    paths: [\"/users/\\\\d+\"]\n",
        1,
    )
    .unwrap();
    assert_eq!(legacy.records[0].body["paths"][0], "~/users/\\d+");
}

#[test]
fn export_reads_back_and_plans_nothing() {
    let c = load(SEED, 1).unwrap();
    let stored: Vec<(Kind, Value)> = c.records.iter().map(|r| (r.kind, r.body.clone())).collect();
    let text = export::to_yaml(&export::document(&stored, &[]));
    let again = load(&text, 5).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert!(sync::plan(&stored, &again.records).is_empty(), "{text}");
}

#[test]
fn plan_orders_creates_parents_first_and_deletes_children_first() {
    let c = load(SEED, 1).unwrap();
    let plan = sync::plan(&[], &c.records);
    assert!(plan.iter().all(|ch| ch.op == sync::Op::Create));
    assert_eq!(plan[0].kind, Kind::Service);
    let stored: Vec<(Kind, Value)> = c.records.iter().map(|r| (r.kind, r.body.clone())).collect();
    let plan = sync::plan(&stored, &[]);
    assert_eq!(plan.first().unwrap().kind, Kind::KeyAuth);
    assert_eq!(plan.last().unwrap().kind, Kind::Service);
    let mut changed = c.records.clone();
    changed[1].body["strip_path"] = Value::Bool(false);
    let plan = sync::plan(&stored, &changed);
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].op, sync::Op::Update);
    assert!(plan[0].describe().starts_with("update routes api ("));
}

#[test]
fn a_sync_leaves_what_the_developer_portal_made() {
    let c = load(SEED, 1).unwrap();
    let mut stored: Vec<(Kind, Value)> =
        c.records.iter().map(|r| (r.kind, r.body.clone())).collect();
    let app = "2f1d6c4e-9a70-4a8e-8f0e-3d2b1c0a9e11";
    stored.push((
        Kind::Consumer,
        json!({"id": app, "username": "app-x", "tags": ["tollgate-portal"]}),
    ));
    stored.push((
        Kind::KeyAuth,
        json!({"id": "0b7c1f0e-1111-4a8e-8f0e-3d2b1c0a9e11", "consumer": {"id": app}}),
    ));
    stored.push((
        Kind::Plugin,
        json!({"id": "0b7c1f0e-2222-4a8e-8f0e-3d2b1c0a9e11", "name": "rate-limiting",
        "consumer": {"id": app}, "tags": ["tollgate-plan"]}),
    ));
    assert!(sync::plan(&stored, &c.records).is_empty());
    let plan = sync::plan(&stored, &[]);
    assert!(plan.iter().all(|ch| !ch.body["id"]
        .as_str()
        .unwrap_or_default()
        .ends_with("3d2b1c0a9e11")));
    assert!(!plan.is_empty());
}

#[test]
fn certificates_with_nested_snis_are_read_and_checked() {
    let (cert, key) = crate::tls::pem::tests::self_signed(&["a.test"]);
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    let file = format!(
        "_format_version: \"3.0\"\ncertificates:\n  - cert: |\n{}    key: |\n{}    snis:\n      - name: a.test\n      - b.test\n",
        indent(&cert),
        indent(&key)
    );
    let c = load(&file, 1).unwrap();
    let kinds: Vec<Kind> = c.records.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![Kind::Certificate, Kind::Sni, Kind::Sni]);
    let certificate = c.records[0].id.to_string();
    assert!(c.records[1..]
        .iter()
        .all(|s| s.body["certificate"]["id"] == certificate.as_str()));
    assert_eq!(c.records[2].body["name"], "b.test");
    // A certificate whose key is another's is refused at its path in the file.
    let (_, other) = crate::tls::pem::tests::self_signed(&["b.test"]);
    let bad = file.replace(&indent(&key), &indent(&other));
    let errors = load(&bad, 1).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| format!("{e:?}").contains("certificate does not match key")),
        "{errors:?}"
    );
}

//! Kong's admin API details, ported from Kong's `spec/02-integration/04-admin_api/`
//! (Kong/kong@22246ef; line numbers cite those files): DB-less `/config`
//! (15-off_spec.lua), body handling (03-consumers_routes_spec.lua) and method answers
//! (kong/api/api_helpers.lua).
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn dbless() -> Gateway {
    Gateway::start(&[("TOLLGATE_DATABASE", "off")]).await
}

async fn post_config(gw: &Gateway, query: &str, content_type: &'static str, body: &str) -> Resp {
    let url = gw.admin_url(&format!("/config{query}"));
    let body = Some((content_type, body.to_string()));
    send("POST", &url, &[], body).await
}

/// DELETE answers 204 and the entity is gone.
async fn deleted_and_gone(gw: &Gateway, path: &str) {
    let url = gw.admin_url(path);
    assert_eq!(send("DELETE", &url, &[], None).await.status, 204, "{path}");
    assert_eq!(send("GET", &url, &[], None).await.status, 404, "{path}");
}

/// Posts `text` as the JSON body's `config` string, as Kong's spec mostly does.
async fn post_config_text(gw: &Gateway, text: &str) -> Resp {
    let body = json!({"config": text}).to_string();
    post_config(gw, "", "application/json", &body).await
}

/// 15-off_spec.lua:220-298: the configuration as a JSON body, a YAML body, and as a JSON or
/// YAML string under a `config` key; curl's `-F config=@kong.yaml` (multipart) too. Each is
/// 201 and replaces the whole configuration.
#[tokio::test(flavor = "multi_thread")]
async fn post_config_takes_every_body_form_kong_takes() {
    let gw = dbless().await;
    let cases: [(&'static str, String); 4] = [
        (
            "application/json",
            json!({"_format_version": "1.1", "consumers": [{"username": "bobby_in_json_body"}]})
                .to_string(),
        ),
        (
            "application/yaml",
            "_format_version: \"1.1\"\nconsumers:\n  - username: bobby_in_yaml_body\n".into(),
        ),
        (
            "application/json",
            json!({"config": "{\"_format_version\": \"1.1\", \"consumers\": [{\"username\": \"bobby_in_json_under_config\"}]}"})
                .to_string(),
        ),
        (
            "application/json",
            json!({"config": "_format_version: \"1.1\"\nconsumers:\n  - username: bobby_in_yaml_under_config\n"})
                .to_string(),
        ),
    ];
    for (content_type, body) in cases {
        let r = post_config(&gw, "", content_type, &body).await;
        assert_eq!(r.status, 201, "{body}: {}", r.body);
        let users: Vec<&str> = r.json["consumers"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["username"].as_str().unwrap())
            .collect();
        assert_eq!(users.len(), 1);
        assert!(body.contains(users[0]), "{users:?}");
        gw.settled().await;
        let list = send("GET", &gw.admin_url("/consumers"), &[], None).await;
        assert_eq!(
            list.json["data"].as_array().unwrap().len(),
            1,
            "replaced, not added"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kong.yaml");
    std::fs::write(
        &file,
        "_format_version: \"3.0\"\nconsumers:\n  - username: from_a_file\n",
    )
    .unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-F"])
        .arg(format!("config=@{}", file.display()))
        .arg(gw.admin_url("/config"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    let r = send("GET", &gw.admin_url("/consumers/from_a_file"), &[], None).await;
    assert_eq!(r.status, 200);
}

/// 15-off_spec.lua:582-619 (`check_hash`: 304 for the configuration running), 828-839 (no
/// input), 914-958 (`GET /config` gives it back), and the proxy serving a posted service.
#[tokio::test(flavor = "multi_thread")]
async fn post_config_swaps_the_proxy_and_check_hash_spares_a_reload() {
    let backend = Backend::start().await;
    let gw = dbless().await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:{}\n    routes:\n      - name: r\n        paths: [/posted]\n",
        backend.port
    );
    let body = json!({"config": yaml}).to_string();
    let r = post_config(&gw, "?check_hash=1", "application/json", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post_config(&gw, "?check_hash=1", "application/json", &body).await;
    assert_eq!(r.status, 304);
    gw.wait_for_status("/posted/x", 200, Duration::from_secs(1))
        .await;
    let r = send("GET", &gw.admin_url("/config"), &[], None).await;
    assert_eq!(r.status, 200);
    let config = r.json["config"].as_str().unwrap();
    assert!(
        config.contains("_format_version: \"3.0\"") && config.contains("/posted"),
        "{config}"
    );
    let r = send("POST", &gw.admin_url("/config"), &[], None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json,
        json!({"message": "expected a declarative configuration"})
    );
    let r = gw
        .wait_for_status("/posted/x", 200, Duration::from_secs(1))
        .await;
    assert_eq!(
        r.json["path"], "/x",
        "a refused post leaves the running configuration"
    );
}

/// 15-off_spec.lua:621-826: Kong's code 14 bodies: a text that is no object, field errors in a
/// tree that mirrors the file, and uniqueness violations.
#[tokio::test(flavor = "multi_thread")]
async fn post_config_errors_in_kongs_shape() {
    let gw = dbless().await;
    let invalid = |r: &Resp| {
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json["code"], 14);
        assert_eq!(r.json["name"], "invalid declarative configuration");
    };
    let r = post_config(&gw, "", "application/json", r#"{"config": "bobby tables"}"#).await;
    invalid(&r);
    assert_eq!(
        r.json["fields"]["error"],
        "failed parsing declarative configuration: expected an object"
    );
    let yaml = "_format_version: \"1.1\"\nservices:\n- port: -12\n";
    let r = post_config_text(&gw, yaml).await;
    invalid(&r);
    assert_eq!(
        r.json["fields"],
        json!({"services": [{"host": "required field missing", "port": "value should be between 0 and 65535"}]})
    );
    assert_eq!(
        r.json["message"],
        "declarative config is invalid: {services={{host=\"required field missing\",port=\"value should be between 0 and 65535\"}}}"
    );
    let yaml = "_format_version: \"1.1\"\nservices:\n- name: foo\n  host: example.com\n- name: foo\n  host: example.test\n";
    let r = post_config_text(&gw, yaml).await;
    invalid(&r);
    assert_eq!(
        r.json["fields"]["services"],
        json!([
            null,
            "uniqueness violation: 'services' entity with name set to 'foo' already declared"
        ])
    );
    // 2482-2525 with flatten_errors: one record per entity at fault.
    let doc = json!({"_format_version": "3.0", "services": [{
        "id": "cb019421-62c2-47a8-b714-d7567b114037", "name": "test", "host": "localhost",
        "protocol": "nope", "tags": ["service-01"], "routes": [{"super_duper_invalid": true, "tags": ["route-01"]}]}]});
    let r = post_config(
        &gw,
        "?flatten_errors=1",
        "application/json",
        &doc.to_string(),
    )
    .await;
    invalid(&r);
    let flat = r.json["flattened_errors"].as_array().unwrap();
    let by_tag = |tag: &str| {
        flat.iter()
            .find(|e| e["entity_tags"][0] == tag)
            .unwrap_or_else(|| panic!("{tag}: {flat:?}"))
    };
    let service = by_tag("service-01");
    assert_eq!(service["entity_type"], "service");
    assert_eq!(service["entity_id"], "cb019421-62c2-47a8-b714-d7567b114037");
    assert_eq!(service["errors"][0]["field"], "protocol");
    let route = by_tag("route-01");
    assert_eq!(
        route["entity"]["service"],
        json!({"id": "cb019421-62c2-47a8-b714-d7567b114037"})
    );
    assert_eq!(route["errors"][0]["type"], "field");
    // A plugin Tollgate lacks: one message naming it, at its place in the file.
    let yaml =
        "_format_version: \"3.0\"\nservices:\n- name: a\n  host: h\n  plugins:\n  - name: syslog\n";
    let r = post_config(&gw, "", "application/yaml", yaml).await;
    invalid(&r);
    let message = r.json["fields"]["services"][0]["plugins"][0]["name"]
        .as_str()
        .unwrap();
    assert!(
        message.starts_with("plugin 'syslog' not enabled; Tollgate does not have it"),
        "{message}"
    );
    // Kong's consumers are case-sensitive: `Foo` and `foo` are two.
    let two =
        json!({"_format_version": "3.0", "consumers": [{"username": "Foo"}, {"username": "foo"}]});
    let r = post_config(&gw, "", "application/json", &two.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["consumers"].as_object().unwrap().len(), 2);
}

/// 15-off_spec.lua:75-216: writes in DB-less mode are 405 with Kong's "operation
/// unsupported" body; methods a path does not serve are 405 "Method not allowed".
#[tokio::test(flavor = "multi_thread")]
async fn dbless_writes_are_refused_as_kong_refuses_them() {
    let gw = dbless().await;
    let unsupported =
        |message: &str| json!({"code": 12, "name": "operation unsupported", "message": message});
    let route = json_body(json!({"paths": ["/"]}));
    let r = send("POST", &gw.admin_url("/routes"), &[], route.clone()).await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.json,
        unsupported("cannot create 'routes' entities when not using a database")
    );
    let id = "0855b320-0dd2-547d-891d-601e9b38647f";
    let r = send(
        "PUT",
        &gw.admin_url(&format!("/routes/{id}")),
        &[],
        route.clone(),
    )
    .await;
    assert_eq!(
        r.json,
        unsupported("cannot create or update 'routes' entities when not using a database")
    );
    let r = send("PATCH", &gw.admin_url("/routes/byname"), &[], route.clone()).await;
    assert_eq!(
        r.json,
        unsupported("cannot update 'routes' entities by 'name' when not using a database")
    );
    let r = send(
        "DELETE",
        &gw.admin_url(&format!("/consumers/{id}")),
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.json,
        unsupported("cannot remove 'consumers' entities when not using a database")
    );
    for method in ["DELETE", "PUT", "PATCH"] {
        let r = send(method, &gw.admin_url("/routes"), &[], route.clone()).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.json, json!({"message": "Method not allowed"}));
    }
    let r = send("POST", &gw.admin_url(&format!("/routes/{id}")), &[], route).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (405, json!({"message": "Method not allowed"}))
    );
    // With a database, /config is Kong's 400.
    let db = Gateway::start(&[]).await;
    let r = post_config(&db, "", "application/json", r#"{"_format_version": "3.0"}"#).await;
    assert_eq!(r.status, 400);
    assert!(r.json["message"]
        .as_str()
        .unwrap()
        .contains("only available"));
}

/// 03-consumers_routes_spec.lua:135-170: 415 for a body of another type or of none, "Cannot
/// parse JSON body" for a JSON type without JSON; api_helpers.lua `options_method`: OPTIONS
/// lists the methods a path serves.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_and_methods_as_kong_answers_them() {
    let gw = Gateway::start(&[]).await;
    let url = gw.admin_url("/consumers");
    let raw =
        |ct: Option<&'static str>, body: &str| Some((ct.unwrap_or_default(), body.to_string()));
    let r = send(
        "POST",
        &url,
        &[],
        raw(Some("invalid"), r#"{"hello": "world"}"#),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = send("POST", &url, &[], raw(None, "invalid")).await;
    assert_eq!(r.status, 415);
    for body in ["", "{not json", "[1]"] {
        let r = send("POST", &url, &[], raw(Some("application/json"), body)).await;
        assert_eq!(r.status, 400, "{body:?}");
        assert_eq!(r.json, json!({"message": "Cannot parse JSON body"}));
    }
    let r = send("OPTIONS", &url, &[], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS, POST")
    );
    let r = send("OPTIONS", &gw.admin_url("/consumers/x"), &[], None).await;
    assert_eq!(
        r.header("allow"),
        Some("DELETE, GET, HEAD, OPTIONS, PATCH, PUT")
    );
    let r = send("POST", &gw.admin_url("/status"), &[], None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json, json!({"message": "Method not allowed"}));
    assert_eq!(r.json.get("code"), None::<&Value>);
}

/// 10-services_routes_spec.lua:53-160 and 855-924: every field Kong returns, with nulls; the
/// port from the URL's scheme (80, 443); bad URLs are 400.
#[tokio::test(flavor = "multi_thread")]
async fn services_and_routes_carry_kongs_fields() {
    let gw = Gateway::start(&[]).await;
    let r = gw
        .create(
            "/services",
            json!({"protocol": "http", "host": "service.test"}),
        )
        .await;
    let service_fields = [
        "ca_certificates",
        "client_certificate",
        "connect_timeout",
        "created_at",
        "enabled",
        "host",
        "id",
        "name",
        "path",
        "port",
        "protocol",
        "read_timeout",
        "retries",
        "tags",
        "tls_verify",
        "tls_verify_depth",
        "updated_at",
        "write_timeout",
    ];
    let mut keys: Vec<&str> = r
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, service_fields);
    assert_eq!(r.json["name"], Value::Null);
    assert_eq!(r.json["port"], 80);
    assert_eq!(r.json["connect_timeout"], 60000);
    let r = gw
        .create("/services", json!({"url": "http://service.test/"}))
        .await;
    assert_eq!(
        (r.json["port"].clone(), r.json["path"].clone()),
        (json!(80), json!("/"))
    );
    let r = gw
        .create("/services", json!({"url": "https://service.test/"}))
        .await;
    assert_eq!(
        (r.json["protocol"].clone(), r.json["port"].clone()),
        (json!("https"), json!(443))
    );
    for url in ["", " "] {
        let r = send(
            "POST",
            &gw.admin_url("/services"),
            &[],
            json_body(json!({"url": url})),
        )
        .await;
        assert_eq!(r.status, 400, "{url:?}");
    }
    let r = send(
        "POST",
        &gw.admin_url("/services"),
        &[],
        json_body(json!({})),
    )
    .await;
    assert_eq!(r.json["fields"], json!({"host": "required field missing"}));
    // 09-routes_routes_spec.lua: routes carry sources and destinations (null on HTTP routes).
    let r = gw.create("/routes", json!({"paths": ["/x"]})).await;
    for field in ["sources", "destinations", "snis", "headers", "service"] {
        assert_eq!(r.json.get(field), Some(&Value::Null), "{field}");
    }
    // 09-routes_routes_spec.lua:312-350: a route that can match nothing, by its protocols.
    let expect = |protocol: &str, names: &str| {
        let m = format!("must set one of {names} when 'protocols' is '{protocol}'");
        json!({"code": 2, "name": "schema violation", "message": format!("schema violation ({m})"),
               "fields": {"@entity": [m]}})
    };
    let all = "'methods', 'hosts', 'headers', 'paths', 'snis'";
    for body in [json!({}), json!({"protocols": ["https"]})] {
        let r = send("POST", &gw.admin_url("/routes"), &[], json_body(body)).await;
        assert_eq!((r.status, r.json.clone()), (400, expect("https", all)));
    }
    let only_http = json!({"protocols": ["http"], "snis": ["a.test"]});
    let r = send("POST", &gw.admin_url("/routes"), &[], json_body(only_http)).await;
    assert_eq!(
        r.json,
        expect("http", "'methods', 'hosts', 'headers', 'paths'")
    );
    let sources = json!({"paths": ["/y"], "sources": [{"ip": "10.0.0.1"}]});
    let r = send("POST", &gw.admin_url("/routes"), &[], json_body(sources)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["fields"]["sources"],
        "cannot set 'sources' when 'protocols' is 'http' or 'https'"
    );
}

/// 10-services_routes_spec.lua:162-237 (pages, `next` carrying `size`, no `offset` on the last
/// page), 15-off_spec.lua:133-153 (bad offsets), 14-tags_spec.lua:50-170 (tag filters and
/// their errors), 03-consumers_routes_spec.lua:251-290 (`custom_id`).
#[tokio::test(flavor = "multi_thread")]
async fn lists_page_filter_and_refuse_as_kong() {
    let gw = Gateway::start(&[]).await;
    for i in 1..=10 {
        let tags = json!(["corp_ a", format!("consumer_ {}", i % 2), "🦍"]);
        let c =
            json!({"username": format!("user-{i}"), "custom_id": format!("c-{i}"), "tags": tags});
        gw.create("/consumers", c).await;
    }
    let get = |path: &str| {
        let url = gw.admin_url(path);
        async move { send("GET", &url, &[], None).await }
    };
    let mut seen = Vec::new();
    let mut path = "/consumers?size=3".to_string();
    for page in 0..4 {
        let r = get(&path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let data = r.json["data"].as_array().unwrap();
        assert_eq!(data.len(), if page < 3 { 3 } else { 1 });
        seen.extend(data.iter().map(|c| c["username"].clone()));
        if page < 3 {
            let next = r.json["next"].as_str().unwrap();
            assert!(next.ends_with("&size=3"), "{next}");
            assert!(r.json["offset"].is_string());
            path = next.to_string();
        } else {
            assert_eq!(r.json["next"], Value::Null);
            assert_eq!(r.json.get("offset"), None, "no offset on the last page");
        }
    }
    seen.sort_by_key(|v| v.to_string());
    seen.dedup();
    assert_eq!(seen.len(), 10);
    let r = get("/consumers?offset=x").await;
    assert_eq!(
        r.json,
        json!({"code": 7, "name": "invalid offset", "message": "'x' is not a valid offset: bad base64 encoding"})
    );
    let r = get("/consumers?size=0").await;
    assert_eq!((r.status, r.json["code"].clone()), (400, json!(9)));
    let count = |r: &Resp| r.json["data"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(&get("/consumers?tags=corp_%20a,consumer_%201").await),
        5
    );
    assert_eq!(
        count(&get("/consumers?tags=consumer_%201/consumer_%200").await),
        10
    );
    assert_eq!(
        count(&get("/consumers?tags=corpXa").await),
        0,
        "`_` is no wildcard"
    );
    assert_eq!(count(&get("/consumers?tags=%F0%9F%A6%8D").await), 10);
    let r = get("/consumers?tags=").await;
    assert_eq!(r.json["message"], "invalid option (tags: cannot be null)");
    let r = get("/consumers?tags=a,b/c").await;
    assert_eq!(
        r.json["message"],
        "invalid option (tags: invalid filter syntax)"
    );
    let r = get("/consumers?custom_id=c-7").await;
    assert_eq!(r.json["data"][0]["username"], "user-7");
    assert_eq!(r.json["next"], Value::Null);
    assert_eq!(count(&get("/consumers?custom_id=does-not-exist").await), 0);
    let r = get("/consumers?custom_id=").await;
    assert_eq!(
        r.json,
        json!({"message": "custom_id must be an unempty string"})
    );
}

/// 03-consumers_routes_spec.lua:95-133 (409 with the unique key in `fields`),
/// 09-routes_routes_spec.lua:396-416 (a service named by a name nothing has: code 13), and a
/// reference by an unknown id (code 4, kong/db/errors.lua foreign_key_violation_invalid_reference).
#[tokio::test(flavor = "multi_thread")]
async fn conflicts_and_foreign_keys_in_kongs_shapes() {
    let gw = Gateway::start(&[]).await;
    gw.create(
        "/consumers",
        json!({"username": "slow_user", "custom_id": "c1"}),
    )
    .await;
    let post = |path: &str, body: Value| {
        let url = gw.admin_url(path);
        async move { send("POST", &url, &[], json_body(body)).await }
    };
    let r = post("/consumers", json!({"username": "slow_user"})).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json,
        json!({"code": 5, "name": "unique constraint violation",
               "message": "UNIQUE violation detected on '{username=\"slow_user\"}'",
               "fields": {"username": "slow_user"}})
    );
    let r = post("/consumers", json!({"username": "tom", "custom_id": "c1"})).await;
    assert_eq!(
        r.json["message"],
        "UNIQUE violation detected on '{custom_id=\"c1\"}'"
    );
    assert_eq!(r.json["fields"], json!({"custom_id": "c1"}));
    let r = post(
        "/routes",
        json!({"methods": ["GET"], "service": {"name": "non-existing"}}),
    )
    .await;
    assert_eq!(r.status, 400);
    let why = "the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity";
    assert_eq!(
        r.json,
        json!({"code": 13, "name": "foreign keys unresolved",
               "message": format!("foreign key unresolved (service.name: {why})"),
               "fields": {"service": {"name": why}}})
    );
    let id = "0855b320-0dd2-547d-891d-601e9b38647f";
    let r = post(
        "/routes",
        json!({"methods": ["GET"], "service": {"id": id}}),
    )
    .await;
    assert_eq!(r.json["code"], 4);
    assert_eq!(
        r.json["message"],
        format!(
            "the foreign key '{{id=\"{id}\"}}' does not reference an existing 'services' entity."
        )
    );
    // 09-routes_routes_spec.lua:1808: a new entity given a taken id (it was a 503 "database
    // error" before), nothing stored.
    let route = gw
        .create("/routes", json!({"name": "r1", "paths": ["/r1"]}))
        .await;
    let plugin = gw
        .create(
            &format!("/routes/{}/plugins", route.json["id"].as_str().unwrap()),
            json!({"name": "basic-auth"}),
        )
        .await;
    let pid = plugin.json["id"].as_str().unwrap();
    let r = post("/routes/r1/plugins", json!({"name": "key-auth", "id": pid})).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json,
        json!({"code": 3, "name": "primary key violation", "fields": {"id": pid},
               "message": format!("primary key violation on key '{{id=\"{pid}\"}}'")})
    );
    let r = send("GET", &gw.admin_url(&format!("/plugins/{pid}")), &[], None).await;
    assert_eq!(r.json["name"], "basic-auth");
}

/// kong/api/routes/kong.lua (`/schemas/...`) and plugins.lua (`/plugins/enabled`): schemas
/// from the definitions that validate, validation without storing, the plugins this build has.
#[tokio::test(flavor = "multi_thread")]
async fn schemas_and_enabled_plugins() {
    let gw = Gateway::start(&[]).await;
    let get = |path: &str| {
        let url = gw.admin_url(path);
        async move { send("GET", &url, &[], None).await }
    };
    let r = get("/schemas/services").await;
    let field = |r: &Resp, name: &str| {
        r.json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|f| f.get(name).cloned())
            .unwrap_or_else(|| panic!("{name} in {}", r.body))
    };
    assert_eq!(field(&r, "port")["default"], 80);
    assert_eq!(field(&r, "host")["required"], true);
    assert_eq!(field(&r, "id")["auto"], true);
    let r = get("/schemas/routes").await;
    assert_eq!(field(&r, "path_handling")["one_of"], json!(["v0", "v1"]));
    assert_eq!(field(&r, "strip_path")["default"], true);
    let r = get("/schemas/plugins/key-auth").await;
    let config = field(&r, "config");
    let key_names = config["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("key_names").cloned())
        .unwrap();
    assert_eq!(key_names["default"], json!(["apikey"]));
    let r = get("/schemas/plugins/syslog").await;
    assert_eq!(
        (r.status, r.json.clone()),
        (404, json!({"message": "No plugin named 'syslog'"}))
    );
    let r = get("/schemas/nope").await;
    assert_eq!(r.json, json!({"message": "No entity named 'nope'"}));
    let validate = |path: &str, body: Value| {
        let url = gw.admin_url(path);
        async move { send("POST", &url, &[], json_body(body)).await }
    };
    let r = validate("/schemas/routes/validate", json!({"paths": ["/ok"]})).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!({"message": "schema validation successful"}))
    );
    let r = validate("/schemas/services/validate", json!({"port": "x"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["name"], "schema violation");
    let r = validate(
        "/schemas/plugins/validate",
        json!({"name": "rate-limiting", "config": {}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        get("/services").await.json["data"],
        json!([]),
        "nothing stored"
    );
    let r = get("/plugins/enabled").await;
    let enabled = r.json["enabled_plugins"].as_array().unwrap();
    assert!(enabled.contains(&json!("key-auth")) && enabled.contains(&json!("rate-limiting")));
}

/// 09-key-auth/01-api_spec.lua:123-147 (an expired `ttl` is gone), 173-255 (`ttl` shown),
/// 217-224 and 306-318 (found and changed by the key itself, which stays hashed), 262-275
/// (PUT by key creates it), 560-600 (`/key-auths/{key}/consumer`); 04-plugins_routes_spec.lua
/// 141-260 (a plugin found, created and upserted by `instance_name`).
#[tokio::test(flavor = "multi_thread")]
async fn credentials_by_key_and_plugins_by_instance_name() {
    let gw = Gateway::start(&[]).await;
    let bob = gw.create("/consumers", json!({"username": "bob"})).await;
    gw.create("/consumers/bob/key-auth", json!({"key": "1234"}))
        .await;
    let at = |path: &str| gw.admin_url(path);
    let r = send("GET", &at("/consumers/bob/key-auth/1234"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json.get("key"), None, "the key itself is never read back");
    let r = send("GET", &at("/key-auths/1234/consumer"), &[], None).await;
    assert_eq!(r.json["id"], bob.json["id"]);
    let r = send(
        "PATCH",
        &at("/consumers/bob/key-auth/1234"),
        &[],
        json_body(json!({"key": "4321UPD"})),
    )
    .await;
    assert_eq!((r.status, r.json["key"].clone()), (200, json!("4321UPD")));
    assert_eq!(
        send("GET", &at("/key-auths/1234"), &[], None).await.status,
        404
    );
    let r = send(
        "PUT",
        &at("/consumers/bob/key-auth/5678"),
        &[],
        json_body(json!({})),
    )
    .await;
    assert_eq!((r.status, r.json["key"].clone()), (200, json!("5678")));
    assert_eq!(r.json["consumer"]["id"], bob.json["id"]);
    deleted_and_gone(&gw, "/key-auths/5678").await;
    let r = gw
        .create("/consumers/bob/key-auth", json!({"ttl": 2}))
        .await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let credential = at(&format!("/consumers/bob/key-auth/{id}"));
    let r = send("GET", &credential, &[], None).await;
    let left = r.json["ttl"].as_i64().unwrap();
    assert!((1..=2).contains(&left), "{left}");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = send("GET", &credential, &[], None).await;
    assert_eq!(r.status, 404, "expired");
    let listed = send("GET", &at("/consumers/bob/key-auth"), &[], None).await;
    assert!(listed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["id"] != id.as_str()));

    let service = gw
        .create("/services", json!({"name": "s", "host": "h.test"}))
        .await;
    let body = json!({"name": "key-auth", "service": {"id": service.json["id"]}, "config": {"key_names": ["testkey"]}});
    let r = send("PUT", &at("/plugins/my-auth"), &[], json_body(body.clone())).await;
    assert_eq!(
        (r.status, r.json["instance_name"].clone()),
        (200, json!("my-auth")),
        "{}",
        r.body
    );
    let plugin_id = r.json["id"].clone();
    let mut changed = body;
    changed["config"]["key_names"] = json!(["testkey2"]);
    let r = send("PUT", &at("/plugins/my-auth"), &[], json_body(changed)).await;
    assert_eq!(r.json["id"], plugin_id, "an upsert keeps the id");
    assert_eq!(r.json["config"]["key_names"], json!(["testkey2"]));
    let r = send("GET", &at("/plugins/my-auth"), &[], None).await;
    assert_eq!(r.json["id"], plugin_id);
    let r = send(
        "POST",
        &at("/plugins"),
        &[],
        json_body(json!({"name": "key-auth", "instance_name": "my-auth"})),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json["fields"], json!({"instance_name": "my-auth"}));
    deleted_and_gone(&gw, "/plugins/my-auth").await;
}

/// 04-plugins_routes_spec.lua:282-430: PATCH by instance_name, a foreign key removed with
/// null, tags null, an invalid config refused without changing the plugin, 404 for an unknown
/// plugin, and DELETE answering 204 whether or not the plugin exists.
#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_patched_and_deleted_as_kong_does() {
    let gw = Gateway::start(&[]).await;
    let service = gw
        .create("/services", json!({"name": "s2", "host": "h.test"}))
        .await;
    let body = json!({"name": "key-auth", "instance_name": "ka", "service": {"id": service.json["id"]},
        "config": {"key_names": ["testkey"]}});
    gw.create("/plugins", body).await;
    let patch = |path: &str, body: Value| {
        let url = gw.admin_url(path);
        async move { send("PATCH", &url, &[], json_body(body)).await }
    };
    let r = patch("/plugins/ka", json!({"enabled": false})).await;
    assert_eq!((r.status, r.json["enabled"].clone()), (200, json!(false)));
    let r = patch("/plugins/ka", json!({"service": null})).await;
    assert_eq!(
        (r.status, r.json["service"].clone()),
        (200, Value::Null),
        "{}",
        r.body
    );
    let r = patch("/plugins/ka", json!({"tags": null})).await;
    assert_eq!(r.status, 200);
    let r = patch("/plugins/ka", json!({"config": "bar"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["fields"]["config"], "expected a record");
    let after = send("GET", &gw.admin_url("/plugins/ka"), &[], None).await;
    assert_eq!(
        after.json["config"]["key_names"],
        json!(["testkey"]),
        "unchanged"
    );
    let missing = "/plugins/00000000-0000-0000-0000-000000000000";
    assert_eq!(patch(missing, json!({"enabled": false})).await.status, 404);
    deleted_and_gone(&gw, "/plugins/ka").await;
    for gone in [missing, "/plugins/ka"] {
        let r = send("DELETE", &gw.admin_url(gone), &[], None).await;
        assert_eq!(r.status, 204, "{gone}");
    }
}

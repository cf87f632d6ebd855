//! docs/openapi.json against the running admin API, both ways: every
//! documented operation is served and answers with a documented status,
//! and documented paths serve no undocumented method.

use postern_e2e::backend::Backend;
use postern_e2e::EdgeBuilder;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[test]
fn the_openapi_document_matches_the_admin_api() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let be = Backend::hello();
    let b = EdgeBuilder::new().tunnel();
    let (cert, key) = b.pki.issue("probe", &["probe.example.org"]);
    let upload =
        serde_json::json!({ "name": "probe", "cert_pem": cert, "key_pem": key }).to_string();
    let edge = b.start();
    let app = |name: &str| {
        format!(
            r#"{{"name": "{name}", "external_url": "http://{name}.example.com/", "internal_url": "http://{}/", "preauth": "passthrough", "cookie": {{"secure": false}}}}"#,
            be.addr
        )
    };
    assert_eq!(edge.admin("POST", "/v1/apps", Some(&app("probe"))).0, 201);
    let (status, token) = edge.admin(
        "POST",
        "/v1/enrollment-tokens",
        Some(r#"{"group": "probe"}"#),
    );
    assert_eq!(status, 201);
    let token_id = token["id"].as_str().unwrap().to_string();
    let dir = postern_e2e::TempDir::new("openapi-connector");
    let (ok, text) = postern_e2e::connector::register(
        edge.tunnel(),
        &edge.enrollment_token("probe"),
        dir.path(),
    );
    assert!(ok, "{text}");
    let (_, list) = edge.admin("GET", "/v1/connectors", None);
    let connector_id = list["connectors"][0]["id"].as_str().unwrap().to_string();

    let paths = doc["paths"].as_object().unwrap();
    let mut ops: Vec<(String, String, &Value)> = Vec::new();
    for (path, item) in paths {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                ops.push((m.to_uppercase(), path.clone(), op));
            }
        }
    }
    // Deleting goes last, so every other operation finds the probe app.
    ops.sort_by_key(|(m, _, _)| m == "DELETE");
    assert!(ops.len() >= 9, "documented operations: {}", ops.len());
    for (method, path, op) in &ops {
        let id = if path.starts_with("/v1/connectors/") {
            &connector_id
        } else {
            &token_id
        };
        let concrete = path.replace("{name}", "probe").replace("{id}", id);
        let body = match (method.as_str(), path.as_str()) {
            ("POST", "/v1/apps") => Some(app("created")),
            ("POST", "/v1/certificates") => Some(upload.clone()),
            ("PUT", _) => Some(app("probe")),
            _ => None,
        };
        let (status, json) = edge.admin(method, &concrete, body.as_deref());
        let documented: Vec<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        assert!(
            documented.contains(&status),
            "{method} {path} answered {status} {json}, documented {documented:?}"
        );
        assert!(
            (200..300).contains(&status),
            "{method} {path} with valid input: {status} {json}"
        );
        let secured = op
            .get("security")
            .is_none_or(|s| s.as_array().is_some_and(|a| !a.is_empty()));
        if secured {
            let (status, _) = edge.admin_call(method, &concrete, body.as_deref(), None);
            assert_eq!(status, 401, "{method} {path} without a token");
            assert!(documented.contains(&401), "{method} {path} documents 401");
        }
    }
    // Nothing undocumented on documented paths.
    edge.admin("POST", "/v1/apps", Some(&app("probe")));
    for (path, item) in paths {
        for m in METHODS {
            if item.get(m).is_none() {
                let (status, _) =
                    edge.admin(&m.to_uppercase(), &path.replace("{name}", "probe"), None);
                assert!(
                    status == 404 || status == 405,
                    "{m} {path} is served ({status}) but not documented"
                );
            }
        }
    }
    assert_eq!(edge.admin("GET", "/v1/undocumented", None).0, 404);

    // Every field of every schema says what it is.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            assert!(
                prop.get("description").is_some() || prop.get("$ref").is_some(),
                "schema {name}: field {field} has no description"
            );
        }
    }
    // The App schema names exactly the fields the API accepts (the API's
    // own refusal of an unknown field lists them).
    let (status, refusal) = edge.admin(
        "POST",
        "/v1/apps",
        Some(r#"{"name": "x", "external_url": "http://x.example.com/", "internal_url": "http://127.0.0.1:9/", "no_such_field": 1}"#),
    );
    assert_eq!(status, 400, "{refusal}");
    let text = refusal.to_string();
    let listed = text
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("the refusal lists the accepted fields: {text}"));
    let mut accepted: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    accepted.sort_unstable();
    let mut documented: Vec<&str> = doc["components"]["schemas"]["App"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    assert_eq!(
        accepted, documented,
        "accepted app fields vs documented ones"
    );
}

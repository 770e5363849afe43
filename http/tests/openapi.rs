//! The OpenAPI document cannot drift: the committed `docs/openapi.json` is what the code
//! generates, and the documented routes are the router's routes.
//!
//! After changing the API, regenerate the committed file with
//! `UPDATE_OPENAPI=1 cargo test -p messaging-http --test openapi`.

use messaging_http::openapi::{document_json, routes};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let generated = document_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the generated document; regenerate it with \
         UPDATE_OPENAPI=1 cargo test -p messaging-http --test openapi"
    );
}

/// `(METHOD, path)` of every `.route("path", method(...)...)` of the router's source, as
/// scripts/check_template.py reads them too.
fn router_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/routes.rs");
    let mut routes = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        // The arguments of this `.route(`: up to its matching parenthesis.
        let mut depth = 1;
        let end = chunk
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .unwrap_or(chunk.len());
        let arguments = &chunk[..end];
        let Some(path) = arguments
            .trim_start()
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = arguments
                .match_indices(&format!("{method}("))
                .any(|(i, _)| !arguments[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
            if called {
                routes.insert((method.to_ascii_uppercase(), path.to_string()));
            }
        }
    }
    routes
}

#[test]
fn every_route_of_the_router_is_documented_and_nothing_else() {
    let router = router_routes();
    assert!(router.len() >= 12, "parsed {router:?}");
    let documented: BTreeSet<(String, String)> = routes().into_iter().collect();
    assert_eq!(documented, router);
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc: serde_json::Value = serde_json::from_str(document_json()).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/revoke-token"]["post"].is_object());
}

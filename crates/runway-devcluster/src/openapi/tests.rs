use serde_json::Value;

use super::schema::Schemas;
use super::*;
use crate::validate::Kind;

#[test]
fn discovery_names_every_document_with_its_hash() {
    let discovery: Value = serde_json::from_slice(&document("").unwrap()).unwrap();
    for (gv, _) in GROUP_VERSIONS {
        let url = discovery["paths"][gv]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let (path, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(path, format!("/openapi/v3/{gv}"));
        assert_eq!(hash.len(), 128, "{url}");
        assert!(document(gv).is_some());
    }
    assert!(document("apis/apps/v1").is_none());
}

#[test]
fn every_patch_declares_field_validation_and_its_kind() {
    // What kubectl 1.32 checks before it leaves validation to the server.
    for (gv, doc) in GROUP_VERSIONS {
        let doc: Value = serde_json::from_slice(doc).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let patches: Vec<&Value> = paths.values().filter_map(|p| p.get("patch")).collect();
        assert!(!patches.is_empty(), "{gv}");
        for op in patches {
            let params = op["parameters"].as_array().unwrap();
            assert!(params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
            assert!(op["x-kubernetes-group-version-kind"].is_object(), "{op}");
            assert!(op["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_some());
        }
    }
}

#[test]
fn every_served_kind_has_a_schema_with_its_group_version_kind() {
    let schemas = Schemas::get().unwrap();
    for kind in [
        Kind::Namespace,
        Kind::Pod,
        Kind::Job,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Event,
        Kind::ServiceAccount,
    ] {
        let schema = schemas.of_kind(kind).unwrap();
        let gvks = schema["x-kubernetes-group-version-kind"]
            .as_array()
            .unwrap();
        assert!(
            gvks.iter().any(|g| g["kind"] == kind.kind_name()),
            "{kind:?}"
        );
    }
    let job = schemas.of_kind(Kind::Job).unwrap();
    let spec = schemas.resolve(&job["properties"]["spec"]);
    assert!(spec["properties"].get("backoffLimit").is_some());
}

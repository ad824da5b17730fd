//! Discovery and the OpenAPI v3 documents, as kubectl fetches them.

use serde_json::Value;

use crate::support::{target, WAIT};

async fn get(client: &kube::Client, path: &str) -> Result<String, kube::Error> {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    tokio::time::timeout(WAIT, client.request_text(request))
        .await
        .unwrap()
}

#[tokio::test]
async fn openapi_v3_documents_are_served_where_discovery_points() {
    let t = target("conf-openapi").await;
    let discovery: Value =
        serde_json::from_str(&get(&t.client, "/openapi/v3").await.unwrap()).unwrap();
    for gv in ["api/v1", "apis/batch/v1"] {
        // kubectl fetches the URL as given, hash and all.
        let url = discovery["paths"][gv]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
        let doc: Value = serde_json::from_str(&get(&t.client, url).await.unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{gv}");
        assert!(doc["components"]["schemas"].is_object(), "{gv}");
    }
    let batch: Value =
        serde_json::from_str(&get(&t.client, "/openapi/v3/apis/batch/v1").await.unwrap()).unwrap();
    let patch = &batch["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "batch", "kind": "Job", "version": "v1"})
    );
    if t.dev.is_some() {
        // Not served: kubectl would ask it for protobuf, and needs it only
        // when the v3 documents lack fieldValidation.
        let err = get(&t.client, "/openapi/v2").await.unwrap_err();
        let kube::Error::Api(status) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(status.code, 404);
    }
    t.finish().await;
}

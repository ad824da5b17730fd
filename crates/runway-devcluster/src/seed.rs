//! The objects the seed deployment (a Dagster 1.1.9 Helm release) creates
//! beside its run Jobs, for tests and benchmarks that launch its runs.

use serde_json::{json, Value};

/// The seed release's namespace.
pub const NS: &str = "dagster-system";

/// The objects the seed deployment's run Job refers to, as (API path,
/// body) pairs in creation order: its namespace, service accounts, config
/// maps and the Postgres password Secret.
pub fn seed_prerequisites() -> Vec<(String, Value)> {
    let mut out = vec![(
        "/api/v1/namespaces".to_owned(),
        json!({"metadata": {"name": NS}}),
    )];
    for sa in [
        "dagster",
        "dagster-dagster-user-deployments-user-deployments",
    ] {
        out.push((
            format!("/api/v1/namespaces/{NS}/serviceaccounts"),
            json!({"metadata": {"name": sa}}),
        ));
    }
    for cm in [
        "dagster-pipeline-env",
        "dagster-dagster-user-deployments-k8s-example-user-code-1-user-env",
    ] {
        out.push((
            format!("/api/v1/namespaces/{NS}/configmaps"),
            json!({"metadata": {"name": cm}, "data": {"A": "1"}}),
        ));
    }
    out.push((
        format!("/api/v1/namespaces/{NS}/secrets"),
        json!({"metadata": {"name": "dagster-postgresql-secret"},
               "stringData": {"postgresql-password": "pw"}}),
    ));
    out
}

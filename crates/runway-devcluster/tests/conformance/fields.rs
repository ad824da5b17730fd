//! Unknown fields under `fieldValidation`, and server-side apply, through
//! kube-rs and raw requests.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams, ValidationDirective};
use serde_json::{json, Value};

use runway_devcluster::validate::fields::take_unknown;
use runway_devcluster::validate::Kind;

use crate::support::{
    api_code, dev_target, seed_job, target, test_config, wait_for_job, Target, WAIT,
};

/// POSTs a Job body with `query` added to the collection URL.
async fn post(t: &Target, body: &Value, query: &str) -> Result<String, kube::Error> {
    let path = format!("/apis/batch/v1/namespaces/{}/jobs?{query}", t.ns);
    let request = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .unwrap();
    tokio::time::timeout(WAIT, t.client.request_text(request))
        .await
        .unwrap()
}

#[tokio::test]
async fn unknown_fields_are_refused_under_strict_and_dropped_otherwise() {
    let t = target("conf-fields").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let mut body = serde_json::to_value(seed_job("strict", "true")).unwrap();
    body["spec"]["bogusField"] = json!(1);

    let err = post(&t, &body, "fieldValidation=Strict").await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "Job in version \"v1\" cannot be handled as a Job: strict decoding error: \
         unknown field \"spec.bogusField\""
    );
    assert_eq!(
        api_code(&jobs.get("strict").await.unwrap_err()),
        Some((404, "NotFound".into()))
    );

    // Warn, the default, stores the Job without the field.
    post(&t, &body, "").await.unwrap();
    let stored = serde_json::to_value(jobs.get("strict").await.unwrap()).unwrap();
    assert_eq!(stored["spec"].get("bogusField"), None);

    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}, "bogus": true}}));
    let err = jobs.patch("strict", &strict, &patch).await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            400,
            "strict decoding error: unknown field \"metadata.bogus\""
        )
    );
    t.finish().await;
}

#[tokio::test]
async fn server_side_apply_creates_then_updates() {
    let t = target("conf-apply").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    let mut job = seed_job("applied", "true");
    job.metadata.labels = Some([("app".to_owned(), "one".to_owned())].into());
    let params = PatchParams::apply("conformance");
    let created = jobs
        .patch("applied", &params, &Patch::Apply(&job))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    job.metadata.labels = Some([("app".to_owned(), "two".to_owned())].into());
    let updated = jobs
        .patch("applied", &params, &Patch::Apply(&job))
        .await
        .unwrap();
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    assert_eq!(updated.metadata.labels.unwrap()["app"], "two");

    // An apply without a field manager is refused, as the real server does.
    let err = jobs
        .patch("applied", &PatchParams::default(), &Patch::Apply(&job))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((422, "Invalid".into())));
    t.finish().await;
}

/// Everything the dev cluster itself writes (defaults, statuses, events,
/// a Job run to completion and a pod's conditions) is declared by the
/// schema it serves: strict clients never meet a field kubectl would
/// refuse.
#[tokio::test]
async fn everything_stored_is_declared_by_the_schema() {
    let t = dev_target(test_config(), "conf-declared").await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), &t.ns);
    jobs.create(&PostParams::default(), &seed_job("declared", "echo hi"))
        .await
        .unwrap();
    wait_for_job(&jobs, "declared", "Complete").await;
    let kinds = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Job,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Event,
        Kind::ServiceAccount,
    ];
    let dev = t.dev.as_ref().unwrap();
    let (lists, _) = dev.cluster().snapshot_and_subscribe(&kinds);
    for (kind, objects) in kinds.into_iter().zip(lists) {
        for obj in objects {
            let unknown = take_unknown(kind, &mut obj.value());
            assert!(unknown.is_empty(), "{kind:?}: {:?}", unknown.paths());
        }
    }
    t.finish().await;
}

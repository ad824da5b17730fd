use serde_json::{json, Value};

use super::*;
use crate::k8s::config::UserConfig;

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

fn target(version: &str) -> &'static Target {
    static NEWEST: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    static SEED: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    let cell = if version == "1.1.9" { &SEED } else { &NEWEST };
    cell.get_or_init(|| Target::parse(version).unwrap())
}

fn request<'a>(jc: &'a JobConfig, user: &'a UserConfig) -> JobRequest<'a> {
    JobRequest {
        target: target("1.13.27"),
        job_config: jc,
        args: vec!["dagster".into(), "api".into()],
        job_name: "dagster-run-abc",
        pod_name: "dagster-run-abc",
        user: user.clone(),
        component: "run_worker",
        labels: vec![("dagster/job".into(), "my job!".into())],
        env_vars: vec![env_var("DAGSTER_RUN_JOB_NAME", "my job!")],
    }
}

#[test]
fn defaults_and_env_order() {
    let jc = JobConfig {
        job_image: Some("img".into()),
        dagster_home: Some("/home".into()),
        postgres_password_secret: Some("pg".into()),
        env_config_maps: vec!["cm".into()],
        env_secrets: vec!["sec".into()],
        env_vars: vec!["K=V".into()],
        ..JobConfig::default()
    };
    let mut user = UserConfig::default();
    user.set_raw(
        Section::ContainerConfig,
        json!({"env": [{"name": "U", "value": "u"}], "envFrom": [{"secretRef": {"name": "s2"}}],
               "args": ["ignored"], "command": ["/bin/sh"]})
        .as_object()
        .unwrap(),
        "t",
    )
    .unwrap();
    let job = build_job(request(&jc, &user), &NoEnv).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let names: Vec<_> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("DAGSTER_RUN_JOB_NAME"),
            json!("DAGSTER_HOME"),
            json!("DAGSTER_PG_PASSWORD"),
            json!("K"),
            json!("U")
        ]
    );
    assert_eq!(
        c["envFrom"],
        json!([{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "sec"}},
               {"secretRef": {"name": "s2"}}])
    );
    assert_eq!(c["args"], json!(["dagster", "api"]));
    assert_eq!(c["command"], json!(["/bin/sh"]));
    assert_eq!(c["imagePullPolicy"], json!("Always"));
    assert_eq!(c["resources"], json!({}));
    assert_eq!(job["spec"]["backoffLimit"], json!(0));
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], json!(86400));
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"],
        json!("Never")
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["automountServiceAccountToken"],
        json!(true)
    );
    assert_eq!(job["metadata"]["labels"]["dagster/job"], json!("my-job"));
    assert!(job["spec"]["template"]["spec"]
        .get("schedulerName")
        .is_none());
}

#[test]
fn user_sections_override_and_labels_layer_in_dagster_order() {
    let jc = JobConfig {
        labels: json!({"team": "jc"}).as_object().unwrap().clone(),
        ..JobConfig::default()
    };
    let user = UserConfig::from_dict(
        json!({
            "pod_template_spec_metadata": {"labels": {"team": "pod-user"}},
            "job_metadata": {"labels": {"team": "job-user"}, "annotations": {"a": "b"}},
            "pod_spec_config": {"restartPolicy": "OnFailure", "schedulerName": "s",
                                "containers": [{"name": "side", "image": "busybox"}]},
            "job_spec_config": {"backoffLimit": 2}
        })
        .as_object()
        .unwrap(),
        "t",
    )
    .unwrap();
    let job = build_job(request(&jc, &user), &NoEnv).unwrap();
    // Pods: user labels win; Jobs: the job config's labels win.
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["team"],
        json!("pod-user")
    );
    assert_eq!(job["metadata"]["labels"]["team"], json!("jc"));
    assert_eq!(job["metadata"]["annotations"], json!({"a": "b"}));
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], json!("OnFailure"));
    assert_eq!(spec["schedulerName"], json!("s"));
    assert_eq!(spec["containers"].as_array().unwrap().len(), 2);
    assert_eq!(job["spec"]["backoffLimit"], json!(2));
}

#[test]
fn long_names_are_refused() {
    let jc = JobConfig::default();
    let user = UserConfig::default();
    let mut req = request(&jc, &user);
    let long = format!("dagster-run-{}", "x".repeat(60));
    req.job_name = &long;
    let err = build_job(req, &NoEnv).unwrap_err();
    assert!(
        err.to_string().contains("cannot be longer than 63"),
        "{err}"
    );
    let _ = Value::Null;
}

/// The seed release writes its own values over the user's for the container
/// name, pull policy, pull secrets and restart policy, writes no automount
/// field of its own, and lets the Job config's labels beat the user's.
#[test]
fn the_seed_release_forces_its_fields() {
    let jc = JobConfig {
        job_image: Some("img".into()),
        image_pull_policy: Some("IfNotPresent".into()),
        image_pull_secrets: vec![json!({"name": "launcher-secret"})],
        labels: [("team".to_owned(), json!("launcher"))]
            .into_iter()
            .collect(),
        ..JobConfig::default()
    };
    let mut user = UserConfig::default();
    let raw = |v: Value| v.as_object().unwrap().clone();
    user.set_raw(
        Section::ContainerConfig,
        &raw(json!({"name": "mine", "imagePullPolicy": "Always"})),
        "t",
    )
    .unwrap();
    user.set_raw(
        Section::PodSpecConfig,
        &raw(json!({"restartPolicy": "OnFailure", "imagePullSecrets": [{"name": "tag-secret"}]})),
        "t",
    )
    .unwrap();
    user.set_raw(
        Section::PodTemplateSpecMetadata,
        &raw(json!({"labels": {"team": "tag"}})),
        "t",
    )
    .unwrap();
    let newest = build_job(request(&jc, &user), &NoEnv).unwrap();
    let seed_req = JobRequest {
        target: target("1.1.9"),
        ..request(&jc, &user)
    };
    let seed = build_job(seed_req, &NoEnv).unwrap();
    let pod = |job: &Value, p: &str| job.pointer(&format!("/spec/template/spec{p}")).cloned();
    assert_eq!(pod(&newest, "/containers/0/name"), Some(json!("mine")));
    assert_eq!(pod(&seed, "/containers/0/name"), Some(json!("dagster")));
    assert_eq!(
        pod(&newest, "/containers/0/imagePullPolicy"),
        Some(json!("Always"))
    );
    assert_eq!(
        pod(&seed, "/containers/0/imagePullPolicy"),
        Some(json!("IfNotPresent"))
    );
    assert_eq!(pod(&newest, "/restartPolicy"), Some(json!("OnFailure")));
    assert_eq!(pod(&seed, "/restartPolicy"), Some(json!("Never")));
    assert_eq!(
        pod(&newest, "/imagePullSecrets"),
        Some(json!([{"name": "launcher-secret"}, {"name": "tag-secret"}]))
    );
    assert_eq!(
        pod(&seed, "/imagePullSecrets"),
        Some(json!([{"name": "launcher-secret"}]))
    );
    assert_eq!(
        pod(&newest, "/automountServiceAccountToken"),
        Some(json!(true))
    );
    assert_eq!(pod(&seed, "/automountServiceAccountToken"), None);
    let pod_label = |job: &Value| job.pointer("/spec/template/metadata/labels/team").cloned();
    assert_eq!(pod_label(&newest), Some(json!("tag")));
    assert_eq!(pod_label(&seed), Some(json!("launcher")));
    let version = |job: &Value| {
        job.pointer("/metadata/labels/app.kubernetes.io~1version")
            .cloned()
    };
    assert_eq!(version(&newest), Some(json!("1.13.27")));
    assert_eq!(version(&seed), Some(json!("1.1.9")));
}

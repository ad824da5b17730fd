use serde_json::{json, Value};

use super::*;
use crate::k8s::config::UserConfig;

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

fn request<'a>(jc: &'a JobConfig, user: &'a UserConfig) -> JobRequest<'a> {
    JobRequest {
        job_config: jc,
        args: vec!["dagster".into(), "api".into()],
        job_name: "dagster-run-abc",
        pod_name: "dagster-run-abc",
        user,
        component: "run_worker",
        labels: vec![("dagster/job".into(), "my job!".into())],
        env_vars: vec![("DAGSTER_RUN_JOB_NAME".into(), "my job!".into())],
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
    let job = build_job(&request(&jc, &user), &NoEnv).unwrap();
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
    let job = build_job(&request(&jc, &user), &NoEnv).unwrap();
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
    let err = build_job(&req, &NoEnv).unwrap_err();
    assert!(
        err.to_string().contains("cannot be longer than 63"),
        "{err}"
    );
    let _ = Value::Null;
}

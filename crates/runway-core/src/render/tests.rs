use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn run_case(launcher: Value, run_extra: Value) -> Value {
    let mut run = json!({
        "run_id": "a9671183-4a9e-4afe-982b-1bf0e4afee8f", "job_name": "etl",
        "location_name": "loc", "image": "img:1", "container_context": null, "tags": {},
        "args": ["dagster", "api", "execute_run", "{}"], "resume_attempt": 0
    });
    for (k, v) in run_extra.as_object().unwrap() {
        run[k] = v.clone();
    }
    json!({"kind": "run", "launcher_class": "K8sRunLauncher", "launcher": launcher, "run": run})
}

fn minimal() -> Value {
    json!({"service_account_name": "sa", "instance_config_map": "cm"})
}

#[test]
fn env_sources_resolve_in_arrays_and_missing_ones_name_the_field() {
    let launcher = json!({"service_account_name": {"env": "SA"}, "instance_config_map": "cm",
                          "env_config_maps": [{"env": "CM"}], "env_vars": ["FROM_ENV", "K=V=W"]});
    let e = env(&[
        ("SA", "sa-from-env"),
        ("CM", "cm-from-env"),
        ("FROM_ENV", "x"),
    ]);
    let r = render_case(&run_case(launcher.clone(), json!({})), &e).unwrap();
    let spec = &r.job["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], json!("sa-from-env"));
    let c = &spec["containers"][0];
    assert_eq!(
        c["envFrom"],
        json!([{"configMapRef": {"name": "cm-from-env"}}])
    );
    let env_list = c["env"].as_array().unwrap();
    assert!(env_list.contains(&json!({"name": "FROM_ENV", "value": "x"})));
    assert!(env_list.contains(&json!({"name": "K", "value": "V=W"})));

    let err = render_case(&run_case(launcher, json!({})), &env(&[("SA", "s")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "launcher.env_config_maps[0]: environment variable \"CM\" is not set in the launcher's \
         environment; set it, or give the value literally"
    );
}

#[test]
fn dagster_rejections_are_reproduced() {
    let e = env(&[]);
    let mut both = minimal();
    both["load_incluster_config"] = json!(true);
    both["kubeconfig_file"] = json!("/k");
    assert!(render_case(&run_case(both, json!({})), &e).is_err());

    let mut unknown = minimal();
    unknown["job_imagez"] = json!("x");
    let err = render_case(&run_case(unknown, json!({})), &e).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("launcher.job_imagez: unknown key"),
        "{err}"
    );

    let no_sa = json!({"instance_config_map": "cm"});
    assert!(render_case(&run_case(no_sa, json!({})), &e).is_err());

    let mut celery = run_case(
        json!({"instance_config_map": "cm", "postgres_password_secret": "pg",
                                     "job_image": "x"}),
        json!({}),
    );
    celery["launcher_class"] = json!("CeleryK8sRunLauncher");
    let err = render_case(&celery, &e).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("launcher.job_image: CeleryK8sRunLauncher does not take"));
}

#[test]
fn tag_errors_name_the_tag_and_the_key() {
    let tags = json!({"dagster-k8s/config": "{\"container_config\": {\"resourcez\": {}}}"});
    let err = render_case(&run_case(minimal(), json!({"tags": tags})), &env(&[])).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("tags.\"dagster-k8s/config\".container_config.resourcez: unknown key"),
        "{msg}"
    );
    assert!(msg.contains("resources"), "{msg}");
}

#[test]
fn container_context_then_tags_win_and_namespace_follows() {
    let cc = json!({"env_vars": ["SHARED=1"], "k8s": {"namespace": "team",
        "run_k8s_config": {"pod_spec_config": {"nodeSelector": {"pool": "cc"}}}}});
    let tags = json!({"dagster-k8s/config":
        "{\"pod_spec_config\": {\"node_selector\": {\"pool\": \"tag\"}}}"});
    let mut launcher = minimal();
    launcher["run_k8s_config"] = json!({"pod_spec_config": {"nodeSelector": {"pool": "launcher",
                                                                           "zone": "a"}}});
    let r = render_case(
        &run_case(launcher, json!({"container_context": cc, "tags": tags})),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(r.namespace, "team");
    let spec = &r.job["spec"]["template"]["spec"];
    assert_eq!(spec["nodeSelector"], json!({"pool": "tag", "zone": "a"}));
}

#[test]
fn allowlists_refuse_and_filter() {
    let mut launcher = minimal();
    launcher["only_allow_user_defined_k8s_config_fields"] =
        json!({"container_config": {"env": true}});
    launcher["only_allow_user_defined_env_vars"] = json!(["OK"]);
    let tags = json!({"dagster-k8s/config":
        "{\"container_config\": {\"env\": [{\"name\": \"OK\", \"value\": \"1\"}, {\"name\": \"NO\", \"value\": \"2\"}]}}"});
    let r = render_case(
        &run_case(launcher.clone(), json!({"tags": tags})),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(r.dropped_env_vars, vec!["NO".to_owned()]);
    let env_list = r.job["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env_list
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["name"] != "NO"));

    let bad = json!({"dagster-k8s/config": "{\"pod_spec_config\": {\"hostNetwork\": true}}"});
    let err = render_case(&run_case(launcher, json!({"tags": bad})), &env(&[])).unwrap_err();
    assert!(
        err.to_string().contains("pod_spec_config.host_network"),
        "{err}"
    );
}

#[test]
fn resume_attempt_suffixes_the_job_name_and_no_image_is_an_error() {
    let r = render_case(
        &run_case(minimal(), json!({"resume_attempt": 2})),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(
        r.job["metadata"]["name"],
        json!("dagster-run-a9671183-4a9e-4afe-982b-1bf0e4afee8f-2")
    );
    let err = render_case(&run_case(minimal(), json!({"image": null})), &env(&[])).unwrap_err();
    assert!(err.to_string().starts_with("run.image: no image"), "{err}");
}

#[test]
fn seed_resources_without_limits_or_requests_say_what_was_meant() {
    let mut launcher = minimal();
    launcher["run_k8s_config"] =
        json!({"container_config": {"resources": {"cpu": "100m", "memory": "128Mi"}}});
    let err = render_case(&run_case(launcher, json!({})), &env(&[])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("launcher.run_k8s_config.container_config.resources.cpu: unknown key"));
    assert!(
        msg.contains("expected one of: claims, limits, requests"),
        "{msg}"
    );
}

mod cache;
mod versions;

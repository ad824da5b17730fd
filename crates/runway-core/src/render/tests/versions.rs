//! The same case rendered as different Dagster releases build it.

use super::*;

fn as_version(mut case: Value, version: &str) -> Value {
    case["dagster_version"] = json!(version);
    case
}

/// Three layers that 1.1.9 and 1.13 combine differently: the seed merges
/// each section SHALLOW (the tag's tolerations and resources replace the
/// lower layers'), lets the launcher's labels win, takes the run_k8s_config
/// resources over the code location's `resources` field, and stamps its own
/// version without a code-location label or automount field.
#[test]
fn the_seed_merges_shallow_and_the_newest_deep() {
    let launcher = json!({
        "service_account_name": "sa", "instance_config_map": "cm",
        "labels": {"team": "launcher"},
        "run_k8s_config": {
            "container_config": {"resources": {"limits": {"cpu": "100m"}}},
            "pod_spec_config": {"tolerations": [{"key": "launcher", "operator": "Exists"}]}
        }
    });
    let tag = json!({
        "pod_spec_config": {"tolerations": [{"key": "tag", "operator": "Exists"}]},
        "pod_template_spec_metadata": {"labels": {"team": "tag"}}
    });
    let run = json!({
        "container_context": {"k8s": {"resources": {"limits": {"memory": "1Gi"}}}},
        "tags": {"dagster-k8s/config": tag.to_string()}
    });
    let case = run_case(launcher, run);
    let seed = render_case(&as_version(case.clone(), "1.1.9"), &env(&[]))
        .unwrap()
        .job;
    let newest = render_case(&case, &env(&[])).unwrap().job;
    let spec = |j: &Value| j["spec"]["template"]["spec"].clone();
    assert_eq!(
        spec(&seed)["tolerations"],
        json!([{"key": "tag", "operator": "Exists"}])
    );
    assert_eq!(
        spec(&newest)["tolerations"],
        json!([{"key": "launcher", "operator": "Exists"}, {"key": "tag", "operator": "Exists"}])
    );
    assert_eq!(
        spec(&seed)["containers"][0]["resources"],
        json!({"limits": {"cpu": "100m"}})
    );
    assert_eq!(
        spec(&newest)["containers"][0]["resources"],
        json!({"limits": {"cpu": "100m", "memory": "1Gi"}})
    );
    let labels = |j: &Value| j["spec"]["template"]["metadata"]["labels"].clone();
    assert_eq!(labels(&seed)["team"], json!("launcher"));
    assert_eq!(labels(&newest)["team"], json!("tag"));
    assert_eq!(labels(&seed)["app.kubernetes.io/version"], json!("1.1.9"));
    assert_eq!(labels(&seed).get("dagster/code-location"), None);
    assert_eq!(labels(&newest)["dagster/code-location"], json!("loc"));
    assert_eq!(spec(&seed).get("automountServiceAccountToken"), None);
}

/// Keys a release does not know are refused with the release that brought
/// them, and the seed wants its own image for the run, not a tag's.
#[test]
fn each_release_refuses_what_it_does_not_know() {
    let refuse = |case: Value, path: &str, since: &str| {
        let err = render_case(&as_version(case, "1.1.9"), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(path) && err.contains(since) && err.contains("Dagster 1.1.9"),
            "{err}"
        );
    };
    let mut launcher = minimal();
    launcher["only_allow_user_defined_env_vars"] = json!(["A"]);
    refuse(
        run_case(launcher, json!({})),
        "launcher.only_allow_user_defined_env_vars",
        "1.6.3",
    );
    let tag = json!({"merge_behavior": "DEEP"}).to_string();
    refuse(
        run_case(minimal(), json!({"tags": {"dagster-k8s/config": tag}})),
        "tags.\"dagster-k8s/config\".merge_behavior",
        "1.5.3",
    );
    let context = json!({"k8s": {"env": [{"name": "A", "value": "1"}]}});
    refuse(
        run_case(minimal(), json!({"container_context": context})),
        "run.container_context.k8s.env",
        "1.1.21",
    );
    let mut celery = json!({"kind": "run", "launcher_class": "CeleryK8sRunLauncher",
        "launcher": {"instance_config_map": "cm", "postgres_password_secret": "pg",
                     "job_namespace": "ns"},
        "run": run_case(minimal(), json!({}))["run"].clone()});
    refuse(celery.clone(), "launcher.job_namespace", "1.2.2");
    celery["launcher"]
        .as_object_mut()
        .unwrap()
        .remove("job_namespace");
    celery["run"]["run_config"] =
        json!({"execution": {"config": {"per_step_k8s_config": {"op": {}}}}});
    refuse(
        celery,
        "run.run_config.execution.config.per_step_k8s_config",
        "1.7.15",
    );
    let mut camel = minimal();
    camel["security_context"] = json!({"runAsUser": 1000});
    let err = render_case(&as_version(run_case(camel, json!({})), "1.1.9"), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("launcher.security_context.runAsUser") && err.contains("run_as_user"),
        "{err}"
    );

    let tag_image = json!({"container_config": {"image": "tag:1"}}).to_string();
    let no_image = json!({"image": null, "tags": {"dagster-k8s/config": tag_image}});
    let case = run_case(minimal(), no_image);
    assert!(render_case(&case, &env(&[])).is_ok());
    let err = render_case(&as_version(case, "1.1.9"), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("run.image") && err.contains("job_image"),
        "{err}"
    );
}

#[test]
fn versions_outside_the_supported_range_are_refused() {
    let err = render_case(
        &as_version(run_case(minimal(), json!({})), "1.0.17"),
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("dagster_version: Dagster 1.0.17 is not supported")
            && err.contains("1.1.9..=1.13.27"),
        "{err}"
    );
}

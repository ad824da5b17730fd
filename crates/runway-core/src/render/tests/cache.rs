//! A launcher renders many runs: what it keeps between them (its own layer,
//! code locations' contexts, tag configs) never leaks from one run or one
//! environment into another, and a kept render equals a fresh one.

use super::*;

fn prepared(case: &Value, e: &BTreeMap<String, String>) -> PreparedCase {
    prepare_case(case, e).unwrap()
}

fn container_env(r: &Rendered) -> Vec<(String, String)> {
    r.job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                v["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn a_launcher_reads_its_environment_again_when_it_changed() {
    for version in ["1.13.27", "1.1.9"] {
        let mut case = run_case(
            json!({"service_account_name": "sa", "instance_config_map": "cm",
                   "env_vars": ["FROM_ENV"]}),
            json!({}),
        );
        case["dagster_version"] = json!(version);
        let first = env(&[("FROM_ENV", "one")]);
        let second = env(&[("FROM_ENV", "two")]);
        let p = prepared(&case, &first);
        let a = p.render(&first).unwrap();
        let b = p.render(&second).unwrap();
        let again = p.render(&first).unwrap();
        assert!(
            container_env(&a).contains(&("FROM_ENV".into(), "one".into())),
            "{version}"
        );
        assert!(
            container_env(&b).contains(&("FROM_ENV".into(), "two".into())),
            "{version}"
        );
        assert_eq!(a.job, again.job, "{version}");
        assert_eq!(b.job, render_case(&case, &second).unwrap().job, "{version}");
    }
}

#[test]
fn code_locations_are_kept_apart_and_follow_their_environment() {
    let launcher = json!({"service_account_name": "sa", "instance_config_map": "cm"});
    let location = |sa: Value| {
        run_case(
            launcher.clone(),
            json!({"container_context": {"k8s": {"service_account_name": sa,
                   "env_vars": ["LOC_VAR"]}}}),
        )
    };
    let e1 = env(&[("SA", "from-env-1"), ("LOC_VAR", "x")]);
    let e2 = env(&[("SA", "from-env-2"), ("LOC_VAR", "y")]);
    let literal = location(json!("literal-sa"));
    let sourced = location(json!({"env": "SA"}));
    let p = prepared(&literal, &e1);
    let PreparedCase::Run {
        launcher: loaded, ..
    } = &p
    else {
        panic!("a run case")
    };
    let render = |case: &Value, e: &BTreeMap<String, String>| {
        let PreparedCase::Run { case: run, .. } = prepared(case, e) else {
            panic!("a run case")
        };
        render_run_loaded(&run, loaded, e).unwrap()
    };
    let sa = |r: &Rendered| r.job["spec"]["template"]["spec"]["serviceAccountName"].clone();
    for _ in 0..2 {
        assert_eq!(sa(&render(&literal, &e1)), json!("literal-sa"));
        assert_eq!(sa(&render(&sourced, &e1)), json!("from-env-1"));
        assert_eq!(sa(&render(&sourced, &e2)), json!("from-env-2"));
        let env_of = container_env(&render(&sourced, &e2));
        assert!(
            env_of.contains(&("LOC_VAR".into(), "y".into())),
            "{env_of:?}"
        );
    }
    // Every kept render equals a render from nothing.
    assert_eq!(
        render(&sourced, &e2).job,
        render_case(&sourced, &e2).unwrap().job
    );
}

#[test]
fn tag_configs_are_kept_per_text() {
    let launcher = json!({"service_account_name": "sa", "instance_config_map": "cm"});
    let tagged = |cpu: &str| {
        let config = json!({"container_config": {"resources": {"limits": {"cpu": cpu}}}});
        run_case(
            launcher.clone(),
            json!({"tags": {"dagster-k8s/config": config.to_string()}}),
        )
    };
    let e = env(&[]);
    let p = prepared(&tagged("1"), &e);
    let PreparedCase::Run {
        launcher: loaded, ..
    } = &p
    else {
        panic!("a run case")
    };
    let cpu = |case: &Value| {
        let PreparedCase::Run { case: run, .. } = prepared(case, &e) else {
            panic!("a run case")
        };
        let r = render_run_loaded(&run, loaded, &e).unwrap();
        assert_eq!(r.job, render_case(case, &e).unwrap().job);
        r.job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"].clone()
    };
    for _ in 0..2 {
        assert_eq!(cpu(&tagged("1")), json!("1"));
        assert_eq!(cpu(&tagged("2")), json!("2"));
        // No tag at all: nothing kept from the tagged runs.
        assert_eq!(cpu(&run_case(launcher.clone(), json!({}))), Value::Null);
    }
    // A bad tag is refused every time, never served from a kept entry.
    let bad = run_case(
        launcher.clone(),
        json!({"tags": {"dagster-k8s/config": "{\"container_config\": {\"bogus\": 1}}"}}),
    );
    let PreparedCase::Run { case: run, .. } = prepared(&bad, &e) else {
        panic!("a run case")
    };
    for _ in 0..2 {
        let err = render_run_loaded(&run, loaded, &e).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}

/// One launcher renders runs of every mix of layers, in both layerings and
/// with the allowlists: each render equals a fresh one, so a kept merge never
/// answers for another combination, and the allowlist's drops are each run's.
#[test]
fn kept_merges_answer_only_their_own_layers() {
    for version in ["1.13.27", "1.6.5", "1.1.9"] {
        let mut launcher = json!({"service_account_name": "sa", "instance_config_map": "cm"});
        if version != "1.1.9" {
            launcher["only_allow_user_defined_env_vars"] = json!(["KEEP"]);
        }
        let run = |extra: Value| {
            let mut case = run_case(launcher.clone(), extra);
            case["dagster_version"] = json!(version);
            case
        };
        let tag = |cpu: &str, var: &str| {
            let config = json!({"container_config": {
                "resources": {"limits": {"cpu": cpu}},
                "env": [{"name": var, "value": "v"}]}});
            json!({"dagster-k8s/config": config.to_string()})
        };
        let location = json!({"k8s": {"service_account_name": "loc-sa"}});
        let cases = [
            run(json!({"tags": tag("1", "KEEP")})),
            run(json!({"tags": tag("2", "DROP_ME")})),
            run(json!({"tags": tag("1", "KEEP"), "container_context": location})),
            run(json!({})),
            run(json!({"container_context": location})),
        ];
        let e = env(&[]);
        let PreparedCase::Run {
            launcher: loaded, ..
        } = prepared(&cases[0], &e)
        else {
            panic!("a run case")
        };
        for _ in 0..2 {
            for case in &cases {
                let PreparedCase::Run { case: run, .. } = prepared(case, &e) else {
                    panic!("a run case")
                };
                let kept = render_run_loaded(&run, &loaded, &e).unwrap();
                let fresh = render_case(case, &e).unwrap();
                assert_eq!(kept.job, fresh.job, "{version}: {case}");
                assert_eq!(kept.dropped_env_vars, fresh.dropped_env_vars, "{version}");
            }
        }
    }
}

//! Property tests over the case and config parsers: arbitrary JSON, and valid
//! cases with arbitrary JSON spliced into them, must never panic and must
//! always fail with an error that names a field.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use runway_core::render::render_case;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z_./{}\"\\- ]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("env"),
            Just("name"),
            Just("container_config"),
            Just("resources"),
            Just("K8sRunLauncher"),
            Just("run"),
            Just("step"),
            Just("DEEP"),
            Just("SHALLOW"),
            Just("{\"container_config\": {}}"),
            Just("ExecuteStepArgs"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys biased towards the ones the parsers look for, so fuzzing gets deep.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,10}",
        prop::sample::select(vec![
            "kind",
            "launcher_class",
            "launcher",
            "run",
            "task_kwargs",
            "run_id",
            "job_name",
            "args",
            "tags",
            "image",
            "container_context",
            "k8s",
            "env_vars",
            "env",
            "namespace",
            "run_k8s_config",
            "container_config",
            "pod_spec_config",
            "job_spec_config",
            "job_metadata",
            "pod_template_spec_metadata",
            "merge_behavior",
            "labels",
            "volumes",
            "volume_mounts",
            "resources",
            "limits",
            "service_account_name",
            "instance_config_map",
            "execute_step_args_packed",
            "job_config_dict",
            "per_step_k8s_config",
            "user_defined_k8s_config_dict",
            "pipeline_origin",
            "__class__",
            "dagster-k8s/config",
            "containers",
            "securityContext",
            "envFrom",
        ])
        .prop_map(str::to_owned),
    ]
}

fn valid_run() -> Value {
    json!({
        "kind": "run", "launcher_class": "K8sRunLauncher",
        "launcher": {"service_account_name": "sa", "instance_config_map": "cm",
                     "env_vars": ["A=1"], "run_k8s_config": {"container_config": {}}},
        "run": {"run_id": "r", "job_name": "j", "location_name": "l", "image": "i",
                "container_context": {"k8s": {"namespace": "n"}},
                "tags": {"dagster-k8s/config": "{\"container_config\": {}}"},
                "args": ["dagster"], "resume_attempt": 0}
    })
}

fn valid_step() -> Value {
    json!({"kind": "step", "task_kwargs": {
        "execute_step_args_packed": {"__class__": "ExecuteStepArgs", "pipeline_run_id": "r",
            "step_keys_to_execute": ["s"], "pipeline_origin": {"__class__": "PipelinePythonOrigin",
            "pipeline_name": "j", "repository_origin": {"entry_point": ["dagster"],
            "executable_path": "/p"}}},
        "job_config_dict": {"job_image": "i"}, "job_namespace": "default",
        "load_incluster_config": true, "job_wait_timeout": 10.0,
        "per_step_k8s_config": {}, "user_defined_k8s_config_dict": {}}})
}

/// Replaces or inserts the value at a random object position in `base`.
fn splice(base: &mut Value, choice: usize, new_key: &str, new_value: Value) {
    let mut n = 0usize;
    splice_at(base, choice, &mut n, new_key, new_value);
}

fn splice_at(v: &mut Value, target: usize, n: &mut usize, key: &str, new: Value) -> bool {
    if let Value::Object(map) = v {
        if *n == target {
            map.insert(key.to_owned(), new);
            return true;
        }
        *n += 1;
        for child in map.values_mut() {
            if splice_at(child, target, n, key, new.clone()) {
                return true;
            }
        }
    }
    false
}

fn env() -> BTreeMap<String, String> {
    [("A".to_owned(), "x".to_owned())].into_iter().collect()
}

fn assert_names_a_field(result: Result<runway_core::render::Rendered, runway_core::render::Error>) {
    if let Err(err) = result {
        let msg = err.to_string();
        let named = msg.contains("violated the allowed list")
            || msg
                .split_once(": ")
                .is_some_and(|(path, _)| !path.trim().is_empty());
        assert!(named, "error does not name a field: {msg}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        assert_names_a_field(render_case(&v, &env()));
    }

    #[test]
    fn spliced_run_cases_never_panic(choice in 0usize..12, k in key(), v in arb_json()) {
        let mut case = valid_run();
        splice(&mut case, choice, &k, v);
        assert_names_a_field(render_case(&case, &env()));
    }

    #[test]
    fn spliced_step_cases_never_panic(choice in 0usize..10, k in key(), v in arb_json()) {
        let mut case = valid_step();
        splice(&mut case, choice, &k, v);
        assert_names_a_field(render_case(&case, &env()));
    }
}

#[test]
fn the_unspliced_cases_render() {
    render_case(&valid_run(), &env()).unwrap();
    render_case(&valid_step(), &env()).unwrap();
}

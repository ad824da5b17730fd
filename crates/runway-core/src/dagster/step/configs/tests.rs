use std::cell::Cell;

use serde_json::json;

use super::super::StepTask;
use super::*;

fn map(v: Value) -> Map {
    v.as_object().cloned().unwrap_or_default()
}

fn kwargs() -> Map {
    let case: Value = serde_json::from_str(include_str!(
        "../../../../../../tests/fixtures/cases/step_basic.json"
    ))
    .unwrap_or_default();
    map(case["task_kwargs"].clone())
}

/// `converted` with a conversion that counts its calls and gives a Job
/// config naming `image`.
fn convert_counting(
    inputs: Inputs<'_>,
    calls: &Cell<usize>,
    image: &str,
) -> Result<(JobConfig, UserConfig), Error> {
    converted(inputs, |_| {
        calls.set(calls.get() + 1);
        let job_config = JobConfig {
            job_image: Some(image.to_owned()),
            ..JobConfig::default()
        };
        Ok((job_config, UserConfig::default()))
    })
}

fn inputs<'a>(target: &'a Target, jc: &'a Map, per_step_given: bool) -> Inputs<'a> {
    Inputs {
        target,
        job_config_dict: Some(jc),
        user_config_dict: None,
        per_step_given,
        per_step_entry: None,
    }
}

#[test]
fn equal_inputs_are_converted_once_and_answered_alike() {
    let target = Target::newest();
    let jc = map(json!({"job_image": "a"}));
    let calls = Cell::new(0);
    let first = convert_counting(inputs(&target, &jc, false), &calls, "a");
    // A later conversion would name another image: the answer must be the kept one.
    let again = convert_counting(inputs(&target, &jc, false), &calls, "other");
    assert_eq!(calls.get(), 1);
    assert_eq!(
        first.map(|(j, u)| (j.job_image, u)),
        again.map(|(j, u)| (j.job_image, u))
    );
}

#[test]
fn any_differing_input_is_converted_on_its_own() {
    let newest = Target::newest();
    let Ok(old) = Target::parse("1.1.9") else {
        panic!("1.1.9 is a supported release");
    };
    let jc = map(json!({"job_image": "a"}));
    let other_jc = map(json!({"job_image": "b"}));
    let entry = json!({"container_config": {}});
    let calls = Cell::new(0);
    let _ = convert_counting(inputs(&newest, &jc, false), &calls, "a");
    let _ = convert_counting(inputs(&newest, &other_jc, false), &calls, "b");
    let _ = convert_counting(inputs(&old, &jc, false), &calls, "a");
    // A release that refuses `per_step_k8s_config` must see it given.
    let _ = convert_counting(inputs(&newest, &jc, true), &calls, "a");
    let with_entry = Inputs {
        per_step_entry: Some(&entry),
        ..inputs(&newest, &jc, true)
    };
    let _ = convert_counting(with_entry, &calls, "a");
    let with_user = Inputs {
        user_config_dict: Some(&jc),
        ..inputs(&newest, &jc, false)
    };
    let _ = convert_counting(with_user, &calls, "a");
    assert_eq!(calls.get(), 6);
}

#[test]
fn a_failed_conversion_is_not_kept() {
    let target = Target::newest();
    let jc = map(json!({"job_image": 1}));
    let calls = Cell::new(0);
    for _ in 0..2 {
        let got = converted(inputs(&target, &jc, false), |_| {
            calls.set(calls.get() + 1);
            Err(Error::Invalid {
                path: "task_kwargs.job_config_dict.job_image".into(),
                message: "bad".into(),
            })
        });
        assert!(got.is_err());
    }
    assert_eq!(calls.get(), 2);
}

#[test]
fn the_oldest_input_is_dropped_beyond_capacity() {
    let target = Target::newest();
    let dicts: Vec<Map> = (0..=CAPACITY)
        .map(|i| map(json!({ "job_image": i.to_string() })))
        .collect();
    let calls = Cell::new(0);
    for jc in &dicts {
        let _ = convert_counting(inputs(&target, jc, false), &calls, "x");
    }
    assert_eq!(calls.get(), CAPACITY + 1);
    // The newest are still kept; the first was dropped for the last.
    let _ = convert_counting(inputs(&target, &dicts[CAPACITY], false), &calls, "x");
    assert_eq!(calls.get(), CAPACITY + 1);
    let _ = convert_counting(inputs(&target, &dicts[0], false), &calls, "x");
    assert_eq!(calls.get(), CAPACITY + 2);
}

/// Through the task: a kept conversion answers the same kwargs, and a changed
/// Job config, tag config or per-step entry is read anew.
#[test]
fn a_task_reads_its_own_configs_when_others_are_kept() {
    let target = Target::newest();
    let kw = kwargs();
    let task = |kw: &Map| StepTask::from_map(kw, &target).unwrap_or_else(|e| panic!("{e}"));
    let first = task(&kw);
    let again = task(&kw);
    assert_eq!(
        (&first.job_config, &first.user),
        (&again.job_config, &again.user)
    );

    let mut changed = kw.clone();
    changed["job_config_dict"]["job_image"] = json!("example/other:1");
    assert_eq!(
        task(&changed).job_config.job_image.as_deref(),
        Some("example/other:1")
    );
    changed["per_step_k8s_config"]["example_one"]["container_config"]["resources"] =
        json!({"limits": {"cpu": "2"}});
    assert_ne!(task(&changed).user, first.user);
    // The first kwargs still give the first configs.
    assert_eq!(task(&kw).job_config, first.job_config);
}

/// A release without `per_step_k8s_config` refuses it even when the same
/// configs without it were converted before.
#[test]
fn a_refused_per_step_config_is_refused_after_a_kept_conversion() {
    let Ok(old) = Target::parse("1.1.9") else {
        panic!("1.1.9 is a supported release");
    };
    let mut kw = kwargs();
    let per_step = kw.remove("per_step_k8s_config");
    assert!(StepTask::from_map(&kw, &old).is_ok());
    if let Some(per_step) = per_step {
        kw.insert("per_step_k8s_config".into(), per_step);
    }
    let refused = StepTask::from_map(&kw, &old);
    assert!(
        matches!(refused, Err(Error::NotInVersion { .. })),
        "{refused:?}"
    );
}

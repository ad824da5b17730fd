use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::track::debug;
use crate::track::health::{health, HealthMode, HealthQuery};

fn job(name: &str, rv: &str, status: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "resourceVersion": rv,
            "labels": {"dagster/run-id": "r1", "app.kubernetes.io/part-of": "dagster"}},
        "spec": {"template": {"spec": {"containers": [{"name": "dagster", "image": "img:1"}]}}},
        "status": status
    }))
    .unwrap()
}

fn pod(name: &str, job: &str, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "labels": {"job-name": job}},
        "spec": {"containers": [{"name": "dagster"}]},
        "status": status
    }))
    .unwrap()
}

fn waiting(reason: &str, message: &str) -> serde_json::Value {
    json!({"phase": "Pending", "containerStatuses": [{"name": "dagster", "ready": false,
        "restartCount": 0, "image": "img:1", "imageID": "",
        "state": {"waiting": {"reason": reason, "message": message}}}]})
}

fn query<'a>(mode: HealthMode, run_status: &'a str) -> HealthQuery<'a> {
    HealthQuery {
        job_name: "dagster-run-r1",
        run_status,
        mode,
        celery: false,
        synced: true,
        now: 1_000,
        grace_secs: 60,
    }
}

fn ask(index: &Index, q: &HealthQuery<'_>) -> crate::track::Health {
    let found = index
        .find_run_job("r1", q.job_name)
        .map(|(k, j)| (j, index.pods_of(k)));
    health(found, q)
}

#[test]
fn a_job_reports_one_transition_per_status_change() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    index.apply_job(
        &job("dagster-run-r1", "1", json!({"active": 1})),
        0,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, WorkerStatus::Running);
    // The same state again (a relist, a bookmark's neighbour): nothing new.
    index.apply_job(
        &job("dagster-run-r1", "2", json!({"active": 1})),
        0,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    index.apply_job(
        &job(
            "dagster-run-r1",
            "3",
            json!({"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}),
        ),
        0,
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].status, WorkerStatus::Success);
    assert_eq!(out[1].resource_version, "3");
}

#[test]
fn image_pull_errors_fail_the_run_in_diagnose_mode_only() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    index.apply_job(
        &job("dagster-run-r1", "1", json!({"active": 1})),
        0,
        &mut out,
    );
    index.apply_pod(
        &pod(
            "dagster-run-r1-abcde",
            "dagster-run-r1",
            waiting("ErrImagePull", "no such image"),
        ),
        0,
        &mut out,
    );
    let h = ask(&index, &query(HealthMode::Diagnose, "STARTING"));
    assert_eq!(h.status, WorkerStatus::Failed);
    assert_eq!(h.reason, "ErrImagePull");
    assert!(h.message.contains("no such image"), "{}", h.message);
    let compat = ask(&index, &query(HealthMode::DagsterCompat, "STARTING"));
    assert_eq!(compat.status, WorkerStatus::Running);
    assert_eq!(out.last().map(|t| t.status), Some(WorkerStatus::Failed));
}

#[test]
fn dagster_rules_for_finished_jobs() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    index.apply_job(
        &job("dagster-run-r1", "1", json!({"failed": 1})),
        0,
        &mut out,
    );
    let started = ask(&index, &query(HealthMode::DagsterCompat, "STARTED"));
    assert_eq!(
        (started.status, started.message.as_str()),
        (
            WorkerStatus::Failed,
            "Run has not completed but K8s job has no active pods"
        )
    );
    let done = ask(&index, &query(HealthMode::DagsterCompat, "FAILURE"));
    assert_eq!(
        (done.status, done.message.as_str()),
        (WorkerStatus::Failed, "K8s job failed")
    );
    let mut celery = query(HealthMode::DagsterCompat, "STARTED");
    celery.celery = true;
    celery.job_name = "missing";
    assert_eq!(
        ask(&index, &celery).message,
        "K8s job missing could not be found"
    );
    let missing = query(HealthMode::Diagnose, "STARTED");
    let mut missing = missing;
    missing.job_name = "dagster-run-r1-1";
    assert_eq!(ask(&index, &missing).status, WorkerStatus::NotFound);
}

#[test]
fn unschedulable_fails_only_after_the_grace() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    index.apply_job(
        &job("dagster-run-r1", "1", json!({"active": 1})),
        0,
        &mut out,
    );
    index.apply_pod(
        &pod(
            "dagster-run-r1-abcde",
            "dagster-run-r1",
            json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
                "lastTransitionTime": "1970-01-01T00:15:00Z"}]}),
        ),
        900,
        &mut out,
    );
    let early = ask(
        &index,
        &HealthQuery {
            now: 930,
            ..query(HealthMode::Diagnose, "STARTING")
        },
    );
    assert_eq!(early.status, WorkerStatus::Running);
    let late = ask(
        &index,
        &HealthQuery {
            now: 961,
            ..query(HealthMode::Diagnose, "STARTING")
        },
    );
    assert_eq!(
        (late.status, late.reason.as_str()),
        (WorkerStatus::Failed, "Unschedulable")
    );
    let before = out.len();
    index.tick(961, &mut out);
    assert_eq!(out.len(), before + 1);
    assert_eq!(out[before].reason, "Unschedulable");
}

#[test]
fn relists_drop_what_they_do_not_deliver_again() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    index.apply_job(
        &job("dagster-run-r1", "1", json!({"active": 1})),
        0,
        &mut out,
    );
    index.apply_job(
        &job("dagster-run-r1-1", "2", json!({"active": 1})),
        0,
        &mut out,
    );
    out.clear();
    index.begin_relist(Kind::Job, "ns");
    index.apply_job(
        &job("dagster-run-r1-1", "3", json!({"active": 1})),
        0,
        &mut out,
    );
    assert!(
        out.is_empty(),
        "an unchanged Job is not a transition: {out:?}"
    );
    index.end_relist(Kind::Job, "ns", 0, &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].deleted);
    assert_eq!(out[0].job_name, "dagster-run-r1");
    assert_eq!(index.run_jobs("r1").len(), 1);
}

#[test]
fn failed_create_events_explain_a_job_without_pods() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "dagster-run-r1.1", "namespace": "ns"},
        "involvedObject": {"kind": "Job", "name": "dagster-run-r1", "namespace": "ns"},
        "type": "Warning", "reason": "FailedCreate", "count": 3,
        "message": "Error creating: pods \"dagster-run-r1-x\" is forbidden: error looking up service account ns/missing: serviceaccount \"missing\" not found"
    }))
    .unwrap();
    // The event may arrive before the Job does.
    index.apply_event(&event, 0, &mut out);
    index.apply_job(&job("dagster-run-r1", "1", json!({})), 0, &mut out);
    let h = ask(&index, &query(HealthMode::Diagnose, "STARTING"));
    assert_eq!(
        (h.status, h.reason.as_str()),
        (WorkerStatus::Failed, "FailedCreate")
    );
    assert!(h.message.contains("serviceaccount \"missing\" not found"));
    let text = debug::debug_text(
        "dagster-run-r1",
        index.find_run_job("r1", "dagster-run-r1").map(|(_, j)| j),
        &[],
    );
    assert!(text.starts_with("\n\nDebug information for job dagster-run-r1:\n\nJob status:\n - start_time: None\n - active=None"), "{text}");
    assert!(text.contains("\n\nFailedCreate: Error creating"), "{text}");
}

#[test]
fn pod_debug_block_matches_dagster_k8s() {
    let mut index = Index::new(60);
    let mut out = Vec::new();
    index.apply_job(
        &job("dagster-run-r1", "1", json!({"failed": 1})),
        0,
        &mut out,
    );
    index.apply_pod(
        &pod(
            "dagster-run-r1-abcde",
            "dagster-run-r1",
            json!({"phase": "Failed",
            "containerStatuses": [{"name": "dagster", "ready": false, "restartCount": 0,
                "image": "img:1", "imageID": "",
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        ),
        0,
        &mut out,
    );
    let (key, j) = index.find_run_job("r1", "dagster-run-r1").unwrap();
    let pods = index.pods_of(key);
    let (pk, p) = &pods[0];
    assert_eq!(debug::containers_with_logs(p), vec!["dagster"]);
    let logs = HashMap::from([(
        "dagster".to_owned(),
        Ok("2026-12-02T00:00:00Z boom\n".to_owned()),
    )]);
    let block = debug::pod_block(&pk.name, p, true, 25, &logs);
    assert_eq!(
        block,
        "Debug information for pod dagster-run-r1-abcde:\n\nPod status: Failed\nContainer 'dagster' status: Terminated with exit code 1: Error\n\nLast 25 log lines for container 'dagster':\n2026-12-02T00:00:00Z boom\n\nNo warning events for pod."
    );
    let text = debug::debug_text("dagster-run-r1", Some(j), &[(pk.clone(), block)]);
    assert!(text.ends_with("\nFor more information about the failure, try running `kubectl describe pod dagster-run-r1-abcde`, `kubectl logs dagster-run-r1-abcde`, or `kubectl describe job dagster-run-r1` in your cluster."));
}

#[test]
fn current_states_are_paged_in_key_order() {
    let mut ix = Index::new(120);
    let mut out = Vec::new();
    for name in ["d", "b", "e", "a", "c"] {
        ix.apply_job(&job(name, "1", json!({"active": 1})), 0, &mut out);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = ix.current_page(after.as_ref(), 2, 0);
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|t| t.job_name));
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

//! Runway's Celery wire code against fixtures the real celery/kombu 5.7
//! produced (`tools/gen_celery_fixtures.py`; `tests/python` checks they are
//! current): the task messages a Dagster run worker publishes, and the result
//! metas the Redis backend stores.

#![allow(clippy::unwrap_used, clippy::panic)]

use base64::Engine;
use serde_json::Value;

use runway_core::celery::message::{decode, DecodeError, Properties};
use runway_core::celery::result::{result_meta, Outcome, ResultState, TaskError};

fn fixture(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../tests/fixtures/celery/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_messages_dagster_publishes_decode_and_other_serializers_are_refused() {
    for m in fixture("messages.json") {
        let body = base64::engine::general_purpose::STANDARD
            .decode(m["body_base64"].as_str().unwrap())
            .unwrap();
        let props = Properties {
            content_type: m["content_type"].as_str(),
            content_encoding: m["content_encoding"].as_str(),
            correlation_id: m["properties"]["correlation_id"].as_str(),
            reply_to: m["properties"]["reply_to"].as_str(),
            priority: None,
        };
        let headers = m["headers"].as_object().unwrap();
        let decoded = decode(&props, headers, &body, 16 << 20);
        match m["name"].as_str().unwrap() {
            "json" => {
                let t = decoded.unwrap();
                assert_eq!(t.task, "execute_step_k8s_job");
                assert_eq!(t.id, headers["id"].as_str().unwrap());
                assert_eq!(t.root_id.as_deref(), Some(t.id.as_str()));
                assert!(t.args.is_empty());
                let kwargs: Vec<&str> = t.kwargs.keys().map(String::as_str).collect();
                for k in [
                    "execute_step_args_packed",
                    "job_config_dict",
                    "job_namespace",
                    "load_incluster_config",
                    "job_wait_timeout",
                ] {
                    assert!(kwargs.contains(&k), "{k} missing from {kwargs:?}");
                }
                assert_eq!(t.embed["chord"], Value::Null);
                assert_eq!(t.origin.as_deref(), Some("gen4242@runway-fixture"));
                // The kwargs are the step Job builder's input.
                let task = runway_core::dagster::step::StepTask::from_kwargs(
                    &Value::Object(t.kwargs.clone()),
                    &runway_core::dagster::version::Target::newest(),
                );
                assert!(task.is_ok(), "{:?}", task.err());
            }
            other => match decoded {
                Err(DecodeError::ContentType { content_type }) => {
                    assert_eq!(content_type, m["content_type"].as_str().unwrap(), "{other}");
                }
                r => panic!("{other}: expected a refusal, got {r:?}"),
            },
        }
    }
}

#[test]
fn result_metas_are_byte_identical_to_the_redis_backends() {
    for r in fixture("results.json") {
        let stored = r["stored"].as_str().unwrap();
        let date = serde_json::from_str::<Value>(stored).unwrap()["date_done"]
            .as_str()
            .unwrap()
            .to_owned();
        let state = match r["state"].as_str().unwrap() {
            "SUCCESS" => ResultState::Success,
            "FAILURE" => ResultState::Failure,
            "REVOKED" => ResultState::Revoked,
            s => panic!("{s}"),
        };
        let error = r["error"].as_object().map(|e| TaskError {
            exc_type: e["exc_type"].as_str().unwrap().into(),
            exc_message: e["exc_message"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_owned())
                .collect(),
            exc_module: e["exc_module"].as_str().unwrap().into(),
        });
        let outcome = match &error {
            Some(e) => Outcome::Error(e),
            None => Outcome::Value(&r["result"]),
        };
        let ours = result_meta(
            r["task_id"].as_str().unwrap(),
            state,
            &outcome,
            r["traceback"].as_str(),
            &date,
        );
        assert_eq!(ours, stored, "{}", r["name"]);
        if state == ResultState::Revoked {
            assert_eq!(error.unwrap(), TaskError::revoked());
        }
        assert_eq!(r["ttl"], 86400, "result_expires is one day");
    }
}

/// The JSON-serialized task of the fixture, and its body bytes.
fn json_message() -> (Value, Vec<u8>) {
    let m = fixture("messages.json")
        .into_iter()
        .find(|m| m["name"] == "json")
        .unwrap();
    let body = base64::engine::general_purpose::STANDARD
        .decode(m["body_base64"].as_str().unwrap())
        .unwrap();
    (m, body)
}

#[test]
fn kwargsrepr_and_body_are_spelled_as_celery_spells_them() {
    use runway_core::celery::pyval::{saferepr, PyVal};
    let (m, body) = json_message();
    let text = std::str::from_utf8(&body).unwrap();
    let parsed: PyVal = serde_json::from_str(text).unwrap();
    // kombu's json.dumps, key order and all.
    assert_eq!(parsed.dumps(), text);
    let PyVal::List(parts) = &parsed else {
        panic!("body is not a list")
    };
    let kwargsrepr = saferepr(&parts[1], 1024, 3);
    assert_eq!(kwargsrepr, m["headers"]["kwargsrepr"].as_str().unwrap());
    assert_eq!(
        saferepr(&parts[0], 1024, 3)
            .replace('[', "(")
            .replace(']', ")"),
        m["headers"]["argsrepr"].as_str().unwrap()
    );
}

#[test]
fn encoding_reproduces_the_message_dagster_publishes() {
    use runway_core::celery::message::{encode, NewTask};
    use runway_core::celery::pyval::PyVal;
    let (m, body) = json_message();
    let parsed: PyVal = serde_json::from_str(std::str::from_utf8(&body).unwrap()).unwrap();
    let PyVal::List(parts) = parsed else {
        panic!("body is not a list")
    };
    let headers = m["headers"].as_object().unwrap();
    let encoded = encode(&NewTask {
        id: headers["id"].as_str().unwrap(),
        task: "execute_step_k8s_job",
        kwargs: &parts[1],
        origin: headers["origin"].as_str().unwrap(),
        reply_to: "",
        priority: 5,
    });
    assert_eq!(encoded.body.as_bytes(), &body[..]);
    let ours: serde_json::Map<String, Value> = encoded
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_json()))
        .collect();
    assert_eq!(&ours, headers);
    assert_eq!(
        encoded.correlation_id,
        m["properties"]["correlation_id"].as_str().unwrap()
    );
    assert_eq!(encoded.content_type, m["content_type"].as_str().unwrap());
    assert_eq!(
        encoded.content_encoding,
        m["content_encoding"].as_str().unwrap()
    );
}

#[test]
fn step_events_are_read_from_pod_logs_as_the_python_task_reads_them() {
    let path = format!(
        "{}/../../tests/fixtures/celery/step_log.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ours = runway_core::dagster::events::events_from_log(doc["log"].as_str().unwrap());
    let theirs: Vec<&str> = doc["returned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ours, theirs);
}

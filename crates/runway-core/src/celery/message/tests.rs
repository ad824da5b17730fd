use serde_json::json;

use super::*;

fn props() -> Properties<'static> {
    Properties {
        content_type: Some("application/json"),
        content_encoding: Some("utf-8"),
        correlation_id: Some("t-1"),
        reply_to: Some("c6c4e3a1-reply"),
        priority: Some(5),
    }
}

fn headers() -> Map<String, Value> {
    json!({"lang": "py", "task": "execute_step_k8s_job", "id": "t-1", "root_id": "t-1",
           "parent_id": null, "group": null, "retries": 0, "timelimit": [null, null],
           "eta": null, "expires": null, "argsrepr": "()", "kwargsrepr": "{}",
           "origin": "gen1@host", "ignore_result": false})
    .as_object()
    .cloned()
    .unwrap()
}

#[test]
fn a_v2_message_decodes() {
    let body = br#"[[], {"job_namespace": "ns", "load_incluster_config": true}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
    let m = decode(&props(), &headers(), body, 1 << 20).unwrap();
    assert_eq!(m.task, "execute_step_k8s_job");
    assert_eq!(m.id, "t-1");
    assert_eq!(m.kwargs["job_namespace"], "ns");
    assert_eq!(m.priority, Some(5));
    assert_eq!(m.reply_to.as_deref(), Some("c6c4e3a1-reply"));
    assert_eq!(m.time_limit, (None, None));
    assert_eq!(m.embed.len(), 4);
}

#[test]
fn refusals_say_why() {
    let body = br#"[[], {}, {}]"#;
    let pickle = Properties {
        content_type: Some("application/x-python-serialize"),
        content_encoding: Some("binary"),
        ..props()
    };
    let err = decode(&pickle, &headers(), body, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("pickle"), "{err}");
    let mut v1 = headers();
    v1.remove("task");
    assert_eq!(
        decode(&props(), &v1, body, 1 << 20).unwrap_err(),
        DecodeError::NotProtocolV2
    );
    for (bad, what) in [
        (&br#"[[], {}"#[..], "not valid JSON"),
        (&br#"{"task": "x"}"#[..], "expected the protocol v2 body"),
        (&br#"[[], [], {}]"#[..], "kwargs"),
        (&br#"[{}, {}, {}]"#[..], "args"),
        (&br#"[[], {}]"#[..], "list of 2 items"),
        (&b"\xff\xfe"[..], "not UTF-8"),
    ] {
        let err = decode(&props(), &headers(), bad, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains(what), "{err}");
    }
    let err = decode(&props(), &headers(), body, 4).unwrap_err();
    assert_eq!(err, DecodeError::TooLarge { size: 12, limit: 4 });
    let mut bad_retries = headers();
    bad_retries.insert("retries".into(), json!("two"));
    assert!(decode(&props(), &bad_retries, body, 1 << 20)
        .unwrap_err()
        .to_string()
        .starts_with("header retries:"));
    assert_eq!(claimed_id(&headers(), None).as_deref(), Some("t-1"));
}

#[test]
fn eta_and_expires_headers_are_read_as_celery_writes_them() {
    let aware = header_time("2999-01-01T00:00:00.000123+01:00").unwrap();
    assert_eq!(aware.to_string(), "2998-12-31T23:00:00.000123Z");
    let naive = header_time("2000-01-01T00:00:00").unwrap();
    assert_eq!(naive.as_second(), 946_684_800);
    assert!(header_time("tomorrow").is_none());
}

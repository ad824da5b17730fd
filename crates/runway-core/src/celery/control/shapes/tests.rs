use super::*;
use crate::celery::topology::queue_spec;

#[test]
fn queue_info_has_every_key_flower_reads() {
    let q = queue_info(&queue_spec("dagster"));
    for key in [
        "name",
        "exclusive",
        "durable",
        "routing_key",
        "no_ack",
        "alias",
        "queue_arguments",
        "binding_arguments",
        "auto_delete",
    ] {
        assert!(q.get(key).is_some(), "{key}");
    }
    assert_eq!(q["routing_key"], "dagster.#");
    assert_eq!(q["queue_arguments"]["x-max-priority"], 10);
    assert_eq!(q["exchange"]["type"], "direct");
}

#[test]
fn stats_have_the_broker_total_and_pool_dicts_flower_needs() {
    let s = Stats {
        task_name: "execute_step_k8s_job".into(),
        processed: 3,
        pid: 42,
        clock: 7,
        uptime_secs: 9,
        concurrency: 64,
        running: vec!["dagster-step-x".into()],
        broker_url: "amqp://guest:secret@rabbit:5672//".into(),
        heartbeat_secs: 60,
        prefetch_count: 64,
        rusage: Some(Rusage {
            utime: 1.5,
            maxrss: 1000,
            ..Rusage::default()
        }),
    }
    .to_value();
    assert_eq!(s["total"]["execute_step_k8s_job"], 3);
    assert_eq!(s["clock"], "7", "Celery's clock is a string here");
    assert_eq!(s["pool"]["max-concurrency"], 64);
    assert_eq!(s["broker"]["hostname"], "rabbit");
    assert_eq!(s["broker"]["virtual_host"], "/");
    assert!(!s.to_string().contains("secret"), "{s}");
    assert_eq!(s["rusage"]["utime"], 1.5);
}

#[test]
fn broker_urls_parse_and_mask_as_kombu_does() {
    let b = parse_broker_url("amqps://u%40x:p%2Fw@host.example:5671/my%2Fvhost").unwrap();
    assert_eq!(
        (
            b.ssl,
            b.userid.as_str(),
            b.password.as_deref(),
            b.hostname.as_str(),
            b.port,
            b.virtual_host.as_str()
        ),
        (true, "u@x", Some("p/w"), "host.example", 5671, "my/vhost")
    );
    assert_eq!(parse_broker_url("amqp://h").unwrap().port, 5672);
    assert_eq!(
        mask_url("redis://:pw@r:6379/0"),
        "redis://:********@r:6379/0"
    );
    assert_eq!(
        mask_url("amqp://guest:guest@h//"),
        "amqp://guest:********@h//"
    );
    assert_eq!(mask_url("rpc://"), "rpc://");
}

#[test]
fn task_info_is_safe_or_whole() {
    let t = TaskInfo {
        id: "t1".into(),
        name: "execute_step_k8s_job".into(),
        kwargs: Arc::new(Map::from_iter([("job_namespace".to_owned(), json!("ns"))])),
        kwargsrepr: "{'job_namespace': 'ns'}".into(),
        hostname: "runway-a@h".into(),
        time_start: Some(1.5),
        acknowledged: false,
        delivery_info: DeliveryInfo {
            exchange: "".into(),
            routing_key: "dagster".into(),
            priority: Some(5),
            redelivered: false,
        },
        worker_pid: Some(9),
        step_job: Some("dagster-step-abc".into()),
    };
    let safe = t.to_value(true);
    assert_eq!(safe["kwargs"], "{'job_namespace': 'ns'}");
    assert_eq!(safe["args"], "()");
    let whole = t.to_value(false);
    assert_eq!(whole["kwargs"]["job_namespace"], "ns");
    for key in [
        "acknowledged",
        "worker_pid",
        "time_start",
        "delivery_info",
        "hostname",
        "type",
    ] {
        assert!(whole.get(key).is_some(), "{key}");
    }
}

#[test]
fn conf_masks_secrets_and_report_lists_it() {
    let c = Conf {
        broker_url: "amqp://guest:secret@h//".into(),
        result_backend: "redis://:pw@r:6379/0".into(),
        result_expires_secs: 86_400,
        concurrency: 8,
        prefetch_count: 16,
        queues: vec![queue_spec("dagster")],
        task_events: true,
        version: "0.1.0".into(),
    };
    let v = c.to_value();
    assert_eq!(v["worker_prefetch_multiplier"], 2);
    assert_eq!(v["task_queues"][0]["name"], "dagster");
    let report = c.report();
    assert!(report.contains("software -> runway:0.1.0"), "{report}");
    assert!(
        report.contains("broker_url: 'amqp://guest:********@h//'"),
        "{report}"
    );
    assert!(
        !report.contains("secret") && !report.contains(":pw@"),
        "{report}"
    );
}

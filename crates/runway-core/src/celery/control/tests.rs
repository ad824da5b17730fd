use super::*;

#[test]
fn requests_parse_as_kombu_sends_them() {
    // Captured from the celery 5.7 CLI (`inspect ping -d pyw1@rwresearch`).
    let body = br#"{"method": "ping", "arguments": {}, "destination": ["pyw1@rwresearch"], "pattern": null, "matcher": null, "ticket": "88760cfb-f700-445d-a892-c4ffdb83f96a", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "e00dc518-eaa1-311b-89fb-56a14bfc5cb6"}}"#;
    let r = Request::parse(body).unwrap();
    assert_eq!(r.method, "ping");
    assert_eq!(
        r.ticket.as_deref(),
        Some("88760cfb-f700-445d-a892-c4ffdb83f96a")
    );
    assert_eq!(
        r.reply_to,
        Some(ReplyTo {
            exchange: REPLY_EXCHANGE.into(),
            routing_key: "e00dc518-eaa1-311b-89fb-56a14bfc5cb6".into()
        })
    );
    assert!(r.is_for("pyw1@rwresearch"));
    assert!(!r.is_for("runway-a@host"));
    // A cast: no ticket, no reply_to, no destination.
    let cast = Request::parse(br#"{"method": "enable_events", "arguments": {}, "destination": null, "pattern": null, "matcher": null}"#).unwrap();
    assert!(cast.reply_to.is_none() && cast.is_for("anyone@host"));
    assert_eq!(Request::parse(b"{}"), Err(ControlError::NoMethod));
    assert!(matches!(
        Request::parse(b"nope"),
        Err(ControlError::NotJson(_))
    ));
}

#[test]
fn patterns_match_as_fnmatch_and_re_match_do() {
    let with = |pattern: &str, matcher: Option<&str>| Request {
        method: "ping".into(),
        arguments: Map::new(),
        destination: None,
        pattern: Some(pattern.into()),
        matcher: matcher.map(str::to_owned),
        ticket: None,
        reply_to: None,
    };
    assert!(with("runway-*", None).is_for("runway-ab12cd@host"));
    assert!(!with("runway-*", None).is_for("celery@host"));
    assert!(with("w?@h", Some("glob")).is_for("w1@h"));
    assert!(with("[!c]*", None).is_for("runway@h") && !with("[!c]*", None).is_for("celery@h"));
    // re.match: anchored at the start only.
    assert!(with("runway-[0-9a-f]+", Some("pcre")).is_for("runway-ab12@host"));
    assert!(!with("host", Some("pcre")).is_for("runway@host"));
}

#[test]
fn replies_spell_what_celery_spells() {
    assert_eq!(
        String::from_utf8(Request::reply_body("w@h", ok("pong"))).unwrap(),
        r#"{"w@h":{"ok":"pong"}}"#
    );
    assert_eq!(
        unknown_method("no_such_command"),
        error("KeyError('no_such_command')")
    );
    assert_eq!(py_repr("it's"), r#""it's""#);
    assert_eq!(py_repr("a\\b'\""), r#"'a\\b\'"'"#);
    assert_eq!(
        revoked_text(&["a".into(), "b".into()]),
        "tasks {'a', 'b'} flagged as revoked"
    );
    assert_eq!(terminated_text(&[]), "terminate: tasks unknown");
    assert_eq!(terminated_text(&["t1".into()]), "terminate: t1");
}

#[test]
fn revoke_arguments_come_in_every_form() {
    let req = |method: &str, args: Value| Request {
        method: method.into(),
        arguments: args.as_object().cloned().unwrap(),
        destination: None,
        pattern: None,
        matcher: None,
        ticket: None,
        reply_to: None,
    };
    // The CLI: a list and nothing else.
    let r = Revoke::from_request(&req("revoke", json!({"task_id": ["a", "b"]}))).unwrap();
    assert_eq!(
        (r.task_ids.len(), r.terminate, r.signal.as_str()),
        (2, false, "SIGTERM")
    );
    // Flower: one id, terminate as 0/1.
    let r = Revoke::from_request(&req(
        "revoke",
        json!({"task_id": "x", "terminate": 1, "signal": "SIGKILL"}),
    ))
    .unwrap();
    assert_eq!(
        (r.task_ids, r.terminate, r.signal.as_str()),
        (vec!["x".to_owned()], true, "SIGKILL")
    );
    // `terminate SIGTERM id`.
    let r = Revoke::from_request(&req(
        "terminate",
        json!({"signal": "SIGTERM", "task_id": ["t"]}),
    ))
    .unwrap();
    assert!(r.terminate);
    let err = Revoke::from_request(&req("revoke", json!({}))).unwrap_err();
    assert!(
        err.contains("missing 1 required positional argument: 'task_id'"),
        "{err}"
    );
}

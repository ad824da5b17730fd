use serde_json::{json, Map, Value};

use super::*;

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn sel(s: &str) -> LabelSelector {
    LabelSelector::parse(s).unwrap()
}

#[test]
fn label_selector_operators() {
    let l = labels(json!({"app": "dagster", "dagster/run-id": "r1", "tier": "run"}));
    assert!(sel("app=dagster").matches(Some(&l)));
    assert!(sel("app==dagster,tier=run").matches(Some(&l)));
    assert!(!sel("app!=dagster").matches(Some(&l)));
    assert!(sel("tier in (run,step)").matches(Some(&l)));
    assert!(!sel("tier notin (run,step)").matches(Some(&l)));
    assert!(sel("dagster/run-id").matches(Some(&l)));
    assert!(!sel("!dagster/run-id").matches(Some(&l)));
    assert!(sel("!missing").matches(Some(&l)));
    assert!(sel("").matches(None));
    assert!(!sel("app=dagster").matches(None));
}

#[test]
fn bad_label_selectors_are_400() {
    for bad in ["app in run", "a=b=c", "in (x)", "app=(x", "-bad=x"] {
        let err = LabelSelector::parse(bad).err();
        assert_eq!(err.map(|e| e.code), Some(400), "{bad}");
    }
}

#[test]
fn label_selector_object_form() {
    let s = LabelSelector::from_label_selector_object(&json!({
        "matchLabels": {"a": "1"},
        "matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}]
    }));
    let s = s.unwrap();
    assert!(s.matches(Some(&labels(json!({"a": "1", "b": "3"})))));
    assert!(!s.matches(Some(&labels(json!({"a": "1", "b": "4"})))));
}

#[test]
fn field_selectors_for_pods_and_events() {
    let pod =
        json!({"metadata": {"name": "p1", "namespace": "ns"}, "status": {"phase": "Running"}});
    let f = FieldSelector::parse("status.phase=Running,metadata.name=p1", FieldKind::Pod);
    let f = f.unwrap();
    assert!(f.matches(&pod));
    assert_eq!(f.exact_name(), Some("p1"));
    let neg = FieldSelector::parse("status.phase!=Running", FieldKind::Pod).unwrap();
    assert!(!neg.matches(&pod));
    let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"name": "job-1"}});
    let f = FieldSelector::parse("involvedObject.name=job-1", FieldKind::Event).unwrap();
    assert!(f.matches(&ev));
    let err = FieldSelector::parse("spec.bogus=1", FieldKind::Pod).err();
    assert_eq!(err.map(|e| e.code), Some(400));
}

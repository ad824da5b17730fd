//! A container's environment, resolved as the kubelet does: `envFrom`
//! ConfigMaps and Secrets, then `env` values (with `$(VAR)` expansion),
//! field references and key references.

use serde_json::Value;

use crate::api::{ns_name, Cluster};
use crate::validate::Kind;

type Env = Vec<(String, String)>;

/// Resolves a container's environment. An error is a
/// CreateContainerConfigError message.
pub(super) fn resolve_env(cluster: &Cluster, pod: &Value, ctr: &Value) -> Result<Env, String> {
    let (ns, _) = ns_name(pod);
    let mut out = Env::new();
    for from in ctr["envFrom"].as_array().into_iter().flatten() {
        env_from(cluster, &ns, from, &mut out)?;
    }
    for e in ctr["env"].as_array().into_iter().flatten() {
        let Some(k) = e["name"].as_str() else {
            continue;
        };
        let value = match e.get("value") {
            Some(v) => Some(expand(v.as_str().unwrap_or(""), &out)),
            None => value_from(cluster, pod, &ns, &e["valueFrom"])?,
        };
        if let Some(v) = value {
            set(&mut out, k.to_owned(), v);
        }
    }
    Ok(out)
}

/// A later definition of a variable replaces an earlier one.
fn set(out: &mut Env, k: String, v: String) {
    out.retain(|(x, _)| *x != k);
    out.push((k, v));
}

fn kind_word(kind: Kind) -> &'static str {
    if kind == Kind::Secret {
        "secret"
    } else {
        "configmap"
    }
}

/// Every key of one `envFrom` ConfigMap or Secret, with its prefix.
fn env_from(cluster: &Cluster, ns: &str, from: &Value, out: &mut Env) -> Result<(), String> {
    let prefix = from["prefix"].as_str().unwrap_or("");
    let (kind, r) = if from.get("configMapRef").is_some() {
        (Kind::ConfigMap, &from["configMapRef"])
    } else {
        (Kind::Secret, &from["secretRef"])
    };
    let ref_name = r["name"].as_str().unwrap_or("");
    match cluster.get(kind, ns, ref_name) {
        Ok(obj) => {
            for (k, v) in data_of(kind, &obj.value()) {
                set(out, format!("{prefix}{k}"), v);
            }
            Ok(())
        }
        Err(_) if r["optional"] == true => Ok(()),
        Err(_) => Err(format!("{} \"{ref_name}\" not found", kind_word(kind))),
    }
}

/// A `valueFrom`: a field of the pod, or a key of a ConfigMap or Secret
/// (`None`: an optional key that is missing, or no source at all).
fn value_from(
    cluster: &Cluster,
    pod: &Value,
    ns: &str,
    vf: &Value,
) -> Result<Option<String>, String> {
    if let Some(f) = vf["fieldRef"]["fieldPath"].as_str() {
        return field_ref(pod, f).map(Some);
    }
    let (kind, r) = if vf.get("secretKeyRef").is_some() {
        (Kind::Secret, &vf["secretKeyRef"])
    } else if vf.get("configMapKeyRef").is_some() {
        (Kind::ConfigMap, &vf["configMapKeyRef"])
    } else {
        return Ok(None);
    };
    if r.is_null() {
        return Ok(None);
    }
    key_ref(cluster, ns, kind, r)
}

/// The downward API's field paths.
fn field_ref(pod: &Value, path: &str) -> Result<String, String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    Ok(match path {
        "metadata.name" => text(&pod["metadata"]["name"]),
        "metadata.namespace" => text(&pod["metadata"]["namespace"]),
        "metadata.uid" => text(&pod["metadata"]["uid"]),
        "spec.nodeName" => text(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => text(&pod["spec"]["serviceAccountName"]),
        "status.podIP" => text(&pod["status"]["podIP"]),
        "status.hostIP" => text(&pod["status"]["hostIP"]),
        other => {
            if let Some(l) = other
                .strip_prefix("metadata.labels['")
                .and_then(|s| s.strip_suffix("']"))
            {
                text(&pod["metadata"]["labels"][l])
            } else if let Some(a) = other
                .strip_prefix("metadata.annotations['")
                .and_then(|s| s.strip_suffix("']"))
            {
                text(&pod["metadata"]["annotations"][a])
            } else {
                return Err(format!("unsupported fieldPath {other}"));
            }
        }
    })
}

/// One key of a ConfigMap or Secret (`secretKeyRef`, `configMapKeyRef`).
fn key_ref(cluster: &Cluster, ns: &str, kind: Kind, r: &Value) -> Result<Option<String>, String> {
    let ref_name = r["name"].as_str().unwrap_or("");
    let ref_key = r["key"].as_str().unwrap_or("");
    let optional = r["optional"] == true;
    match cluster.get(kind, ns, ref_name) {
        Ok(obj) => match data_of(kind, &obj.value())
            .into_iter()
            .find(|(k, _)| k == ref_key)
        {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {ref_key} in {} {ns}/{ref_name}",
                kind.kind_name()
            )),
        },
        Err(_) if optional => Ok(None),
        Err(_) => Err(format!("{} \"{ref_name}\" not found", kind_word(kind))),
    }
}

/// `$(VAR)` references to earlier variables, as the kubelet expands them.
pub(super) fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("$(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn data_of(kind: Kind, obj: &Value) -> Vec<(String, String)> {
    use base64::Engine as _;
    let mut out = Vec::new();
    if let Some(d) = obj["data"].as_object() {
        for (k, v) in d {
            let s = v.as_str().unwrap_or("");
            let value = if kind == Kind::Secret {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            } else {
                s.to_owned()
            };
            out.push((k.clone(), value));
        }
    }
    if let Some(d) = obj["stringData"].as_object() {
        for (k, v) in d {
            out.push((k.clone(), v.as_str().unwrap_or("").to_owned()));
        }
    }
    out
}

//! Which resource a path names.

use crate::validate::Kind;

/// Where a request goes.
#[derive(Debug)]
pub(super) enum Route {
    Version,
    Health,
    ApiVersions,
    ApiGroups,
    CoreResources,
    BatchResources,
    /// `/openapi/v3` (an empty path) or `/openapi/v3/{path}`. `/openapi/v2`
    /// is not served: kubectl asks it for protobuf only, and needs it only
    /// when the v3 documents do not declare `fieldValidation`.
    OpenApi {
        path: String,
    },
    Faults,
    Collection {
        kind: Kind,
        namespace: Option<String>,
    },
    Item {
        kind: Kind,
        namespace: String,
        name: String,
        sub: Sub,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    None,
    Status,
    Log,
}

fn core_kind(plural: &str) -> Option<Kind> {
    Some(match plural {
        "pods" => Kind::Pod,
        "events" => Kind::Event,
        "configmaps" => Kind::ConfigMap,
        "secrets" => Kind::Secret,
        "serviceaccounts" => Kind::ServiceAccount,
        "namespaces" => Kind::Namespace,
        _ => return None,
    })
}

pub(super) fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let item = |kind: Kind, ns: &str, name: &str, sub: Option<&str>| -> Option<Route> {
        let sub = match sub {
            None => Sub::None,
            Some("status") => Sub::Status,
            Some("log") if kind == Kind::Pod => Sub::Log,
            Some(_) => return None,
        };
        Some(Route::Item {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
            sub,
        })
    };
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "readyz" | "livez"] => Some(Route::Health),
        ["api"] => Some(Route::ApiVersions),
        ["apis"] => Some(Route::ApiGroups),
        ["api", "v1"] => Some(Route::CoreResources),
        ["apis", "batch"] => Some(Route::ApiGroups),
        ["apis", "batch", "v1"] => Some(Route::BatchResources),
        ["openapi", "v3", rest @ ..] => Some(Route::OpenApi {
            path: rest.join("/"),
        }),
        ["runway", "v1", "faults"] => Some(Route::Faults),
        ["api", "v1", "namespaces"] => Some(Route::Collection {
            kind: Kind::Namespace,
            namespace: None,
        }),
        ["api", "v1", "namespaces", name] => item(Kind::Namespace, "", name, None),
        ["api", "v1", "namespaces", name, "status"] => {
            item(Kind::Namespace, "", name, Some("status"))
        }
        ["api", "v1", plural] => core_kind(plural).map(|kind| Route::Collection {
            kind,
            namespace: None,
        }),
        ["api", "v1", "namespaces", ns, plural] => {
            core_kind(plural).map(|kind| Route::Collection {
                kind,
                namespace: Some((*ns).to_owned()),
            })
        }
        ["api", "v1", "namespaces", ns, plural, name] => {
            core_kind(plural).and_then(|k| item(k, ns, name, None))
        }
        ["api", "v1", "namespaces", ns, plural, name, sub] => {
            core_kind(plural).and_then(|k| item(k, ns, name, Some(sub)))
        }
        ["apis", "batch", "v1", "jobs"] => Some(Route::Collection {
            kind: Kind::Job,
            namespace: None,
        }),
        ["apis", "batch", "v1", "namespaces", ns, "jobs"] => Some(Route::Collection {
            kind: Kind::Job,
            namespace: Some((*ns).to_owned()),
        }),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => item(Kind::Job, ns, name, None),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name, sub] => {
            item(Kind::Job, ns, name, Some(sub))
        }
        _ => None,
    }
}

/// The object a request to an item path is about.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) kind: Kind,
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    pub(super) sub: Sub,
}

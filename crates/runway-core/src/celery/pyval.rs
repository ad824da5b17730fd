//! JSON values that keep their key order, and the two Python spellings
//! Celery puts on the wire: kombu's `json.dumps` (task bodies) and
//! `celery.utils.saferepr` (the `argsrepr`/`kwargsrepr` headers). Dagster's
//! kwargs are built in a fixed key order, and both spellings follow it.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::dagster::pyfmt::{float_repr, write_str};

/// A JSON value in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum PyVal {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyVal>),
    Dict(Vec<(String, PyVal)>),
}

impl<'de> Deserialize<'de> for PyVal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PyVal, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PyVal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<PyVal, E> {
                Ok(PyVal::None)
            }
            fn visit_none<E>(self) -> Result<PyVal, E> {
                Ok(PyVal::None)
            }
            fn visit_bool<E>(self, b: bool) -> Result<PyVal, E> {
                Ok(PyVal::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<PyVal, E> {
                Ok(PyVal::Int(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<PyVal, E> {
                Ok(PyVal::Int(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<PyVal, E> {
                Ok(PyVal::Float(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<PyVal, E> {
                Ok(PyVal::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<PyVal, E> {
                Ok(PyVal::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyVal, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(PyVal::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyVal, A::Error> {
                let mut out: Vec<(String, PyVal)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, PyVal>()? {
                    // A repeated key keeps its first place and its last value, as in Python.
                    match out.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(PyVal::Dict(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl PyVal {
    /// `json.dumps(self)`: Python's separators, ASCII escapes, document order.
    pub fn dumps(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            PyVal::None => out.push_str("null"),
            PyVal::Bool(true) => out.push_str("true"),
            PyVal::Bool(false) => out.push_str("false"),
            PyVal::Int(n) => out.push_str(&n.to_string()),
            PyVal::Float(f) => match float_repr(*f).as_str() {
                "nan" => out.push_str("NaN"),
                "inf" => out.push_str("Infinity"),
                "-inf" => out.push_str("-Infinity"),
                s => out.push_str(s),
            },
            PyVal::Str(s) => write_str(out, s),
            PyVal::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            PyVal::Dict(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(out, k);
                    out.push_str(": ");
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// One token of celery's streaming repr.
#[derive(Debug, Clone)]
enum Tok<'a> {
    /// Brackets and separators: text, whether it may be dropped when
    /// truncating, and how it changes the nesting depth.
    Lit(&'static str, bool, i32),
    /// A container beyond `maxlevels`, spelled `{...}` or `[...]`.
    Elided(&'static str),
    Key(&'a str),
    Quoted(&'a str),
    Plain(String),
}

const DICT_START: Tok<'static> = Tok::Lit("{", false, 1);
const DICT_END: Tok<'static> = Tok::Lit("}", false, -1);
const KV_SEP: Tok<'static> = Tok::Lit(": ", true, 0);
const LIST_START: Tok<'static> = Tok::Lit("[", false, 1);
const LIST_END: Tok<'static> = Tok::Lit("]", false, -1);
const SEP: Tok<'static> = Tok::Lit(", ", true, 0);

fn tokens<'a>(v: &'a PyVal, level: usize, maxlevels: usize, out: &mut Vec<Tok<'a>>) {
    match v {
        PyVal::None => out.push(Tok::Plain("None".into())),
        PyVal::Bool(b) => out.push(Tok::Plain(if *b { "True" } else { "False" }.into())),
        PyVal::Int(n) => out.push(Tok::Plain(n.to_string())),
        PyVal::Float(f) => out.push(Tok::Plain(float_repr(*f))),
        PyVal::Str(s) => out.push(Tok::Quoted(s)),
        PyVal::List(items) => {
            if maxlevels > 0 && level >= maxlevels {
                out.push(Tok::Elided("[...]"));
                return;
            }
            out.push(LIST_START);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(SEP);
                }
                tokens(item, level + 1, maxlevels, out);
            }
            out.push(LIST_END);
        }
        PyVal::Dict(entries) => {
            if maxlevels > 0 && level >= maxlevels {
                out.push(Tok::Elided("{...}"));
                return;
            }
            out.push(DICT_START);
            for (i, (k, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(SEP);
                }
                out.push(Tok::Key(k));
                out.push(KV_SEP);
                tokens(item, level + 1, maxlevels, out);
            }
            out.push(DICT_END);
        }
    }
}

/// `celery.utils.text.truncate`.
fn truncate(s: &str, maxlen: i64) -> String {
    let len = s.chars().count() as i64;
    if maxlen > 0 && len >= maxlen {
        let head: String = s.chars().take(maxlen as usize).collect();
        let cut = match head.rfind(' ') {
            Some(i) => &head[..i],
            None => head.as_str(),
        };
        format!("{cut}...")
    } else {
        s.to_owned()
    }
}

fn quoted(s: &str, maxlen: i64) -> String {
    format!("'{}'", truncate(s, maxlen).replace('\'', "\\'"))
}

/// `celery.utils.saferepr.saferepr(value, maxlen, maxlevels)`, as the task
/// headers use it (maxlen 1024, maxlevels 3).
pub fn saferepr(v: &PyVal, maxlen: usize, maxlevels: usize) -> String {
    let mut toks = Vec::new();
    tokens(v, 0, maxlevels, &mut toks);
    let mut left = maxlen as i64;
    let mut out = String::new();
    let mut stopped_at = None;
    for (i, t) in toks.iter().enumerate() {
        if left <= 0 {
            if let Tok::Lit(text, _, dir) = t {
                if *dir < 0 {
                    out.push_str(text);
                    continue;
                }
            }
            out.push_str(", ...");
            stopped_at = Some(i);
            break;
        }
        let text = match t {
            Tok::Lit(text, _, _) => (*text).to_owned(),
            Tok::Elided(text) => (*text).to_owned(),
            Tok::Key(k) => quoted(k, left),
            Tok::Quoted(s) => quoted(s, left),
            Tok::Plain(p) => truncate(p, left),
        };
        left -= text.chars().count() as i64;
        out.push_str(&text);
    }
    // Close what is still open, innermost first; containers not yet
    // opened balance out and print nothing.
    if let Some(from) = stopped_at {
        let mut depth = 0;
        for t in &toks[from..] {
            if let Tok::Lit(text, false, dir) = t {
                depth += dir;
                if depth < 0 {
                    depth = 0;
                    out.push_str(text);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(json: &str) -> PyVal {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reprs_match_python() {
        let v = val(r#"{"b": 1, "a": [true, null, 1.5, "it's"], "c": {"d": {"e": {"f": 1}}}}"#);
        assert_eq!(
            saferepr(&v, 1024, 3),
            r"{'b': 1, 'a': [True, None, 1.5, 'it\'s'], 'c': {'d': {'e': {...}}}}"
        );
        assert_eq!(
            v.dumps(),
            r#"{"b": 1, "a": [true, null, 1.5, "it's"], "c": {"d": {"e": {"f": 1}}}}"#
        );
        assert_eq!(saferepr(&val("[]"), 1024, 3), "[]");
        assert_eq!(saferepr(&val("{}"), 1024, 3), "{}");
    }

    #[test]
    fn truncation_closes_what_is_open() {
        // Each expected string is what celery 5.7's saferepr printed.
        let v = val(r#"{"a": "xxxxxxxxxx", "b": {"c": 1}, "d": 2}"#);
        assert_eq!(saferepr(&v, 12, 3), "{'a': 'xxxxxx...', ...}");
        assert_eq!(saferepr(&v, 3, 3), "{'a', ...}");
        let nested = val(r#"{"a": {"b": {"c": "long string here"}}, "z": 1}"#);
        assert_eq!(
            saferepr(&nested, 20, 3),
            "{'a': {'b': {'c': 'lo...'}}, ...}"
        );
        assert_eq!(truncate("hello world again", 12), "hello world...");
    }
}

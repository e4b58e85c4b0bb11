//! The document walk: applies the rules of [`super::rules`] to every element, recording each
//! change by its JSON Pointer in the input.

use serde_json::{Map, Value};

use super::rules::{
    address_field_kept, age_extension, age_years, aggregated_age, date_year, is_age_observation,
    is_code_key, is_narrative, is_own_age_marker, is_resource_type, pseudo_id, rewrite_reference,
    rewrite_request_url, rule_for, Rewrite, Rule,
};
use super::{Action, Category, DeidChange, DeidConfig, DeidReport, Deidentified, MAX_DEPTH};
use crate::DeidError;

/// Resource types whose `birthDate` is a person's and falls under the 90+ rule.
const PERSON_TYPES: &[&str] = &["Patient", "Person", "RelatedPerson", "Practitioner"];

pub(super) fn run(input: &Value, config: &DeidConfig) -> Result<Deidentified, DeidError> {
    let mut doc = input.clone();
    let Value::Object(root) = &mut doc else {
        return Err(DeidError::NotAnObject {
            found: json_type(input),
        });
    };
    check_resource_type(root, "")?;
    let mut walker = Walker {
        config,
        changes: Vec::new(),
    };
    let mut path = String::new();
    walker.resource(root, &mut path, 0, false)?;
    Ok(Deidentified {
        resource: doc,
        report: DeidReport {
            changes: walker.changes,
        },
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the document root".to_string()
    } else {
        path.to_string()
    }
}

fn check_resource_type(obj: &Map<String, Value>, path: &str) -> Result<(), DeidError> {
    match obj.get("resourceType") {
        Some(Value::String(t)) if is_resource_type(t) => Ok(()),
        Some(Value::String(_)) => Err(DeidError::UnexpectedType {
            path: format!("{path}/resourceType"),
            expected: "a resource type name such as \"Patient\"",
            found: "another string",
        }),
        Some(other) => Err(DeidError::UnexpectedType {
            path: format!("{path}/resourceType"),
            expected: "a string",
            found: json_type(other),
        }),
        None => Err(DeidError::MissingResourceType { path: shown(path) }),
    }
}

/// Checks the structure a Bundle must have: `entry` an array of objects, each `resource` an
/// object with a `resourceType`.
fn check_bundle(obj: &Map<String, Value>, path: &str) -> Result<(), DeidError> {
    let Some(entries) = obj.get("entry") else {
        return Ok(());
    };
    let Value::Array(entries) = entries else {
        return Err(DeidError::UnexpectedType {
            path: format!("{path}/entry"),
            expected: "an array",
            found: json_type(entries),
        });
    };
    for (i, entry) in entries.iter().enumerate() {
        let epath = format!("{path}/entry/{i}");
        let Value::Object(entry) = entry else {
            return Err(DeidError::UnexpectedType {
                path: epath,
                expected: "an object",
                found: json_type(entry),
            });
        };
        match entry.get("resource") {
            None => {}
            Some(Value::Object(res)) => check_resource_type(res, &format!("{epath}/resource"))?,
            Some(other) => {
                return Err(DeidError::UnexpectedType {
                    path: format!("{epath}/resource"),
                    expected: "an object",
                    found: json_type(other),
                })
            }
        }
    }
    Ok(())
}

/// Appends `/key` (RFC 6901-escaped) to `path`, returning the old length to truncate back to.
fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    path.push('/');
    for ch in key.chars() {
        match ch {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
    len
}

fn push_index(path: &mut String, i: usize) -> usize {
    let len = path.len();
    path.push('/');
    path.push_str(&i.to_string());
    len
}

/// Whether `s` starts like a date (`YYYY-MM`, month 01–12) — such a string that does not
/// parse as a FHIR date is removed rather than risk leaking a full date.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

struct Walker<'a> {
    config: &'a DeidConfig,
    changes: Vec<DeidChange>,
}

impl Walker<'_> {
    fn note(&mut self, path: &str, action: Action, category: Category) {
        self.changes.push(DeidChange {
            path: path.to_string(),
            action,
            category,
        });
    }

    fn depth(&self, depth: usize, path: &str) -> Result<(), DeidError> {
        if depth > MAX_DEPTH {
            return Err(DeidError::TooDeep {
                path: shown(path),
                max: MAX_DEPTH,
            });
        }
        Ok(())
    }

    /// A resource: its id, person birth dates and age observations, then every other element.
    fn resource(
        &mut self,
        obj: &mut Map<String, Value>,
        path: &mut String,
        depth: usize,
        contained: bool,
    ) -> Result<(), DeidError> {
        self.depth(depth, path)?;
        let rtype = obj
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if rtype == "Bundle" {
            check_bundle(obj, path)?;
        }

        // Logical id → pseudonym (contained ids are local `#` anchors and stay).
        if !contained {
            let at = push_key(path, "id");
            match obj.get("id") {
                Some(Value::String(id)) => {
                    let pid = pseudo_id(&self.config.pseudonym_key, &rtype, id);
                    obj.insert("id".into(), Value::String(pid));
                    self.note(path, Action::Pseudonymized, Category::Reference);
                }
                Some(_) => {
                    obj.remove("id");
                    self.note(path, Action::Removed, Category::Malformed);
                }
                None => {}
            }
            path.truncate(at);
        }

        let mut skip = vec!["resourceType"];
        if !contained {
            skip.push("id");
        }
        let mut over_89 = false;
        if PERSON_TYPES.contains(&rtype.as_str()) {
            over_89 = self.birth_date(obj, path);
            skip.push("birthDate");
        }
        if rtype == "Observation" && is_age_observation(obj) {
            let at = push_key(path, "valueQuantity");
            if let Some(q) = obj.get_mut("valueQuantity") {
                if !self.age(q, path) {
                    obj.remove("valueQuantity");
                }
            }
            path.truncate(at);
        }
        self.object(obj, path, depth, "", &skip)?;
        if over_89 && rtype == "Patient" {
            obj.insert("extension".into(), Value::Array(vec![age_extension()]));
        }
        Ok(())
    }

    /// `birthDate` → year; removed entirely when the person is over 89. Returns whether the
    /// person is over 89.
    fn birth_date(&mut self, obj: &mut Map<String, Value>, path: &mut String) -> bool {
        let at = push_key(path, "birthDate");
        let mut over_89 = false;
        match obj.get("birthDate") {
            None => {}
            Some(Value::String(s)) => match date_year(s).and_then(|y| y.parse::<i32>().ok()) {
                Some(year) if self.config.reference_year - year >= 90 => {
                    obj.remove("birthDate");
                    self.note(path, Action::AgeAggregated, Category::Age);
                    over_89 = true;
                }
                Some(year) => {
                    if s.len() > 4 {
                        obj.insert("birthDate".into(), Value::String(format!("{year:04}")));
                        self.note(path, Action::TruncatedToYear, Category::Date);
                    }
                }
                None => {
                    obj.remove("birthDate");
                    self.note(path, Action::Removed, Category::Malformed);
                }
            },
            Some(_) => {
                obj.remove("birthDate");
                self.note(path, Action::Removed, Category::Malformed);
            }
        }
        path.truncate(at);
        over_89
    }

    /// An Age quantity: capped at "≥ 90 years" when over 89. Returns false if it must be
    /// removed (not an object with a numeric value).
    fn age(&mut self, q: &mut Value, path: &str) -> bool {
        let years = match q {
            Value::Object(m) => age_years(m),
            _ => None,
        };
        match years {
            Some(y) if y.floor() >= 90.0 => {
                let capped = aggregated_age();
                if *q != capped {
                    *q = capped;
                    self.note(path, Action::AgeAggregated, Category::Age);
                }
                true
            }
            Some(_) => true,
            None => {
                self.note(path, Action::Removed, Category::Malformed);
                false
            }
        }
    }

    /// Applies the rules to every member of `obj`; `parent_key` is `obj`'s own name.
    fn object(
        &mut self,
        obj: &mut Map<String, Value>,
        path: &mut String,
        depth: usize,
        parent_key: &str,
        skip: &[&str],
    ) -> Result<(), DeidError> {
        self.depth(depth, path)?;
        let is_coding = obj.contains_key("code") || obj.contains_key("system");
        let is_attachment = obj.contains_key("contentType");
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            if skip.contains(&key.as_str()) {
                continue;
            }
            let at = push_key(path, &key);
            let keep = match obj.get_mut(&key) {
                Some(value) => self.member(
                    &key,
                    value,
                    path,
                    depth,
                    parent_key,
                    is_coding,
                    is_attachment,
                )?,
                None => true,
            };
            if !keep {
                obj.remove(&key);
            }
            path.truncate(at);
        }
        obj.retain(|_, v| !is_empty_container(v));
        Ok(())
    }

    /// One member `key: value` of an object. Returns whether to keep it.
    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        key: &str,
        value: &mut Value,
        path: &mut String,
        depth: usize,
        parent_key: &str,
        in_coding: bool,
        in_attachment: bool,
    ) -> Result<bool, DeidError> {
        if is_narrative(key, value) {
            self.note(path, Action::Removed, Category::FreeText);
            return Ok(false);
        }
        if key == "extension" && is_own_age_marker(value) {
            // Our own "90+" marker from an earlier pass carries nothing identifying.
            return Ok(true);
        }
        if in_attachment && matches!(key, "data" | "title") {
            self.note(path, Action::Removed, Category::Photo);
            return Ok(false);
        }
        let rule = if key == "url" && parent_key == "request" {
            None
        } else {
            Some(rule_for(key, parent_key))
        };
        let Some(rule) = rule else {
            return Ok(self.request_url(value, path));
        };
        match rule {
            Rule::Remove(category) => {
                self.note(path, Action::Removed, category);
                Ok(false)
            }
            Rule::Address => Ok(self.address(value, path)),
            Rule::Instant => {
                self.note(path, Action::Removed, Category::Date);
                Ok(false)
            }
            Rule::Date => match value {
                Value::String(_) => Ok(self.date_string(value, path, true, key)),
                Value::Array(_) => self.walk(key, value, path, depth),
                _ => {
                    self.note(path, Action::Removed, Category::Malformed);
                    Ok(false)
                }
            },
            Rule::MaybeDate => self.walk(key, value, path, depth),
            Rule::Age => {
                if !self.age(value, path) {
                    return Ok(false);
                }
                self.walk(key, value, path, depth)
            }
            Rule::Reference | Rule::FullUrl => Ok(self.reference(value, path)),
            Rule::Display => {
                if in_coding {
                    self.walk(key, value, path, depth)
                } else {
                    self.note(path, Action::Removed, Category::Name);
                    Ok(false)
                }
            }
            Rule::Walk => self.walk(key, value, path, depth),
        }
    }

    /// A string in a date-valued element: truncated to its year. A non-date string is removed
    /// when `strict` or when it starts like a date; otherwise kept.
    fn date_string(&mut self, value: &mut Value, path: &str, strict: bool, key: &str) -> bool {
        let Value::String(s) = value else {
            return true;
        };
        match date_year(s) {
            Some(year) => {
                if s.len() > 4 {
                    let year = year.to_string();
                    *value = Value::String(year);
                    self.note(path, Action::TruncatedToYear, Category::Date);
                }
                true
            }
            None if strict || (looks_like_date(s) && !is_code_key(key)) => {
                self.note(path, Action::Removed, Category::Malformed);
                false
            }
            None => true,
        }
    }

    /// Recurses into a value with no rule of its own.
    fn walk(
        &mut self,
        key: &str,
        value: &mut Value,
        path: &mut String,
        depth: usize,
    ) -> Result<bool, DeidError> {
        match value {
            Value::Object(map) => {
                if map
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .is_some_and(is_resource_type)
                {
                    self.resource(map, path, depth + 1, key == "contained")?;
                } else {
                    self.object(map, path, depth + 1, key, &[])?;
                }
                Ok(!map.is_empty())
            }
            Value::Array(items) => {
                self.depth(depth + 1, path)?;
                let mut keep = Vec::with_capacity(items.len());
                for (i, item) in items.iter_mut().enumerate() {
                    let at = push_index(path, i);
                    keep.push(self.walk(key, item, path, depth + 1)?);
                    path.truncate(at);
                }
                let mut flags = keep.into_iter();
                items.retain(|_| flags.next().unwrap_or(true));
                items.retain(|v| !is_empty_container(v));
                Ok(!items.is_empty())
            }
            Value::String(_) => Ok(self.date_string(value, path, false, key)),
            _ => Ok(true),
        }
    }

    /// An Address (or array of them): only state, country, use and type survive.
    fn address(&mut self, value: &mut Value, path: &mut String) -> bool {
        match value {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let at = push_key(path, &key);
                    let field_ok =
                        address_field_kept(&key) && map.get(&key).is_some_and(Value::is_string);
                    let kept = field_ok
                        && match map.get_mut(&key) {
                            Some(v) => self.date_string(v, path, false, &key),
                            None => false,
                        };
                    if field_ok && !kept {
                        map.remove(&key);
                    } else if !kept {
                        map.remove(&key);
                        let category = if address_field_kept(&key) {
                            Category::Malformed
                        } else {
                            Category::Geographic
                        };
                        self.note(path, Action::Removed, category);
                    }
                    path.truncate(at);
                }
                !map.is_empty()
            }
            Value::Array(items) => {
                let mut keep = Vec::with_capacity(items.len());
                for (i, item) in items.iter_mut().enumerate() {
                    let at = push_index(path, i);
                    let k = if item.is_object() {
                        self.address(item, path)
                    } else {
                        self.note(path, Action::Removed, Category::Malformed);
                        false
                    };
                    keep.push(k);
                    path.truncate(at);
                }
                let mut flags = keep.into_iter();
                items.retain(|_| flags.next().unwrap_or(true));
                !items.is_empty()
            }
            _ => {
                self.note(path, Action::Removed, Category::Malformed);
                false
            }
        }
    }

    /// Reference.reference / fullUrl: rewritten to a pseudonym or removed.
    fn reference(&mut self, value: &mut Value, path: &str) -> bool {
        let Value::String(s) = value else {
            self.note(path, Action::Removed, Category::Malformed);
            return false;
        };
        match rewrite_reference(&self.config.pseudonym_key, s) {
            Rewrite::Keep => true,
            Rewrite::Replace(new) | Rewrite::QueryDropped(new) => {
                *value = Value::String(new);
                self.note(path, Action::Pseudonymized, Category::Reference);
                true
            }
            Rewrite::Remove => {
                self.note(path, Action::Removed, Category::Identifier);
                false
            }
        }
    }

    /// Bundle.entry.request.url: type kept, id pseudonymized, conditional query dropped.
    fn request_url(&mut self, value: &mut Value, path: &str) -> bool {
        let Value::String(s) = value else {
            self.note(path, Action::Removed, Category::Malformed);
            return false;
        };
        match rewrite_request_url(&self.config.pseudonym_key, s) {
            Rewrite::Keep => true,
            Rewrite::Replace(new) => {
                *value = Value::String(new);
                self.note(path, Action::Pseudonymized, Category::Reference);
                true
            }
            Rewrite::QueryDropped(new) => {
                *value = Value::String(new);
                self.note(path, Action::QueryDropped, Category::Identifier);
                true
            }
            Rewrite::Remove => {
                self.note(path, Action::Removed, Category::Identifier);
                false
            }
        }
    }
}

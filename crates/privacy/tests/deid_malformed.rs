//! Malformed FHIR: clear errors for a wrong document shape, removal with a report for
//! wrongly typed identifier-bearing elements, and no panic on any JSON.

use pmr_privacy::{deidentify, Action, Category, DeidConfig, DeidError, PseudonymKey};
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> DeidConfig {
    DeidConfig {
        pseudonym_key: PseudonymKey::from_bytes([1; 32]),
        reference_year: 2025,
    }
}

#[test]
fn document_shape_errors() {
    assert_eq!(
        deidentify(&json!([1, 2]), &config()).expect_err("must be rejected"),
        DeidError::NotAnObject { found: "an array" }
    );
    assert_eq!(
        deidentify(&json!({"name": "x"}), &config()).expect_err("must be rejected"),
        DeidError::MissingResourceType {
            path: "the document root".into()
        }
    );
    assert_eq!(
        deidentify(&json!({"resourceType": 7}), &config()).expect_err("must be rejected"),
        DeidError::UnexpectedType {
            path: "/resourceType".into(),
            expected: "a string",
            found: "a number"
        }
    );
    assert_eq!(
        deidentify(
            &json!({"resourceType": "Bundle", "entry": {"resource": {}}}),
            &config()
        )
        .expect_err("must be rejected"),
        DeidError::UnexpectedType {
            path: "/entry".into(),
            expected: "an array",
            found: "an object"
        }
    );
    assert_eq!(
        deidentify(
            &json!({"resourceType": "Bundle", "entry": ["Patient/1"]}),
            &config()
        )
        .expect_err("must be rejected"),
        DeidError::UnexpectedType {
            path: "/entry/0".into(),
            expected: "an object",
            found: "a string"
        }
    );
    assert_eq!(
        deidentify(
            &json!({"resourceType": "Bundle", "entry": [{"resource": {"name": "Doe"}}]}),
            &config()
        )
        .expect_err("must be rejected"),
        DeidError::MissingResourceType {
            path: "/entry/0/resource".into()
        }
    );
    let msg = deidentify(&json!("x"), &config())
        .expect_err("must be rejected")
        .to_string();
    assert_eq!(msg, "a FHIR resource must be a JSON object; got a string");
}

#[test]
fn wrongly_typed_elements_are_removed_and_reported() {
    let input = json!({
        "resourceType": "Patient",
        "id": 42,
        "birthDate": 19610723,
        "address": "14 Nungambakkam High Road, Chennai",
        "generalPractitioner": [{"reference": 17, "display": "Dr. Anand Iyer"}],
        "onsetAge": "ninety-three",
        "deceasedDateTime": "last tuesday",
        "telecom": "98410 23456"
    });
    let out = deidentify(&input, &config()).expect("deidentify");
    let text = out.resource.to_string();
    for leaked in [
        "19610723",
        "Nungambakkam",
        "Iyer",
        "ninety",
        "tuesday",
        "98410",
        "42",
    ] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    assert_eq!(out.resource, json!({"resourceType": "Patient"}));
    for path in [
        "/id",
        "/birthDate",
        "/address",
        "/generalPractitioner/0/reference",
        "/onsetAge",
        "/deceasedDateTime",
    ] {
        assert!(
            out.report
                .changes
                .iter()
                .any(|c| c.path == path && c.category == Category::Malformed),
            "{path}: {:#?}",
            out.report
        );
    }
    assert!(out.report.contains("/telecom", Action::Removed));
}

#[test]
fn date_like_strings_that_do_not_parse_are_removed() {
    let input = json!({
        "resourceType": "Observation",
        "effectivePeriod": {"start": "2023-11-02T09:30", "end": "2023-11-02 10:15"},
        "valueQuantity": {"value": 3}
    });
    let out = deidentify(&input, &config()).expect("deidentify");
    assert!(
        !out.resource.to_string().contains("11-02"),
        "{}",
        out.resource
    );
}

#[test]
fn json_pointer_escapes_keys() {
    let input = json!({"resourceType": "Basic", "a/b~c": {"name": "x"}});
    let out = deidentify(&input, &config()).expect("deidentify");
    assert!(
        out.report.contains("/a~1b~0c/name", Action::Removed),
        "{:#?}",
        out.report
    );
}

#[test]
fn excessive_nesting_is_refused() {
    let mut v = json!({"code": "x"});
    for _ in 0..200 {
        v = json!({ "component": [v] });
    }
    let mut doc = v.as_object().cloned().expect("object");
    doc.insert("resourceType".into(), json!("Observation"));
    let err = deidentify(&Value::Object(doc), &config()).expect_err("must be rejected");
    assert!(matches!(err, DeidError::TooDeep { max: 64, .. }), "{err}");
}

#[test]
fn conditional_references_are_removed() {
    let input = json!({
        "resourceType": "Observation",
        "subject": {"reference": "Patient?identifier=http://mrn|SGH-55512"}
    });
    let out = deidentify(&input, &config()).expect("deidentify");
    assert!(!out.resource.to_string().contains("SGH-55512"));
    assert!(out.report.contains("/subject/reference", Action::Removed));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9#:/ ._?-]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("1931-02-11"),
            Just("2023-11-02T09:30:00Z"),
            Just("Patient/abc"),
            Just("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
            Just("http://x.example/fhir/Patient/1")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop_oneof![
        Just("name"),
        Just("reference"),
        Just("birthDate"),
        Just("address"),
        Just("display"),
        Just("code"),
        Just("system"),
        Just("id"),
        Just("resourceType"),
        Just("entry"),
        Just("resource"),
        Just("onsetAge"),
        Just("period"),
        Just("start"),
        Just("text"),
        Just("url"),
        Just("request"),
        Just("contained"),
        Just("valueQuantity"),
        Just("value"),
        Just("fullUrl"),
        Just("extension"),
        Just("contentType"),
        Just("data"),
    ]
    .prop_map(String::from);
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_and_never_keeps_full_dates(
        rtype in prop_oneof![Just("Patient"), Just("Bundle"), Just("Observation")],
        body in arb_json(),
    ) {
        let mut doc = match body {
            Value::Object(m) => m,
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        doc.insert("resourceType".into(), json!(rtype));
        let input = Value::Object(doc);
        if let Ok(out) = deidentify(&input, &config()) {
            let text = out.resource.to_string();
            prop_assert!(!text.contains("1931-02-11"), "{}", text);
            prop_assert!(!text.contains("2023-11-02T09:30:00Z"), "{}", text);
        }
    }
}

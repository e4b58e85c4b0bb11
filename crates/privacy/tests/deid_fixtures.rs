//! De-identification of realistic FHIR R4 documents (tests/fixtures): after the run no original
//! identifying string appears anywhere in the serialized output, years and clinical content are
//! kept, references stay consistent, and the report lists what was removed.

use pmr_privacy::{deidentify, pseudonymous_id, Action, Category, DeidConfig, PseudonymKey};
use serde_json::Value;

/// The fixture, embedded at compile time (a path baked in with `env!("CARGO_MANIFEST_DIR")`
/// goes stale when another checkout shares the target directory).
fn load(name: &str) -> Value {
    let text = match name {
        "patient.json" => include_str!("fixtures/patient.json"),
        "bundle.json" => include_str!("fixtures/bundle.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("fixture is JSON")
}

fn config() -> DeidConfig {
    DeidConfig {
        pseudonym_key: PseudonymKey::from_bytes([0x42; 32]),
        reference_year: 2025,
    }
}

/// Asserts none of `needles` occurs (case-insensitively) in the serialized output.
fn assert_absent(output: &str, needles: &[&str]) {
    let lower = output.to_lowercase();
    let leaked: Vec<&&str> = needles
        .iter()
        .filter(|n| lower.contains(&n.to_lowercase()))
        .collect();
    assert!(leaked.is_empty(), "leaked {leaked:?} in:\n{output}");
}

fn assert_present(output: &str, needles: &[&str]) {
    for n in needles {
        assert!(output.contains(n), "{n:?} was lost:\n{output}");
    }
}

#[test]
fn patient_resource_is_deidentified() {
    let input = load("patient.json");
    let out = deidentify(&input, &config()).expect("deidentify");
    let text = serde_json::to_string_pretty(&out.resource).expect("serialize");

    assert_absent(
        &text,
        &[
            "Lakshmi",
            "Priya",
            "Ramaswamy",
            "Suresh",
            "Venkataraman",
            "Madurai",
            "APL-00482913",
            "00482913",
            "91-5523-7781-4402",
            "5523-7781",
            "lakshmi.priya61",
            "98410 23456",
            "94440 87123",
            "2829 3311",
            "example.in",
            "Nungambakkam",
            "Lotus Residency",
            "Chennai",
            "600034",
            "600024",
            "Kodambakkam",
            "1961-07-23",
            "07-23",
            "2004-06-01",
            "2004",
            "pat-7f3a9c",
            "dr-anand-iyer",
            "Anand",
            "Iyer",
            "apollo",
            "Greams",
            "pat-legacy-55120",
            "LzlqLzRBQVFT",
            "passport",
            "2024-02-19",
            "Mrs.",
        ],
    );
    assert_present(
        &text,
        &[
            "Tamil Nadu",
            "\"IN\"",
            "\"1961\"",
            "female",
            "Married",
            "\"ta\"",
        ],
    );

    let r = &out.resource;
    assert_eq!(r["birthDate"], "1961");
    assert_eq!(
        r["id"],
        Value::String(pseudonymous_id(
            &config().pseudonym_key,
            "Patient",
            "pat-7f3a9c"
        ))
    );
    assert_eq!(
        r["generalPractitioner"][0]["reference"],
        Value::String(format!(
            "Practitioner/{}",
            pseudonymous_id(&config().pseudonym_key, "Practitioner", "dr-anand-iyer")
        ))
    );
    assert_eq!(r["address"][0]["state"], "Tamil Nadu");
    assert_eq!(r["address"][0]["country"], "IN");
    assert!(r["address"][0].get("postalCode").is_none());
    assert!(r.get("extension").is_none(), "under 90: no age marker");
    assert_eq!(
        r["meta"]["profile"][0],
        "https://nrces.in/ndhm/fhir/r4/StructureDefinition/Patient"
    );

    let rep = &out.report;
    for (path, category) in [
        ("/name", Category::Name),
        ("/telecom", Category::Telecom),
        ("/identifier", Category::Identifier),
        ("/photo", Category::Photo),
        ("/contact", Category::Contact),
        ("/text", Category::FreeText),
        ("/extension", Category::Extension),
        ("/address/0/line", Category::Geographic),
        ("/address/0/city", Category::Geographic),
        ("/address/0/postalCode", Category::Geographic),
        ("/meta/lastUpdated", Category::Date),
        ("/meta/source", Category::Url),
        ("/generalPractitioner/0/display", Category::Name),
    ] {
        assert!(
            rep.changes
                .iter()
                .any(|c| c.path == path && c.action == Action::Removed && c.category == category),
            "report lacks removal of {path} ({category:?}): {rep:#?}"
        );
    }
    assert!(rep.contains("/birthDate", Action::TruncatedToYear));
    assert!(rep.contains("/id", Action::Pseudonymized));
    // The report names paths, never the removed values.
    let report_json = serde_json::to_string(rep).expect("report serializes");
    assert_absent(
        &report_json,
        &["Lakshmi", "98410", "APL-00482913", "Chennai"],
    );
}

#[test]
fn bundle_is_deidentified_with_consistent_references() {
    let input = load("bundle.json");
    let before = input.clone();
    let out = deidentify(&input, &config()).expect("deidentify");
    assert_eq!(input, before, "the input is not modified");
    let text = serde_json::to_string_pretty(&out.resource).expect("serialize");

    assert_absent(
        &text,
        &[
            "Doe",
            "Jonathan",
            "Michael",
            "078-05-1120",
            "SGH-55512",
            "BCBS-IL-99384412",
            "555-0143",
            "555-0199",
            "jon.doe",
            "jonathandoe-family",
            "Evergreen",
            "pringfield",
            "Sangamon",
            "62704",
            "1931",
            "V-2023-884712",
            "884712",
            "PRE-20231102",
            "Connor",
            "Kelly Hart",
            "Marge",
            "RX-33910",
            "33910",
            "SN-BP-20931",
            "20931",
            "00884838055371",
            "LOT-7781A",
            "192.168.14.77",
            "1.2.840.113619",
            "2023-11-02",
            "2019-04-17",
            "09:30",
            "61ebe359",
            "4f6a30fc",
            "d3c2b1a0",
            "jdoe",
            "sconnor",
            "obs-weight",
            "cond-htn",
            "SmFvbmF0aGFu",
            "0c3151bd",
            "16:40",
        ],
    );
    // Clinical content survives.
    assert_present(
        &text,
        &[
            "29463-7",
            "Body weight",
            "72.5",
            "85354-9",
            "8480-6",
            "142",
            "8462-4",
            "91",
            "38341003",
            "Hypertensive disorder",
            "Hypertension follow-up",
            "197361",
            "amlodipine 5 MG Oral Tablet",
            "70665002",
            "Omron",
            "34133-9",
            "\"2023\"",
            "\"2019\"",
            "\"IL\"",
            "\"US\"",
            "vital-signs",
            "\"male\"",
            "1 tablet by mouth daily",
        ],
    );

    let entries = out.resource["entry"].as_array().expect("entries");
    let patient_url = entries[0]["fullUrl"].as_str().expect("fullUrl").to_string();
    assert!(patient_url.starts_with("urn:uuid:"));
    // Every subject/patient reference still points at the (rewritten) patient entry.
    for i in [2usize, 3, 4, 5, 6, 7] {
        assert_eq!(
            entries[i]["resource"]["subject"]["reference"], patient_url,
            "entry {i}"
        );
    }
    assert_eq!(entries[8]["resource"]["patient"]["reference"], patient_url);
    assert_eq!(
        entries[3]["resource"]["device"]["reference"], entries[8]["fullUrl"],
        "observation → device link survives"
    );
    assert_eq!(
        entries[2]["resource"]["encounter"]["reference"],
        entries[1]["fullUrl"]
    );

    // Over 89: no birth year, an explicit 90+ marker; ages capped.
    let patient = &entries[0]["resource"];
    assert!(patient.get("birthDate").is_none());
    assert_eq!(patient["extension"][0]["valueString"], "90+");
    let age_obs = &entries[4]["resource"]["valueQuantity"];
    assert_eq!(age_obs["value"], 90);
    assert_eq!(age_obs["comparator"], ">=");
    let onset_months = &entries[6]["resource"]["onsetAge"];
    assert_eq!(
        onset_months["value"], 90,
        "1104 months = 92 years is capped"
    );
    let onset_61 = &entries[5]["resource"]["onsetAge"];
    assert_eq!(onset_61["value"], 61, "ages under 90 are kept");

    // Dates → years, instants removed.
    let weight = &entries[2]["resource"];
    assert_eq!(weight["effectiveDateTime"], "2023");
    assert!(weight.get("issued").is_none());
    assert_eq!(entries[1]["resource"]["period"]["start"], "2023");
    assert!(out.resource.get("timestamp").is_none());
    assert_eq!(
        entries[9]["resource"]["content"][0]["attachment"]["creation"],
        "2023"
    );

    // Transaction requests: conditional query dropped, ids pseudonymized.
    assert!(entries[0]["request"].get("ifNoneExist").is_none());
    assert_eq!(entries[9]["request"]["url"], "DocumentReference");
    assert_eq!(
        entries[8]["request"]["url"],
        Value::String(format!(
            "Device/{}",
            pseudonymous_id(&config().pseudonym_key, "Device", "bp-cuff-20931")
        ))
    );
    assert!(out
        .report
        .contains("/entry/9/request/url", Action::QueryDropped));

    // Device identifiers and attachment payloads are gone.
    let device = &entries[8]["resource"];
    for k in [
        "udiCarrier",
        "serialNumber",
        "lotNumber",
        "deviceName",
        "url",
    ] {
        assert!(device.get(k).is_none(), "{k}");
    }
    let attachment = &entries[9]["resource"]["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "application/pdf");
    for k in ["url", "title", "data"] {
        assert!(attachment.get(k).is_none(), "{k}");
    }

    // Same key → same output; another key → other pseudonyms.
    let again = deidentify(&input, &config()).expect("deidentify");
    assert_eq!(again.resource, out.resource);
    let other = deidentify(
        &input,
        &DeidConfig {
            pseudonym_key: PseudonymKey::from_bytes([0x43; 32]),
            reference_year: 2025,
        },
    )
    .expect("deidentify");
    assert_ne!(other.resource["entry"][0]["fullUrl"], patient_url);
}

#[test]
fn output_of_deidentification_is_stable_under_a_second_pass() {
    // A second pass has no names, dates or identifiers left to remove.
    let out = deidentify(&load("bundle.json"), &config()).expect("first pass");
    let second = deidentify(&out.resource, &config()).expect("second pass");
    assert!(
        second
            .report
            .changes
            .iter()
            .all(|c| c.action == Action::Pseudonymized),
        "{:#?}",
        second.report
    );
}

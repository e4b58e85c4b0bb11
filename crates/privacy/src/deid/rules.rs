//! Which element names carry which identifiers, and the value transformations (dates, ages,
//! pseudonymous ids and references).

use serde_json::{json, Map, Value};

use super::{Category, PseudonymKey};

/// Base URL that absolute references are rewritten to, so relative references in a Bundle keep
/// resolving against the rewritten `fullUrl`s. `.invalid` is reserved (RFC 2606).
pub(crate) const DEID_BASE: &str = "https://deidentified.invalid/fhir";

/// URL of the extension marking a patient whose birth year was removed because they are over 89.
pub(crate) const AGE_EXTENSION_URL: &str =
    "https://deidentified.invalid/fhir/StructureDefinition/age-over-89";

/// LOINC codes of observations whose value is the patient's age.
const AGE_LOINC: &[&str] = &["30525-0", "21612-7", "29553-5"];

/// What to do with an element, decided from its name (and sometimes its parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Delete it.
    Remove(Category),
    /// Keep only state/country/use/type.
    Address,
    /// An instant (full timestamp): delete it.
    Instant,
    /// A date or dateTime: truncate; delete if not a parseable date string.
    Date,
    /// Maybe a date (`start`, `end`, `date`, `event`): truncate strings that parse as dates.
    MaybeDate,
    /// An Age quantity: cap at 90.
    Age,
    /// A Reference.reference string.
    Reference,
    /// Bundle.entry.fullUrl.
    FullUrl,
    /// `display`: kept only in codings.
    Display,
    /// Anything else: recurse.
    Walk,
}

/// Decides the rule for `key` inside an object whose own key (in its parent) is `parent_key`.
pub(crate) fn rule_for(key: &str, parent_key: &str) -> Rule {
    use Category::*;
    match key {
        "name" | "valueHumanName" => Rule::Remove(Name),
        "telecom" | "valueContactPoint" => Rule::Remove(Telecom),
        "photo" => Rule::Remove(Photo),
        "contact" => Rule::Remove(Contact),
        "link" => Rule::Remove(Url),
        "identifier" | "subscriberId" => Rule::Remove(Identifier),
        "extension" | "modifierExtension" => Rule::Remove(Extension),
        "note" | "comment" | "description" | "valueString" | "valueMarkdown"
        | "patientInstruction" => Rule::Remove(FreeText),
        "udiCarrier" | "serialNumber" | "lotNumber" | "deviceName" | "uid" => Rule::Remove(Device),
        "network" => Rule::Remove(NetworkAddress),
        "url" | "valueUri" | "valueUrl" => Rule::Remove(Url),
        "source" if parent_key == "meta" => Rule::Remove(Url),
        "location" if parent_key == "response" => Rule::Remove(Reference),
        "ifNoneExist" | "ifMatch" | "ifNoneMatch" | "ifModifiedSince" => Rule::Remove(Identifier),
        "address" | "valueAddress" => Rule::Address,
        "issued" | "lastUpdated" | "timestamp" | "recorded" | "lastModified" => Rule::Instant,
        "birthDate" | "authoredOn" => Rule::Date,
        "start" | "end" | "date" | "event" | "created" => Rule::MaybeDate,
        "reference" => Rule::Reference,
        "fullUrl" => Rule::FullUrl,
        "display" => Rule::Display,
        k if k.ends_with("Identifier") => Rule::Remove(Identifier),
        k if k.ends_with("Instant") => Rule::Instant,
        k if k.ends_with("DateTime") || k.ends_with("Date") => Rule::Date,
        k if k.ends_with("Age") => Rule::Age,
        _ => Rule::Walk,
    }
}

/// Narrative `text` (an object with `div`) is free text; `CodeableConcept.text` (a string) stays.
pub(crate) fn is_narrative(key: &str, value: &Value) -> bool {
    key == "text" && value.is_object()
}

/// Keys holding codes: a code that merely starts like a date (NDC `0006-0749-54`) is kept;
/// only a string that fully parses as a date is truncated there.
pub(crate) fn is_code_key(key: &str) -> bool {
    matches!(key, "code" | "valueCode")
}

/// Kept fields of an Address.
pub(crate) fn address_field_kept(key: &str) -> bool {
    matches!(key, "state" | "country" | "use" | "type")
}

/// If `s` is a FHIR date, dateTime or instant (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mm:ss[.f+](Z|±hh:mm)`), its year.
pub(crate) fn date_year(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if !digits(0..4) {
        return None;
    }
    let year = &s[..4];
    let in_range = |r: std::ops::Range<usize>, lo: u32, hi: u32| {
        s.get(r)
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| (lo..=hi).contains(&v))
    };
    match b.len() {
        4 => return Some(year),
        7 if b[4] == b'-' && digits(5..7) && in_range(5..7, 1, 12) => return Some(year),
        10 if b[4] == b'-' && b[7] == b'-' && digits(5..7) && digits(8..10) => {
            return (in_range(5..7, 1, 12) && in_range(8..10, 1, 31)).then_some(year)
        }
        _ => {}
    }
    // dateTime / instant: date part, 'T', hh:mm:ss, optional fraction, zone.
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if !(digits(5..7) && digits(8..10) && in_range(5..7, 1, 12) && in_range(8..10, 1, 31)) {
        return None;
    }
    if !(digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19)) {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let zone = &b[i..];
    let zone_ok = zone == b"Z"
        || (zone.len() == 6
            && (zone[0] == b'+' || zone[0] == b'-')
            && zone[1..3].iter().all(u8::is_ascii_digit)
            && zone[3] == b':'
            && zone[4..6].iter().all(u8::is_ascii_digit));
    zone_ok.then_some(year)
}

/// The age in whole years of an Age/Quantity object, from `value` and its UCUM `code` (or
/// `unit`). Unknown units count as years (the conservative reading).
pub(crate) fn age_years(q: &Map<String, Value>) -> Option<f64> {
    let value = q.get("value")?.as_f64()?;
    let unit = q
        .get("code")
        .or_else(|| q.get("unit"))
        .and_then(Value::as_str)
        .unwrap_or("a")
        .to_ascii_lowercase();
    let per_year = match unit.as_str() {
        "mo" | "month" | "months" => 12.0,
        "wk" | "week" | "weeks" => 52.1775,
        "d" | "day" | "days" => 365.25,
        "h" | "hour" | "hours" => 8766.0,
        "min" | "minute" | "minutes" => 525_960.0,
        _ => 1.0,
    };
    Some(value / per_year)
}

/// The replacement of an age over 89: "90 years or more".
pub(crate) fn aggregated_age() -> Value {
    json!({
        "value": 90,
        "comparator": ">=",
        "unit": "years",
        "system": "http://unitsofmeasure.org",
        "code": "a"
    })
}

/// Whether an Observation's `code` is one of the LOINC "age" codes.
pub(crate) fn is_age_observation(resource: &Map<String, Value>) -> bool {
    resource
        .get("code")
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some("http://loinc.org")
                    && c.get("code")
                        .and_then(Value::as_str)
                        .is_some_and(|code| AGE_LOINC.contains(&code))
            })
        })
}

/// The extension added to a Patient whose birth year was removed (age over 89).
pub(crate) fn age_extension() -> Value {
    json!({ "url": AGE_EXTENSION_URL, "valueString": "90+" })
}

/// Whether an `extension` array is exactly our own age marker.
pub(crate) fn is_own_age_marker(value: &Value) -> bool {
    matches!(value, Value::Array(items) if items.len() == 1 && items[0] == age_extension())
}

fn keyed_hex(key: &PseudonymKey, domain: &str, input: &str) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key.bytes());
    h.update(domain.as_bytes());
    h.update(&[0]);
    h.update(input.as_bytes());
    h.finalize()
}

/// 32 hex digits naming `resource_type/id`.
pub(crate) fn pseudo_id(key: &PseudonymKey, resource_type: &str, id: &str) -> String {
    let h = keyed_hex(key, "pmr deid id v1", &format!("{resource_type}/{id}"));
    hex::encode(&h.as_bytes()[..16])
}

/// A UUID (RFC 9562 version 8, "custom") derived from `input`, for `urn:uuid:` references.
pub(crate) fn pseudo_uuid(key: &PseudonymKey, input: &str) -> String {
    let h = keyed_hex(key, "pmr deid uuid v1", input);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// Whether `s` looks like a FHIR resource type (`Patient`, `Observation`…).
pub(crate) fn is_resource_type(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Whether `s` is a valid FHIR logical id.
fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Outcome of rewriting a reference-like string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Keep as is (local `#id`).
    Keep,
    /// Replace with this.
    Replace(String),
    /// Replace, and a query (which may carry identifiers) was dropped.
    QueryDropped(String),
    /// Cannot be made safe: remove.
    Remove,
}

/// Rewrites a Reference.reference / fullUrl / response location.
pub(crate) fn rewrite_reference(key: &PseudonymKey, reference: &str) -> Rewrite {
    if reference.starts_with('#') {
        return Rewrite::Keep;
    }
    if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
        return Rewrite::Replace(format!("urn:uuid:{}", pseudo_uuid(key, reference)));
    }
    if reference.contains('?') {
        // Conditional reference: the query is search criteria such as identifier=…
        return Rewrite::Remove;
    }
    let absolute = reference.starts_with("http://") || reference.starts_with("https://");
    let mut parts: Vec<&str> = reference.split('/').collect();
    // Drop a trailing "_history/<vid>".
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    let (Some(id), Some(rtype)) = (parts.pop(), parts.pop()) else {
        return Rewrite::Remove;
    };
    if !is_resource_type(rtype) || !is_fhir_id(id) {
        return Rewrite::Remove;
    }
    if !absolute && !parts.is_empty() {
        return Rewrite::Remove;
    }
    let pid = pseudo_id(key, rtype, id);
    if absolute {
        Rewrite::Replace(format!("{DEID_BASE}/{rtype}/{pid}"))
    } else {
        Rewrite::Replace(format!("{rtype}/{pid}"))
    }
}

/// Rewrites Bundle.entry.request.url (`Type`, `Type/id`, `Type?query`, `Type/id/_history/v`).
pub(crate) fn rewrite_request_url(key: &PseudonymKey, url: &str) -> Rewrite {
    let (path, query) = match url.split_once('?') {
        Some((p, _)) => (p, true),
        None => (url, false),
    };
    if is_resource_type(path) {
        return if query {
            Rewrite::QueryDropped(path.to_string())
        } else {
            Rewrite::Keep
        };
    }
    if query {
        return Rewrite::Remove;
    }
    rewrite_reference(key, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_years() {
        assert_eq!(date_year("1948"), Some("1948"));
        assert_eq!(date_year("1948-03"), Some("1948"));
        assert_eq!(date_year("1948-03-14"), Some("1948"));
        assert_eq!(date_year("2023-11-02T09:30:00Z"), Some("2023"));
        assert_eq!(date_year("2023-11-02T09:30:00.123+05:30"), Some("2023"));
        assert_eq!(date_year("2023-13-02"), None);
        assert_eq!(date_year("2023-11-02T09:30"), None);
        assert_eq!(date_year("12345"), None);
        assert_eq!(date_year("8480-6"), None);
        assert_eq!(date_year("29463-7"), None);
        assert_eq!(date_year("yesterday"), None);
        assert_eq!(date_year("२०२३"), None);
    }

    #[test]
    fn references_are_rewritten_consistently() {
        let key = PseudonymKey::from_bytes([7; 32]);
        let pid = pseudo_id(&key, "Patient", "pat-123");
        assert_eq!(pid.len(), 32);
        assert_eq!(
            rewrite_reference(&key, "Patient/pat-123"),
            Rewrite::Replace(format!("Patient/{pid}"))
        );
        assert_eq!(
            rewrite_reference(&key, "Patient/pat-123/_history/4"),
            Rewrite::Replace(format!("Patient/{pid}"))
        );
        assert_eq!(
            rewrite_reference(&key, "https://ehr.example.org/fhir/Patient/pat-123"),
            Rewrite::Replace(format!("{DEID_BASE}/Patient/{pid}"))
        );
        assert_eq!(rewrite_reference(&key, "#contained1"), Rewrite::Keep);
        assert_eq!(
            rewrite_reference(&key, "Patient?identifier=http://mrn|123"),
            Rewrite::Remove
        );
        assert_eq!(rewrite_reference(&key, "not a reference"), Rewrite::Remove);
        let Rewrite::Replace(u) =
            rewrite_reference(&key, "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a")
        else {
            panic!("urn:uuid must be replaced");
        };
        assert!(u.starts_with("urn:uuid:") && u.len() == 45, "{u}");
        assert_ne!(
            pseudo_id(&PseudonymKey::from_bytes([8; 32]), "Patient", "pat-123"),
            pid
        );
    }

    #[test]
    fn request_urls_lose_queries() {
        let key = PseudonymKey::from_bytes([7; 32]);
        assert_eq!(rewrite_request_url(&key, "Patient"), Rewrite::Keep);
        assert_eq!(
            rewrite_request_url(&key, "Patient?identifier=123"),
            Rewrite::QueryDropped("Patient".into())
        );
        assert!(matches!(
            rewrite_request_url(&key, "Patient/abc"),
            Rewrite::Replace(s) if s.starts_with("Patient/") && !s.contains("abc")
        ));
    }
}

//! HIPAA Safe Harbor de-identification of FHIR R4 JSON (a resource or a Bundle).
//!
//! What happens to the 18 Safe Harbor identifiers (45 CFR 164.514(b)(2)):
//!
//! | identifier | FHIR elements | action |
//! |---|---|---|
//! | names | `name`, `valueHumanName`, `display` of references | removed |
//! | geography below state | `address.line/city/district/postalCode/text/period` | removed; `state`, `country`, `use`, `type` kept |
//! | dates except year | every date/dateTime (`birthDate`, `period.start`, `effectiveDateTime`, …) | truncated to `YYYY` |
//! | | instants (`issued`, `meta.lastUpdated`, `timestamp`, …) | removed (an instant cannot hold a year) |
//! | ages over 89 | `birthDate` ≥ 90 years before the reference year; `*Age` quantities; age observations | birth year removed and `90+` marked; age capped at `>= 90` |
//! | phone, fax, email, URLs | `telecom`, `valueContactPoint`, `url`, `valueUri`, `valueUrl`, attachment `url` | removed |
//! | SSN, MRN, plan, account, licence, vehicle, any other number | `identifier`, `*Identifier`, `subscriberId` | removed |
//! | device identifiers | `udiCarrier`, `serialNumber`, `lotNumber`, `deviceName`, `uid` | removed |
//! | IP addresses | `network` | removed |
//! | photos, biometrics | `photo`, attachment `data`/`title` | removed |
//! | relatives and contacts | `contact`, `link` | removed |
//! | free text | narrative `text`, `note`, `comment`, `description`, `valueString`, `valueMarkdown`, `patientInstruction` | removed |
//! | extensions (may hold any of the above) | `extension`, `modifierExtension` | removed |
//! | resource ids and references | `id`, `reference`, `fullUrl`, `request.url` | rewritten to keyed-hash pseudonyms |
//!
//! Clinical content — codings (`system`, `code`, `display`), quantities, `status`, categories,
//! `CodeableConcept.text`, years — is kept. Resource ids and references are rewritten with a
//! keyed hash under [`DeidConfig::pseudonym_key`], so links inside one export stay consistent
//! (`Patient/123` → `Patient/<32 hex>` everywhere) while nobody without the key can map them back.
//! Every change is listed in the [`DeidReport`] by JSON Pointer into the *input* document; the
//! report never contains removed values.

mod rules;
mod walk;

use serde::Serialize;
use serde_json::Value;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::DeidError;

/// Deepest nesting accepted (FHIR resources are far shallower).
pub const MAX_DEPTH: usize = 64;

/// The secret under which ids and references are pseudonymized. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    /// From raw bytes (keep it secret; reuse it to keep ids stable across exports).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PseudonymKey(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// Parameters of a de-identification run.
#[derive(Debug, Clone)]
pub struct DeidConfig {
    /// Key of the keyed hash that rewrites ids and references.
    pub pseudonym_key: PseudonymKey,
    /// The year ages are computed against (normally the current year; this library has no
    /// clock). A birth year `≤ reference_year − 90` counts as "over 89".
    pub reference_year: i32,
}

/// What was done to one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The element was deleted.
    Removed,
    /// A date was cut to its year.
    TruncatedToYear,
    /// An age over 89 was replaced by "90 or more"; or a birth year was dropped for that reason.
    AgeAggregated,
    /// An id or reference was replaced by a keyed-hash pseudonym.
    Pseudonymized,
    /// A conditional URL lost its query (which carries identifiers).
    QueryDropped,
}

/// Which Safe Harbor category (or other reason) an action falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Names.
    Name,
    /// Geographic subdivisions smaller than a state.
    Geographic,
    /// Dates other than year.
    Date,
    /// Ages over 89.
    Age,
    /// Telephone, fax, email.
    Telecom,
    /// Identifying numbers (MRN, SSN, plan, account, licence…).
    Identifier,
    /// URLs.
    Url,
    /// Full-face photos and other images / attached documents.
    Photo,
    /// Contacts and relatives.
    Contact,
    /// Free text, which can hold any identifier.
    FreeText,
    /// Device identifiers and serial numbers.
    Device,
    /// IP addresses.
    NetworkAddress,
    /// Extensions, which can hold any identifier.
    Extension,
    /// Resource ids and references.
    Reference,
    /// An element of the wrong JSON type where an identifier-bearing value was expected.
    Malformed,
}

/// One change made, at a JSON Pointer (RFC 6901) into the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeidChange {
    /// JSON Pointer of the element in the input document.
    pub path: String,
    /// What was done.
    pub action: Action,
    /// Why.
    pub category: Category,
}

/// Every change made by a de-identification run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeidReport {
    /// Changes in document order.
    pub changes: Vec<DeidChange>,
}

impl DeidReport {
    /// Paths of removed elements.
    pub fn removed_paths(&self) -> impl Iterator<Item = &str> {
        self.changes
            .iter()
            .filter(|c| c.action == Action::Removed)
            .map(|c| c.path.as_str())
    }

    /// Whether some change was made at `path` with `action`.
    pub fn contains(&self, path: &str, action: Action) -> bool {
        self.changes
            .iter()
            .any(|c| c.path == path && c.action == action)
    }
}

/// The de-identified document and what was done to it.
#[derive(Debug, Clone)]
pub struct Deidentified {
    /// The de-identified resource (a new value; the input is untouched).
    pub resource: Value,
    /// The changes.
    pub report: DeidReport,
}

/// De-identifies a FHIR R4 resource or Bundle (as `serde_json::Value`).
///
/// The top level must be an object with a string `resourceType`; a Bundle's `entry` must be an
/// array of objects whose `resource` (if any) is an object. Elsewhere a value of the wrong type
/// in an identifier-bearing place is removed and reported as [`Category::Malformed`].
pub fn deidentify(resource: &Value, config: &DeidConfig) -> Result<Deidentified, DeidError> {
    walk::run(resource, config)
}

/// The pseudonymous id a resource `resource_type/id` gets under `key` (32 hex digits): what
/// [`deidentify`] writes into `id` and into references to that resource.
pub fn pseudonymous_id(key: &PseudonymKey, resource_type: &str, id: &str) -> String {
    rules::pseudo_id(key, resource_type, id)
}

//! Errors of the privacy library.

/// Why a national health ID was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing but whitespace.
    #[error("the health ID is empty")]
    Empty,
    /// An ABHA number with the wrong number of digits.
    #[error("an ABHA number has exactly 14 digits; this one has {digits}")]
    AbhaNumberLength {
        /// Digits found.
        digits: usize,
    },
    /// A character that is not allowed at all.
    #[error("character {ch:?} at position {column} is not allowed in {what}")]
    InvalidCharacter {
        /// The character.
        ch: char,
        /// 1-based position in the trimmed input.
        column: usize,
        /// "an ABHA number" / "an ABHA address".
        what: &'static str,
    },
    /// A separator at the start or end, or two in a row.
    #[error(
        "separator at position {column} is misplaced: write an ABHA number as 14 digits or \
         grouped like 12-3456-7890-1234"
    )]
    MisplacedSeparator {
        /// 1-based position.
        column: usize,
    },
    /// All 14 digits are the same (a placeholder, never issued).
    #[error("an ABHA number of one repeated digit is a placeholder, not a real number")]
    AllSameDigit,
    /// No `@domain` part.
    #[error("an ABHA address needs a domain: write it as name@abdm (or name@sbx in the sandbox)")]
    MissingDomain,
    /// A domain other than `abdm` or `sbx`.
    #[error("unknown ABHA address domain @{domain}; expected @abdm or @sbx")]
    UnknownDomain {
        /// The domain found.
        domain: String,
    },
    /// User part too short or long.
    #[error("the part before @ has {len} characters; it must have {min} to {max}")]
    AbhaAddressLength {
        /// Length found.
        len: usize,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// `.` or `_` at the start or end of the user part.
    #[error("an ABHA address may not start or end with {ch:?}")]
    SpecialAtEdge {
        /// The character.
        ch: char,
    },
    /// More than one `.` or more than one `_`.
    #[error("an ABHA address may contain at most one {ch:?}")]
    TooManySpecial {
        /// The character.
        ch: char,
    },
    /// Unknown scheme name.
    #[error("unknown national ID scheme {0:?}; known: abha-number, abha-address")]
    UnknownScheme(String),
}

/// Errors of pseudonym commitments and link proofs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PseudonymError {
    /// Hex input that is not 64 hex digits (32 bytes).
    #[error("{what} must be 64 hex digits (32 bytes), optionally 0x-prefixed")]
    BadHex {
        /// What was being parsed.
        what: &'static str,
    },
    /// The revealed ID and secret do not recompute the commitment.
    #[error("the revealed health ID and secret do not match this pseudonym commitment")]
    LinkMismatch,
    /// The revealed ID does not validate.
    #[error("the revealed health ID is invalid: {0}")]
    Id(#[from] IdError),
}

/// Errors of FHIR de-identification. Nothing is returned on error; the input is never modified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeidError {
    /// The document is not a JSON object.
    #[error("a FHIR resource must be a JSON object; got {found}")]
    NotAnObject {
        /// JSON type found.
        found: &'static str,
    },
    /// No `resourceType`.
    #[error("the JSON object at {path} has no resourceType: it is not a FHIR resource")]
    MissingResourceType {
        /// JSON Pointer.
        path: String,
    },
    /// A structural element has the wrong JSON type.
    #[error("{path} must be {expected}, found {found}")]
    UnexpectedType {
        /// JSON Pointer.
        path: String,
        /// Expected JSON type.
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },
    /// Nesting deeper than any FHIR resource needs.
    #[error("the document nests deeper than {max} levels at {path}; refusing to process it")]
    TooDeep {
        /// JSON Pointer.
        path: String,
        /// Limit.
        max: usize,
    },
}

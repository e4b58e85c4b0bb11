//! National health IDs: validation and normalization.
//!
//! India's ABDM issues two identifiers per person:
//! - the **ABHA number**, 14 random digits, usually printed as `12-3456-7890-1234`;
//! - the **ABHA address**, a self-chosen handle `name@abdm` (`name@sbx` in the sandbox).
//!
//! Both normalize to one canonical string, so the same person always yields the same
//! pseudonym commitment however the ID was typed. [`NationalId`] is an enum so other schemes can
//! be added beside ABHA.

use std::fmt;
use std::str::FromStr;

use crate::IdError;

/// Digits of an ABHA number.
pub const ABHA_NUMBER_DIGITS: usize = 14;
/// Shortest user part of an ABHA address.
pub const ABHA_ADDRESS_MIN_LEN: usize = 8;
/// Longest user part of an ABHA address.
pub const ABHA_ADDRESS_MAX_LEN: usize = 18;

/// The identification scheme of a [`NationalId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdScheme {
    /// ABDM ABHA number (14 digits).
    AbhaNumber,
    /// ABDM ABHA address (`name@abdm`).
    AbhaAddress,
}

impl IdScheme {
    /// Stable name, also the domain-separation tag in pseudonym commitments.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdScheme::AbhaNumber => "abha-number",
            IdScheme::AbhaAddress => "abha-address",
        }
    }
}

impl FromStr for IdScheme {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "abha-number" | "abha" => Ok(IdScheme::AbhaNumber),
            "abha-address" => Ok(IdScheme::AbhaAddress),
            other => Err(IdError::UnknownScheme(other.to_string())),
        }
    }
}

impl fmt::Display for IdScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated ABHA number: exactly 14 ASCII digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AbhaNumber(String);

impl AbhaNumber {
    /// Parses `12345678901234`, `12-3456-7890-1234`, `12 3456 7890 1234` (single `-` or space
    /// separators between digits), trimming surrounding whitespace.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdError::Empty);
        }
        let mut digits = String::with_capacity(ABHA_NUMBER_DIGITS);
        let mut last_was_sep = true; // a separator first is misplaced
        let count = trimmed.chars().count();
        for (i, ch) in trimmed.chars().enumerate() {
            let column = i + 1;
            match ch {
                '0'..='9' => {
                    digits.push(ch);
                    last_was_sep = false;
                }
                '-' | ' ' => {
                    if last_was_sep || column == count {
                        return Err(IdError::MisplacedSeparator { column });
                    }
                    last_was_sep = true;
                }
                _ => {
                    return Err(IdError::InvalidCharacter {
                        ch,
                        column,
                        what: "an ABHA number",
                    })
                }
            }
        }
        if digits.len() != ABHA_NUMBER_DIGITS {
            return Err(IdError::AbhaNumberLength {
                digits: digits.len(),
            });
        }
        let first = digits.as_bytes()[0];
        if digits.bytes().all(|b| b == first) {
            return Err(IdError::AllSameDigit);
        }
        Ok(AbhaNumber(digits))
    }

    /// The 14 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Printed form `12-3456-7890-1234`.
    pub fn formatted(&self) -> String {
        let d = &self.0;
        format!("{}-{}-{}-{}", &d[..2], &d[2..6], &d[6..10], &d[10..])
    }
}

impl fmt::Debug for AbhaNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: show only the last four digits.
        write!(f, "AbhaNumber(xx-xxxx-xxxx-{})", &self.0[10..])
    }
}

/// ABHA address domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbhaDomain {
    /// Production: `@abdm`.
    Abdm,
    /// Sandbox: `@sbx`.
    Sbx,
}

impl AbhaDomain {
    /// The domain without `@`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AbhaDomain::Abdm => "abdm",
            AbhaDomain::Sbx => "sbx",
        }
    }
}

/// A validated, lower-cased ABHA address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AbhaAddress {
    user: String,
    domain: AbhaDomain,
}

impl AbhaAddress {
    /// Parses `name@abdm` / `name@sbx`, case-insensitively. The user part has 8–18 characters
    /// from `a-z 0-9 . _`, at most one `.` and one `_`, neither at the start or end.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdError::Empty);
        }
        let lower = trimmed.to_ascii_lowercase();
        let Some((user, domain)) = lower.split_once('@') else {
            return Err(IdError::MissingDomain);
        };
        let domain = match domain {
            "abdm" => AbhaDomain::Abdm,
            "sbx" => AbhaDomain::Sbx,
            "" => return Err(IdError::MissingDomain),
            other => {
                return Err(IdError::UnknownDomain {
                    domain: other.to_string(),
                })
            }
        };
        for (i, ch) in user.chars().enumerate() {
            if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '_') {
                return Err(IdError::InvalidCharacter {
                    ch,
                    column: i + 1,
                    what: "an ABHA address",
                });
            }
        }
        let len = user.len();
        if !(ABHA_ADDRESS_MIN_LEN..=ABHA_ADDRESS_MAX_LEN).contains(&len) {
            return Err(IdError::AbhaAddressLength {
                len,
                min: ABHA_ADDRESS_MIN_LEN,
                max: ABHA_ADDRESS_MAX_LEN,
            });
        }
        for special in ['.', '_'] {
            if user.starts_with(special) || user.ends_with(special) {
                return Err(IdError::SpecialAtEdge { ch: special });
            }
            if user.matches(special).count() > 1 {
                return Err(IdError::TooManySpecial { ch: special });
            }
        }
        Ok(AbhaAddress {
            user: user.to_string(),
            domain,
        })
    }

    /// The part before `@`.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The domain.
    pub fn domain(&self) -> AbhaDomain {
        self.domain
    }
}

impl fmt::Display for AbhaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain.as_str())
    }
}

impl fmt::Debug for AbhaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AbhaAddress(…@{})", self.domain.as_str())
    }
}

/// A validated national health ID of some scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NationalId {
    /// ABHA number.
    AbhaNumber(AbhaNumber),
    /// ABHA address.
    AbhaAddress(AbhaAddress),
}

impl NationalId {
    /// Parses by shape: anything with `@` is an ABHA address, anything else an ABHA number.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        if input.contains('@') {
            AbhaAddress::parse(input).map(NationalId::AbhaAddress)
        } else {
            AbhaNumber::parse(input).map(NationalId::AbhaNumber)
        }
    }

    /// Parses as the given scheme.
    pub fn parse_as(scheme: IdScheme, input: &str) -> Result<Self, IdError> {
        match scheme {
            IdScheme::AbhaNumber => AbhaNumber::parse(input).map(NationalId::AbhaNumber),
            IdScheme::AbhaAddress => AbhaAddress::parse(input).map(NationalId::AbhaAddress),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> IdScheme {
        match self {
            NationalId::AbhaNumber(_) => IdScheme::AbhaNumber,
            NationalId::AbhaAddress(_) => IdScheme::AbhaAddress,
        }
    }

    /// The normalized form: 14 digits, or `user@domain` lower-cased.
    pub fn normalized(&self) -> String {
        match self {
            NationalId::AbhaNumber(n) => n.as_str().to_string(),
            NationalId::AbhaAddress(a) => a.to_string(),
        }
    }

    /// Bytes hashed into pseudonym commitments: `scheme ‖ 0x00 ‖ normalized`, so equal strings
    /// under different schemes never collide.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let scheme = self.scheme().as_str();
        let norm = self.normalized();
        let mut out = Vec::with_capacity(scheme.len() + 1 + norm.len());
        out.extend_from_slice(scheme.as_bytes());
        out.push(0);
        out.extend_from_slice(norm.as_bytes());
        out
    }
}

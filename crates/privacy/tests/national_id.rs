//! Validation and normalization of national health IDs.

use pmr_privacy::{AbhaDomain, IdError, IdScheme, NationalId};

#[test]
fn abha_numbers_normalize_to_14_digits() {
    for spelling in [
        "12-3456-7890-1234",
        "12345678901234",
        "12 3456 7890 1234",
        "  12-3456-7890-1234\n",
        "1234-5678-9012-34",
    ] {
        let id = NationalId::parse(spelling).expect(spelling);
        assert_eq!(id.scheme(), IdScheme::AbhaNumber);
        assert_eq!(id.normalized(), "12345678901234", "{spelling}");
    }
    let NationalId::AbhaNumber(n) = NationalId::parse("12345678901234").expect("valid") else {
        panic!("an ABHA number");
    };
    assert_eq!(n.formatted(), "12-3456-7890-1234");
    assert_eq!(format!("{n:?}"), "AbhaNumber(xx-xxxx-xxxx-1234)");
}

#[test]
fn abha_number_errors_are_precise() {
    assert_eq!(NationalId::parse("   "), Err(IdError::Empty));
    assert_eq!(
        NationalId::parse("12-3456-7890-123"),
        Err(IdError::AbhaNumberLength { digits: 13 })
    );
    assert_eq!(
        NationalId::parse("123456789012345"),
        Err(IdError::AbhaNumberLength { digits: 15 })
    );
    assert_eq!(
        NationalId::parse("12-3456-78A0-1234"),
        Err(IdError::InvalidCharacter {
            ch: 'A',
            column: 11,
            what: "an ABHA number"
        })
    );
    assert_eq!(
        NationalId::parse("12.3456.7890.1234"),
        Err(IdError::InvalidCharacter {
            ch: '.',
            column: 3,
            what: "an ABHA number"
        })
    );
    // Devanagari digits are not ASCII digits.
    assert!(matches!(
        NationalId::parse("१२३४५६७८९०१२३४"),
        Err(IdError::InvalidCharacter {
            ch: '१',
            column: 1,
            ..
        })
    ));
    assert_eq!(
        NationalId::parse("-12-3456-7890-1234"),
        Err(IdError::MisplacedSeparator { column: 1 })
    );
    assert_eq!(
        NationalId::parse("12--3456-7890-1234"),
        Err(IdError::MisplacedSeparator { column: 4 })
    );
    assert_eq!(
        NationalId::parse("12-3456-7890-1234-"),
        Err(IdError::MisplacedSeparator { column: 18 })
    );
    assert_eq!(
        NationalId::parse("11-1111-1111-1111"),
        Err(IdError::AllSameDigit)
    );
    assert_eq!(
        NationalId::parse("00000000000000"),
        Err(IdError::AllSameDigit)
    );
    assert_eq!(
        NationalId::parse("12-3456-7890-123")
            .expect_err("must be rejected")
            .to_string(),
        "an ABHA number has exactly 14 digits; this one has 13"
    );
}

#[test]
fn abha_addresses_normalize_to_lower_case() {
    let id = NationalId::parse("  Lakshmi.Priya61@ABDM ").expect("valid");
    assert_eq!(id.scheme(), IdScheme::AbhaAddress);
    assert_eq!(id.normalized(), "lakshmi.priya61@abdm");
    let NationalId::AbhaAddress(a) = NationalId::parse("test_user99@sbx").expect("valid") else {
        panic!("an ABHA address");
    };
    assert_eq!(a.domain(), AbhaDomain::Sbx);
    assert_eq!(a.user(), "test_user99");
    // The default address of an ABHA number is the 14 digits.
    assert_eq!(
        NationalId::parse("91552377814402@abdm")
            .expect("valid")
            .normalized(),
        "91552377814402@abdm"
    );
    assert!(NationalId::parse("ab.cd_efgh@abdm").is_ok());
}

#[test]
fn abha_address_errors_are_precise() {
    assert_eq!(
        NationalId::parse_as(IdScheme::AbhaAddress, "lakshmipriya"),
        Err(IdError::MissingDomain)
    );
    assert_eq!(
        NationalId::parse("lakshmipriya@"),
        Err(IdError::MissingDomain)
    );
    assert_eq!(
        NationalId::parse("lakshmipriya@gmail.com"),
        Err(IdError::UnknownDomain {
            domain: "gmail.com".into()
        })
    );
    assert_eq!(
        NationalId::parse("short@abdm"),
        Err(IdError::AbhaAddressLength {
            len: 5,
            min: 8,
            max: 18
        })
    );
    assert_eq!(
        NationalId::parse("abcdefghijklmnopqrs@abdm"),
        Err(IdError::AbhaAddressLength {
            len: 19,
            min: 8,
            max: 18
        })
    );
    assert_eq!(
        NationalId::parse("lakshmi-priya@abdm"),
        Err(IdError::InvalidCharacter {
            ch: '-',
            column: 8,
            what: "an ABHA address"
        })
    );
    assert!(matches!(
        NationalId::parse("lakshmí.priya@abdm"),
        Err(IdError::InvalidCharacter { ch: 'í', .. })
    ));
    assert_eq!(
        NationalId::parse(".lakshmipriya@abdm"),
        Err(IdError::SpecialAtEdge { ch: '.' })
    );
    assert_eq!(
        NationalId::parse("lakshmipriya_@abdm"),
        Err(IdError::SpecialAtEdge { ch: '_' })
    );
    assert_eq!(
        NationalId::parse("l.akshmi.priya@abdm"),
        Err(IdError::TooManySpecial { ch: '.' })
    );
    assert_eq!(
        NationalId::parse("lak@shmipriya@abdm"),
        Err(IdError::UnknownDomain {
            domain: "shmipriya@abdm".into()
        })
    );
}

#[test]
fn schemes_parse_by_name() {
    assert_eq!("abha-number".parse::<IdScheme>(), Ok(IdScheme::AbhaNumber));
    assert_eq!(
        "ABHA-Address".parse::<IdScheme>(),
        Ok(IdScheme::AbhaAddress)
    );
    assert_eq!(
        "aadhaar".parse::<IdScheme>(),
        Err(IdError::UnknownScheme("aadhaar".into()))
    );
    // parse_as refuses the other shape.
    assert_eq!(
        NationalId::parse_as(IdScheme::AbhaNumber, "lakshmipriya@abdm"),
        Err(IdError::InvalidCharacter {
            ch: 'l',
            column: 1,
            what: "an ABHA number"
        })
    );
}

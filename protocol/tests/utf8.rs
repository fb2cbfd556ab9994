//! The incremental UTF-8 validator against `std::str::from_utf8`.

use hydrogen_ws_protocol::Utf8Validator;
use proptest::prelude::*;

/// Feed `bytes` in pieces cut at `cuts`; Ok if valid and complete.
fn validate(bytes: &[u8], cuts: &[usize]) -> bool {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c <= bytes.len()).collect();
    bounds.push(bytes.len());
    bounds.sort_unstable();
    let mut v = Utf8Validator::new();
    let mut start = 0;
    for end in bounds {
        if v.feed(&bytes[start..end]).is_err() {
            return false;
        }
        start = end;
    }
    v.finish().is_ok()
}

/// How many bytes std needs to see before it knows the input is invalid: the shortest prefix
/// that std rejects outright (not merely as incomplete).
fn std_fail_point(bytes: &[u8]) -> Option<usize> {
    (1..=bytes.len())
        .find(|&n| std::str::from_utf8(&bytes[..n]).is_err_and(|e| e.error_len().is_some()))
}

/// Feed one byte at a time and report at which byte count the validator failed.
fn bytewise_fail_point(bytes: &[u8]) -> Option<usize> {
    let mut v = Utf8Validator::new();
    for (i, b) in bytes.iter().enumerate() {
        if v.feed(std::slice::from_ref(b)).is_err() {
            return Some(i + 1);
        }
    }
    None
}

#[test]
fn autobahn_style_sequences_every_split() {
    let cases: &[&[u8]] = &[
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xc0\x80",
        b"\xe0\x80\x80",
        b"\xf0\x80\x80\x80",
        b"\xf4\x90\x80\x80",
        b"\xf7\xbf\xbf\xbf",
        b"\xf8\x88\x80\x80\x80",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
        b"\xef\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"a\xc2",
        b"\x80",
        b"\xbf",
        b"\xfe",
    ];
    for c in cases {
        let std_ok = std::str::from_utf8(c).is_ok();
        for a in 0..=c.len() {
            for b in a..=c.len() {
                assert_eq!(validate(c, &[a, b]), std_ok, "{c:02x?} cut {a},{b}");
            }
        }
        // Fail-fast: at exactly the byte std rejects.
        assert_eq!(bytewise_fail_point(c), std_fail_point(c), "{c:02x?}");
    }
}

#[test]
fn reset_forgets_partial_sequence() {
    let mut v = Utf8Validator::default();
    v.feed(b"\xe2\x82").unwrap();
    v.reset();
    assert!(v.feed(b"abc").is_ok());
    assert!(v.finish().is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_match_std(
        bytes in prop::collection::vec(prop_oneof![any::<u8>(), 0x80u8..0xC0, 0xC0u8..0xF8], 0..64),
        cuts in prop::collection::vec(0usize..64, 0..6),
    ) {
        prop_assert_eq!(validate(&bytes, &cuts), std::str::from_utf8(&bytes).is_ok());
        prop_assert_eq!(bytewise_fail_point(&bytes), std_fail_point(&bytes));
    }

    #[test]
    fn random_strings_are_valid(s in "\\PC{0,100}", cuts in prop::collection::vec(0usize..400, 0..6)) {
        prop_assert!(validate(s.as_bytes(), &cuts));
    }
}

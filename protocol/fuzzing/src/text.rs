//! The `utf8` target.

use std::str;

use super::{pieces, split_spec};
use hydrogen_ws_protocol::Utf8Validator;

/// The incremental validator against `std::str::from_utf8`: fed the pieces of [`split_spec`]
/// (and byte by byte), it must fail at exactly the piece after which the input can no longer be
/// completed as UTF-8, report an incomplete sequence exactly when std sees one at the end of the
/// prefix, and finish successfully exactly when the whole input is UTF-8.
pub fn utf8(input: &[u8]) {
    let (lens, _, data) = split_spec(input);
    for lens in [&lens[..], &[1][..]] {
        let mut v = Utf8Validator::new();
        let mut fed = 0;
        let mut failed = false;
        for piece in pieces(data, lens) {
            fed += piece.len();
            let prefix = str::from_utf8(data.get(..fed).unwrap_or_default());
            let impossible = matches!(prefix, Err(e) if e.error_len().is_some());
            assert_eq!(v.feed(piece).is_err(), impossible, "{data:02x?} at {fed}");
            if impossible {
                failed = true;
                break;
            }
            assert_eq!(v.is_incomplete(), prefix.is_err(), "{data:02x?} at {fed}");
        }
        if !failed {
            assert_eq!(
                v.finish().is_ok(),
                str::from_utf8(data).is_ok(),
                "{data:02x?}"
            );
            assert!(!v.is_incomplete());
        }
        // Reset leaves nothing behind: a fresh input validates on its own.
        v.reset();
        assert!(v.feed("é".as_bytes()).and_then(|()| v.finish()).is_ok());
    }
}

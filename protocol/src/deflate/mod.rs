//! permessage-deflate (RFC 7692): negotiation ([`negotiate`], [`DeflateParams`]), the codec of
//! each direction ([`Deflater`], [`Inflater`]) and the [`Extension`] that puts them on a
//! [`Session`](crate::Session) ([`PerMessageDeflate`]).
//!
//! ```
//! use hydrogen_ws_protocol::deflate::{negotiate, DeflateConfig, PerMessageDeflate};
//! use hydrogen_ws_protocol::{Extension, OpCode, Role, RSV1};
//!
//! // The server picks the first offer it can honour and answers with the agreed parameters.
//! let offers = ["permessage-deflate; client_max_window_bits"];
//! let agreed = negotiate(&offers, &DeflateConfig::default()).expect("accepted");
//! assert_eq!(agreed.to_string(), "permessage-deflate");
//!
//! // Each end compresses what it sends and inflates what it receives.
//! let mut server = PerMessageDeflate::new(Role::Server, agreed, 6, 0);
//! let mut client = PerMessageDeflate::new(Role::Client, agreed, 6, 0);
//! let mut wire = Vec::new();
//! assert_eq!(server.encode(OpCode::Text, b"Hello Hello Hello", &mut wire), Ok(RSV1));
//! let mut text = Vec::new();
//! client.decode(RSV1, &wire, &mut text, 1 << 20)?;
//! assert_eq!(text, b"Hello Hello Hello");
//! # Ok::<(), hydrogen_ws_protocol::ExtensionError>(())
//! ```

mod codec;
mod params;

pub use codec::{Deflater, Inflater};
pub use params::{negotiate, DeflateConfig, DeflateParams, ParamsError, NAME};

use crate::error::ExtensionError;
use crate::extension::{Extension, RSV1};
use crate::frame::{OpCode, Role};

/// The offer a client makes: `permessage-deflate; client_max_window_bits` (any server window; the
/// server may limit ours).
pub const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// permessage-deflate on a session: inflates received messages that carry RSV1 and compresses sent
/// data messages of at least `min_size` bytes (smaller ones go out as they are, without RSV1).
///
/// Each direction's (de)compressor is allocated on first use and kept (reset after each message
/// without context takeover; see [`Deflater::release`] and [`Inflater::release`] to give the memory
/// back between messages).
#[derive(Debug)]
pub struct PerMessageDeflate {
    deflater: Deflater,
    inflater: Inflater,
    min_size: usize,
}

impl PerMessageDeflate {
    /// The extension for our `role` with the agreed `params`, compressing at `level` (0..=9) the
    /// messages of at least `min_size` bytes.
    pub fn new(role: Role, params: DeflateParams, level: u32, min_size: usize) -> Self {
        let server_side = (
            params.server_window_bits(),
            params.server_no_context_takeover,
        );
        let client_side = (
            params.client_window_bits(),
            params.client_no_context_takeover,
        );
        let (ours, theirs) = match role {
            Role::Server => (server_side, client_side),
            Role::Client => (client_side, server_side),
        };
        PerMessageDeflate {
            deflater: Deflater::new(ours.0, ours.1, level),
            inflater: Inflater::new(theirs.0, theirs.1),
            min_size,
        }
    }

    /// The compressor of what we send.
    pub fn deflater(&self) -> &Deflater {
        &self.deflater
    }

    /// The compressor of what we send, to [`release`](Deflater::release) it.
    pub fn deflater_mut(&mut self) -> &mut Deflater {
        &mut self.deflater
    }

    /// The decompressor of what we receive.
    pub fn inflater(&self) -> &Inflater {
        &self.inflater
    }

    /// The decompressor of what we receive, to [`release`](Inflater::release) it.
    pub fn inflater_mut(&mut self) -> &mut Inflater {
        &mut self.inflater
    }
}

impl Extension for PerMessageDeflate {
    fn name(&self) -> &str {
        NAME
    }

    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        _rsv: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ExtensionError> {
        self.inflater.decompress(payload, out, max)
    }

    fn encode(
        &mut self,
        _opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, ExtensionError> {
        if payload.len() < self.min_size {
            out.extend_from_slice(payload);
            return Ok(0);
        }
        self.deflater.compress(payload, out)?;
        Ok(RSV1)
    }
}

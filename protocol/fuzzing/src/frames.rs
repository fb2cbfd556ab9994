//! The `frame_decoder` and `roundtrip` targets.

use super::input::{Reader, Writer};
use super::{pieces, split_spec, xor_key};
use hydrogen_ws_protocol::ProtocolError;
use hydrogen_ws_protocol::{
    encode_frame, encode_masked_frame, FrameDecoder, FrameHeader, OpCode, Role,
};

/// Size limits the `frame_decoder` target selects from (bits 4-6 of the first byte).
const FRAME_LIMITS: [u64; 8] = [1 << 16, 0, 1, 125, 126, 65_535, 65_536, u64::MAX];

/// The frame decoder, in both roles: fed in the pieces of [`split_spec`] and byte by byte it
/// must give the same frames and the same error as fed whole; every frame it returns obeys the
/// header rules and re-encodes to the exact bytes it was decoded from.
pub fn frame_decoder(input: &[u8]) {
    let (lens, sel, data) = split_spec(input);
    let max = FRAME_LIMITS
        .get(usize::from(sel))
        .copied()
        .unwrap_or(u64::MAX);
    for role in [Role::Server, Role::Client] {
        let whole = decode_all(role, max, data, &[]);
        assert_eq!(whole, decode_all(role, max, data, &lens), "pieces {lens:?}");
        if data.len() <= 2048 {
            assert_eq!(whole, decode_all(role, max, data, &[1]), "byte by byte");
        }
    }
}

/// What a decoder made of a stream.
#[derive(Debug, Default, PartialEq, Eq)]
struct Decoded {
    /// Headers and unmasked payloads (the last one possibly incomplete).
    frames: Vec<(FrameHeader, Vec<u8>)>,
    error: Option<ProtocolError>,
    in_frame: bool,
}

/// Decode `data` fed in pieces, the way a server reads a socket, checking each chunk.
fn decode_all(role: Role, max: u64, data: &[u8], lens: &[usize]) -> Decoded {
    let mut dec = FrameDecoder::new(role, max);
    let mut out = Decoded::default();
    let mut buf = Vec::new();
    let mut base = 0; // stream offset of buf[0]
    let mut frame_start = 0;
    for piece in pieces(data, lens) {
        buf.extend_from_slice(piece);
        loop {
            let (n, header, chunk_data, first, last, offset) = match dec.decode(&mut buf) {
                Err(e) => {
                    assert_eq!(dec.decode(&mut buf).err(), Some(e), "errors are sticky");
                    out.error = Some(e);
                    return out;
                }
                Ok((0, None)) => break,
                Ok((n, None)) => panic!("{n} bytes consumed without a chunk"),
                Ok((n, Some(c))) => (n, c.header, c.data.to_vec(), c.first, c.last, c.offset),
            };
            assert!(n > 0, "a chunk that consumes nothing");
            check_received_header(role, max, &header);
            if first {
                frame_start = base;
                assert_eq!(offset, 0);
                assert_eq!(n - chunk_data.len(), header.encode().len());
                out.frames.push((header, Vec::new()));
            } else {
                assert_eq!(n, chunk_data.len());
            }
            let Some((h, payload)) = out.frames.last_mut() else {
                panic!("a continuing chunk before any header");
            };
            assert_eq!(*h, header);
            assert_eq!(offset, payload.len() as u64);
            payload.extend_from_slice(&chunk_data);
            assert_eq!(last, payload.len() as u64 == h.len);
            assert!(payload.len() as u64 <= h.len);
            assert_eq!(dec.in_frame(), !last);
            buf.drain(..n);
            base += n;
            if last {
                // Only minimal length encodings are accepted, so re-encoding a frame gives back
                // the exact bytes it came from.
                let wire = put_frame(h, payload);
                assert_eq!(data.get(frame_start..base), Some(&wire[..]));
            }
        }
    }
    out.in_frame = dec.in_frame();
    out
}

/// The rules every header the decoder returns must obey.
fn check_received_header(role: Role, max: u64, h: &FrameHeader) {
    assert_eq!(h.rsv, 0);
    assert_eq!(h.mask.is_some(), role == Role::Server);
    assert!(h.len <= max);
    if h.opcode.is_control() {
        assert!(h.fin && h.len <= 125, "{h:?}");
    }
}

/// `header` (encoded by the crate) then `payload`, masked with the header's key if it has one.
fn put_frame(header: &FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut wire = header.encode().to_vec();
    let start = wire.len();
    wire.extend_from_slice(payload);
    if let (Some(key), Some(body)) = (header.mask, wire.get_mut(start..)) {
        xor_key(body, key);
    }
    wire
}

/// The opcodes a frame can be encoded with.
const OPCODES: [OpCode; 6] = OpCode::ALL;

/// One frame to encode and decode again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundtripInput {
    /// FIN.
    pub fin: bool,
    /// RSV bits (low 3 bits used).
    pub rsv: u8,
    /// Index into the six opcodes (taken modulo 6).
    pub opcode: u8,
    /// Whether the header-only test uses a mask.
    pub masked: bool,
    /// The masking key.
    pub mask: [u8; 4],
    /// Payload length for the header-only test (its top bit is dropped).
    pub len: u64,
    /// Where the frame is cut in two when decoded.
    pub cut: u16,
    /// The payload is repeated up to this many bytes when it is shorter: 0 (as it is),
    /// 1..=4096, or 65 536..=65 791 (the 8-byte length). Big payloads are slow to check, so the
    /// decoder picks them for only one input in eight.
    pub grow: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

impl RoundtripInput {
    /// Decode from fuzz input bytes (never fails; missing bytes read as zero).
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        let flags = r.u8();
        let opcode = r.u8();
        let mask = [r.u8(), r.u8(), r.u8(), r.u8()];
        let len = r.u64();
        let cut = r.u16();
        let grow = match flags >> 5 {
            0..=3 => 0,
            4..=6 => u32::from(r.u16()).min(4096),
            _ => 65_536 + u32::from(r.u8()),
        };
        RoundtripInput {
            fin: flags & 1 != 0,
            rsv: (flags >> 1) & 0x7,
            masked: flags & 0x10 != 0,
            opcode,
            mask,
            len,
            cut,
            grow,
            payload: r.take(usize::MAX).to_vec(),
        }
    }

    /// The inverse of [`RoundtripInput::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let grow: u8 = match self.grow {
            0 => 0,
            1..=65_535 => 4,
            _ => 7,
        };
        w.u8(u8::from(self.fin)
            | ((self.rsv & 0x7) << 1)
            | (u8::from(self.masked) << 4)
            | (grow << 5));
        w.u8(self.opcode);
        w.raw(&self.mask);
        w.u64(self.len);
        w.u16(self.cut);
        match grow {
            0 => {}
            4 => w.u16(self.grow as u16),
            _ => w.u8(self.grow.saturating_sub(65_536).min(255) as u8),
        }
        w.raw(&self.payload);
        w.finish()
    }
}

/// The header rules [`FrameHeader::parse`] applies (RFC 6455 section 5.5): control frames are
/// not fragmented and carry at most 125 bytes.
fn control_rule(h: &FrameHeader) -> Result<(), ProtocolError> {
    if h.opcode.is_control() && !h.fin {
        return Err(ProtocolError::ControlFragmented);
    }
    if h.opcode.is_control() && h.len > 125 {
        return Err(ProtocolError::ControlTooLong);
    }
    Ok(())
}

/// Encode then decode: a header with any length through [`FrameHeader::encode`] (and
/// [`HeaderBuf::append_to`](hydrogen_ws_protocol::HeaderBuf::append_to)) / [`FrameHeader::parse`] (bytes checked against the RFC's
/// layout, every prefix incomplete or the same error); then a whole frame through [`FrameDecoder`] as
/// the server receives it (masked) and as the client does (unmasked), cut in two, giving back header
/// and payload or the error due; the role it is not meant for must refuse it for its masking.
pub fn roundtrip(input: &RoundtripInput) {
    let opcode = OPCODES
        .get(usize::from(input.opcode) % OPCODES.len())
        .copied()
        .unwrap_or(OpCode::Binary);
    let h = FrameHeader {
        fin: input.fin,
        rsv: input.rsv & 0x7,
        opcode,
        mask: input.masked.then_some(input.mask),
        len: input.len & (u64::MAX >> 1),
    };
    let enc = h.encode();
    // The layout of RFC 6455 section 5.2, written out.
    let ext: &[u8] = match h.len {
        0..=125 => &[],
        126..=0xFFFF => &(h.len as u16).to_be_bytes(),
        _ => &h.len.to_be_bytes(),
    };
    let len7 = match ext.len() {
        0 => h.len as u8,
        2 => 126,
        _ => 127,
    };
    let mut layout = vec![
        (u8::from(h.fin) << 7) | (h.rsv << 4) | opcode.as_u8(),
        (u8::from(h.mask.is_some()) << 7) | len7,
    ];
    layout.extend_from_slice(ext);
    layout.extend(h.mask.iter().flatten());
    assert_eq!(enc.as_bytes(), &layout[..]);
    // Appended behind other bytes, the same header and nothing else.
    let mut appended = input.payload.clone();
    enc.append_to(&mut appended);
    assert_eq!(
        appended.get(..input.payload.len()),
        Some(&input.payload[..])
    );
    assert_eq!(appended.get(input.payload.len()..), Some(&layout[..]));
    let expected = control_rule(&h).map(|()| Some((h, enc.len())));
    assert_eq!(FrameHeader::parse(&enc), expected);
    for cut in 0..enc.len() {
        let prefix = FrameHeader::parse(enc.get(..cut).unwrap_or_default());
        assert!(
            prefix == Ok(None) || (cut >= 2 && prefix.err() == expected.err()),
            "prefix {cut}: {prefix:?}"
        );
    }

    // A whole frame through the decoder.
    let mut payload = input.payload.clone();
    let grow = input.grow.min(65_536 + 255) as usize;
    if !payload.is_empty() {
        while payload.len() < grow {
            let n = payload.len().min(grow - payload.len());
            payload.extend_from_within(..n);
        }
    }
    for role in [Role::Server, Role::Client] {
        let header = FrameHeader {
            mask: (role == Role::Server).then_some(input.mask),
            len: payload.len() as u64,
            ..h
        };
        let wire = put_frame(&header, &payload);
        if header.rsv == 0 {
            let helper = match header.mask {
                Some(key) => encode_masked_frame(header.fin, opcode, key, &payload),
                None => encode_frame(header.fin, opcode, &payload),
            };
            assert_eq!(helper, wire);
        }
        // The decoder's order: control rules, then RSV, then masking.
        let rule = control_rule(&header).and(if header.rsv != 0 {
            Err(ProtocolError::ReservedBits)
        } else {
            Ok(())
        });
        let cut = usize::from(input.cut) % (wire.len() + 1) + 1;
        let got = decode_all(role, u64::MAX, &wire, &[cut, usize::MAX]);
        match rule {
            Ok(()) => {
                let want = Decoded {
                    frames: vec![(header, payload.clone())],
                    error: None,
                    in_frame: false,
                };
                assert_eq!(got, want);
            }
            Err(e) => assert_eq!(got.error, Some(e)),
        }
        let (other, refusal) = match role {
            Role::Server => (Role::Client, ProtocolError::Masked),
            Role::Client => (Role::Server, ProtocolError::Unmasked),
        };
        let got = decode_all(other, u64::MAX, &wire, &[]);
        assert_eq!(got.error, Some(rule.err().unwrap_or(refusal)));
    }
}

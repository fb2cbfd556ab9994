//! The `session` target: the driver. Its input is in `session_input.rs`, the wire it makes in
//! `wire.rs`, the model of RFC 6455 it is compared with in `model.rs`, the checks in `checks.rs`.

use super::pieces;
use crate::checks::{check_close_code, check_message, check_transmits};
use crate::model::{model, Owned};
use crate::session_input::SessionInput;
use crate::wire::{Step, WireBuilder};
use hydrogen_ws_protocol::CloseCode;
use hydrogen_ws_protocol::ProtocolError;
use hydrogen_ws_protocol::{ControlPayload, Session, SessionConfig, SessionState, Transmit};

/// What a session made of the wire: events with the offset where each was complete, and the
/// error with the offset of the read that failed.
#[derive(Debug, Default)]
struct Run {
    events: Vec<(usize, Owned)>,
    error: Option<(usize, ProtocolError)>,
}

/// The session: no panic; whole, split and byte-by-byte reads agree; the events and error match
/// an independent model of RFC 6455 up to where the wire stops being modelled (a [`Op::Raw`](crate::Op::Raw) or
/// the truncated end); all along, the invariants of `drive` hold.
pub fn session(input: &SessionInput) {
    let config = input.config();
    let mut b = WireBuilder {
        wire: Vec::new(),
        steps: Vec::new(),
        mask: input.mask,
        must_mask: !input.client,
        max_frame_size: config.max_frame_size,
    };
    for op in &input.ops {
        b.op(op);
    }
    let WireBuilder {
        mut wire, steps, ..
    } = b;
    wire.truncate(wire.len().saturating_sub(usize::from(input.truncate)));
    let closes: Vec<usize> = steps
        .iter()
        .filter_map(|s| match s {
            Step::LocalClose { at } if *at <= wire.len() => Some(*at),
            _ => None,
        })
        .collect();
    let reads: Vec<usize> = input.reads.iter().map(|&b| usize::from(b) + 1).collect();

    let whole = drive(config, &wire, &closes, &[]);
    let split = drive(config, &wire, &closes, &reads);
    let kind = |r: &Run| r.error.map(|(_, e)| e);
    assert_eq!(whole.events, split.events, "reads {reads:?}");
    assert_eq!(kind(&whole), kind(&split), "reads {reads:?}");
    if wire.len() <= 1024 {
        let bytewise = drive(config, &wire, &closes, &[1]);
        assert_eq!(whole.events, bytewise.events, "byte by byte");
        assert_eq!(kind(&whole), kind(&bytewise), "byte by byte");
    }

    let (expected, modelled) = model(config, &steps, wire.len());
    for run in [&whole, &split] {
        let seen: Vec<(usize, Owned)> = run
            .events
            .iter()
            .filter(|(end, _)| *end <= modelled)
            .cloned()
            .collect();
        assert_eq!(seen, expected.events, "events up to offset {modelled}");
        match (expected.error, run.error) {
            (Some((_, want)), Some((_, got))) => {
                assert_eq!(got, want);
                assert_eq!(run.events.len(), expected.events.len());
            }
            (Some((at, want)), None) => panic!("expected {want:?} (frame at {at}), got none"),
            (None, Some((at, got))) => {
                assert!(at >= modelled, "{got:?} at {at}, before {modelled}")
            }
            (None, None) => {}
        }
    }
}

/// Feed `wire` to a fresh session the way a server reads a socket: in pieces of `lens` (whole
/// if empty), reading until no progress after each, with [`Session::close_sent`] called at each
/// offset in `closes`. Checks after every call: the assembly buffer within the message limit;
/// nothing delivered (and all input swallowed) once a close was received or the session failed;
/// no data message delivered after we sent a close; control payloads within 125 bytes; state
/// transitions as documented; every error mapped to its close code; the replies handed out by
/// `poll_transmit` exactly the ones RFC 6455 requires.
fn drive(config: SessionConfig, wire: &[u8], closes: &[usize], lens: &[usize]) -> Run {
    let mut session = Session::new(config);
    let mut run = Run::default();
    let mut buf = Vec::new();
    let mut base = 0; // stream offset of buf[0]
    let mut start = 0;
    let mut bounds = closes.to_vec();
    bounds.push(wire.len());
    for (i, &end) in bounds.iter().enumerate() {
        let segment = wire.get(start..end).unwrap_or_default();
        start = end;
        for piece in pieces(segment, lens) {
            buf.extend_from_slice(piece);
            read_all(&mut session, &mut buf, &mut base, &mut run, config);
        }
        if i + 1 < bounds.len() {
            let before = session.state();
            let changed = session.close_sent();
            let (want_changed, after) = match before {
                SessionState::Open => (true, SessionState::CloseSent),
                SessionState::CloseReceived => (true, SessionState::Closed),
                other => (false, other),
            };
            assert_eq!((changed, session.state()), (want_changed, after));
        }
    }
    run
}

fn read_all(
    session: &mut Session,
    buf: &mut Vec<u8>,
    base: &mut usize,
    run: &mut Run,
    config: SessionConfig,
) {
    loop {
        let before = session.state();
        let len = buf.len();
        let (n, owned) = match session.read(buf) {
            Ok((n, ev)) => (n, Owned::from_event(&ev)),
            Err(e) => {
                assert!(run.error.is_none(), "an error after an error");
                assert!(!matches!(
                    before,
                    SessionState::CloseReceived | SessionState::Closed
                ));
                assert_eq!(session.state(), SessionState::Closed);
                check_close_code(e);
                // The close the error maps to is owed, unless ours went out.
                let owed = (before == SessionState::Open).then_some(Transmit::Close {
                    code: Some(e.close_code()),
                    reason: e.reason(),
                });
                check_transmits(session, owed);
                assert_eq!(session.state(), SessionState::Closed);
                run.error = Some((*base, e));
                // The server closes the connection; what is buffered is never read again.
                *base += len;
                buf.clear();
                return;
            }
        };
        let after = session.state();
        assert!(n <= len);
        assert!(session.buffered_message_bytes() <= config.max_message_size);
        if matches!(before, SessionState::CloseReceived | SessionState::Closed) {
            assert_eq!(
                (n, &owned),
                (len, &None),
                "input after a close must be ignored"
            );
        }
        match &owned {
            None => assert_eq!(before, after),
            Some(Owned::Text(t)) => check_message(t.len(), before, after, config),
            Some(Owned::Binary(b)) => check_message(b.len(), before, after, config),
            Some(Owned::Ping(p) | Owned::Pong(p)) => {
                assert!(p.len() <= 125);
                assert_eq!(before, after);
            }
            Some(Owned::Close(frame)) => {
                let want = match before {
                    SessionState::Open => SessionState::CloseReceived,
                    _ => SessionState::Closed,
                };
                assert_eq!(after, want);
                if let Some((code, reason)) = frame {
                    assert!(CloseCode(*code).is_sendable(), "received code {code}");
                    assert!(reason.len() <= 123);
                }
            }
        }
        // The replies the RFC requires, handed out once: a pong for a ping and the echo of the
        // peer's close, while our close has not gone out; nothing else.
        let owed = match &owned {
            Some(Owned::Ping(p)) if before == SessionState::Open => {
                ControlPayload::new(p).map(Transmit::Pong)
            }
            Some(Owned::Close(frame)) if before == SessionState::Open => Some(Transmit::Close {
                code: frame.as_ref().map(|(code, _)| CloseCode(*code)),
                reason: "",
            }),
            _ => None,
        };
        check_transmits(session, owed);
        if matches!(owned, Some(Owned::Close(_))) {
            assert_eq!(session.state(), SessionState::Closed);
        }
        let progress = n > 0 || owned.is_some();
        if let Some(ev) = owned {
            run.events.push((*base + n, ev));
        }
        buf.drain(..n);
        *base += n;
        if !progress {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session_input::{CloseBody, Op};

    fn input(ops: Vec<Op>) -> SessionInput {
        SessionInput {
            client: false,
            max_frame_size: 125,
            max_message_size: 200,
            mask: [1, 2, 3, 4],
            truncate: 0,
            reads: vec![2],
            ops,
        }
    }

    /// The session's outcome, after checking that it agrees with the model and the invariants.
    fn outcome(input: &SessionInput) -> (Vec<Owned>, Option<ProtocolError>) {
        session(input);
        let mut b = WireBuilder {
            wire: Vec::new(),
            steps: Vec::new(),
            mask: input.mask,
            must_mask: !input.client,
            max_frame_size: u64::from(input.max_frame_size),
        };
        input.ops.iter().for_each(|op| b.op(op));
        let closes: Vec<usize> = b
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::LocalClose { at } => Some(*at),
                _ => None,
            })
            .collect();
        let run = drive(input.config(), &b.wire, &closes, &[]);
        let events = run.events.into_iter().map(|(_, e)| e).collect();
        (events, run.error.map(|(_, e)| e))
    }

    fn text(s: &str, fragments: &[u8]) -> Op {
        Op::Text {
            text: s.into(),
            fragments: fragments.to_vec(),
            corrupt: None,
        }
    }

    fn close(code: u16) -> Op {
        Op::Close(CloseBody::Code {
            code,
            reason: String::new(),
        })
    }

    /// The target is not vacuous: each kind of scenario ends the way RFC 6455 says.
    #[test]
    fn scenarios_end_as_the_rfc_says() {
        use ProtocolError as E;
        let (events, error) = outcome(&input(vec![text("κόσμε", &[1, 2]), close(1000)]));
        assert_eq!(
            events,
            vec![
                Owned::Text("κόσμε".into()),
                Owned::Close(Some((1000, String::new())))
            ]
        );
        assert_eq!(error, None);
        let cases = [
            (vec![close(1005)], E::InvalidCloseCode(1005)),
            (vec![Op::Close(CloseBody::OneByte(3))], E::CloseTooShort),
            (vec![Op::Ping(vec![0; 126])], E::ControlTooLong),
            (
                vec![Op::Oversize {
                    opcode: 2,
                    fin: true,
                    len: 1 << 40,
                }],
                E::FrameTooLarge,
            ),
            (
                vec![Op::Message {
                    text: false,
                    payload: vec![0; 201],
                    fragments: vec![100, 100],
                    ping_after: 0,
                }],
                E::MessageTooLarge,
            ),
            (
                vec![Op::Message {
                    text: true,
                    payload: b"\xce\xba\xed\xa0\x80".to_vec(),
                    fragments: vec![1, 2],
                    ping_after: 1,
                }],
                E::InvalidUtf8,
            ),
            (
                vec![Op::Frame {
                    fin: true,
                    rsv: 0,
                    opcode: 0,
                    wrong_mask: false,
                    payload: vec![],
                }],
                E::UnexpectedContinuation,
            ),
            (
                vec![Op::Frame {
                    fin: true,
                    rsv: 0,
                    opcode: 1,
                    wrong_mask: true,
                    payload: vec![],
                }],
                E::Unmasked,
            ),
        ];
        for (ops, want) in cases {
            assert_eq!(outcome(&input(ops.clone())).1, Some(want), "{ops:?}");
        }
        // After our close: data is discarded, pings still come, the peer's close ends it.
        let (events, error) = outcome(&input(vec![
            Op::LocalClose,
            text("dropped", &[3]),
            Op::Ping(b"p".to_vec()),
            close(1001),
            text("after", &[]),
        ]));
        assert_eq!(
            events,
            vec![
                Owned::Ping(b"p".to_vec()),
                Owned::Close(Some((1001, String::new())))
            ]
        );
        assert_eq!(error, None);
    }
}

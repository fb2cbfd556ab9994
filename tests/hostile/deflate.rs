//! permessage-deflate abuse: a compression bomb (1009 as soon as the limit is passed, RSS flat) and
//! offers with thousands of parameters or offers (declined, in time linear in their length), each next
//! to a bystander that keeps its echoes.

use std::time::{Duration, Instant};

use hydrogen_ws::Echo;
use hydrogen_ws_protocol::deflate::{Deflater, CLIENT_OFFER};
use hydrogen_ws_protocol::{apply_mask, FrameHeader, OpCode, RSV1};

use crate::common::*;
use crate::support::{config, server_with, upgrade_request, RawClient};

/// A connection that agreed permessage-deflate (retrying for a moment while the server answers 503: a
/// worker that just finished with a connection is returned to the pool a moment later).
fn open_deflate(addr: std::net::SocketAddr) -> RawClient {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = RawClient::connect(addr);
        c.send_raw(
            upgrade_request(&format!("Sec-WebSocket-Extensions: {CLIENT_OFFER}\r\n")).as_bytes(),
        );
        let r = c.read_response().expect("response");
        if r.status == 503 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(r.status, 101, "{r:?}");
        assert!(r.header("Sec-WebSocket-Extensions").is_some(), "{r:?}");
        return c;
    }
}

/// A compressed message that inflates to `gib` GiB of zeros: 1 MiB of zeros compresses to about 1 KiB
/// (DEFLATE's best ratio is about 1032:1), and because a stream of zeros refers back only one byte, the
/// same blocks can simply be repeated, 1,024 times per GiB.
fn bomb(gib: usize) -> Vec<u8> {
    let mut block = Vec::new();
    Deflater::new(15, true, 9)
        .compress(&vec![0u8; 1 << 20], &mut block)
        .expect("compress");
    // Each copy needs its sync-flush tail back to end on a byte boundary; the last one's is left to
    // the receiver, as RFC 7692 says.
    block.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = block.repeat(1024 * gib);
    out.truncate(out.len() - 4);
    out
}

fn rsv1_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [9, 8, 7, 6];
    let mut header = FrameHeader::new(true, OpCode::Binary, Some(mask), payload.len() as u64);
    header.rsv = RSV1;
    let mut frame = header.encode().to_vec();
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], mask, 0);
    frame
}

#[test]
fn a_message_that_inflates_to_a_gibibyte_is_closed_with_1009_and_rss_stays_flat() {
    let _g = exclusive();
    let mut cfg = config();
    cfg.limits.max_message_size = 16 << 20;
    cfg.limits.max_frame_size = 16 << 20;
    // The bystander's worker and one for the bombs: each worker thread has its own allocator arena,
    // which keeps the memory of its largest message for the next one (as after any large message).
    cfg.threads = 2;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let payload = bomb(1);
    assert!(payload.len() < 1_200_000, "{} bytes", payload.len());
    let frame = rsv1_frame(&payload);
    let before = rss_kib();
    let bombed = || {
        let started = Instant::now();
        let mut c = open_deflate(addr);
        c.send_raw(&frame);
        let (code, reason) = read_close(&mut c, "the bomb");
        assert_eq!(code, 1009, "{reason}");
        // Inflating stops at the 16 MiB limit, not at 1 GiB.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "took {took:?}");
    };
    // The first bomb leaves the worker's allocator arena holding about one limit's worth (glibc
    // raises its mmap threshold after freeing a large block, and keeps such blocks for the next
    // one); more bombs find it there: RSS stays flat.
    bombed();
    let warm = rss_kib();
    assert!(
        warm < before + 2 * 16 * 1024 + 8 * 1024,
        "RSS went from {before} KiB to {warm} KiB after one bomb"
    );
    for _ in 0..3 {
        bombed();
        still_served(&mut bystander);
    }
    let after = rss_kib();
    assert!(
        after < warm + 4 * 1024,
        "RSS went from {warm} KiB to {after} KiB over three more bombs"
    );
    server.shutdown();
}

#[test]
fn offers_with_thousands_of_parameters_are_declined_quickly() {
    let _g = shared();
    let mut cfg = config();
    cfg.limits.max_header_bytes = 4 << 20;
    let server = server_with(cfg, Echo);
    let addr = server.local_addr();
    let mut bystander = RawClient::open(addr);
    let offers = [
        // One offer, 200,000 unknown parameters.
        format!("permessage-deflate{}", "; x".repeat(200_000)),
        // One offer, 200,000 repeats of a valid parameter.
        format!(
            "permessage-deflate{}",
            "; client_no_context_takeover".repeat(100_000)
        ),
        // 50,000 offers, each bad.
        vec!["permessage-deflate; server_max_window_bits=99"; 50_000].join(", "),
        // Quotes that never close.
        format!("permessage-deflate; x=\"{}", "a,".repeat(200_000)),
    ];
    for offer in offers {
        let started = Instant::now();
        let mut c = RawClient::connect(addr);
        c.send_raw(upgrade_request(&format!("Sec-WebSocket-Extensions: {offer}\r\n")).as_bytes());
        let r = c.read_response().expect("response");
        let took = started.elapsed();
        assert_eq!(r.status, 101, "{}", &offer[..60]);
        assert_eq!(
            r.header("Sec-WebSocket-Extensions"),
            None,
            "{}",
            &offer[..60]
        );
        assert!(
            took < Duration::from_secs(2),
            "{took:?} for {}",
            &offer[..60]
        );
        echo(&mut c, b"works without deflate");
    }
    // Within the default 8 KiB head: 2,000 parameters.
    let offer = format!("permessage-deflate{}", "; x".repeat(2_000));
    let server2 = server_with(config(), Echo);
    let mut c = RawClient::connect(server2.local_addr());
    c.send_raw(upgrade_request(&format!("Sec-WebSocket-Extensions: {offer}\r\n")).as_bytes());
    let r = c.read_response().expect("response");
    assert_eq!(
        (r.status, r.header("Sec-WebSocket-Extensions")),
        (101, None)
    );
    still_served(&mut bystander);
    server2.shutdown();
    server.shutdown();
}

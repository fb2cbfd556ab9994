//! How a connection reacts: to the server's bytes, to its socket's events, and to its timers.

use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hydrogen_ws_protocol::{encode_masked_frame, OpCode};

use super::{payload_byte, Client, Flow, Kind, St, RAMP, RUN, STOP};
use crate::support::frames;
use crate::{ATTACK_TIMEOUT, CLOSE_TIMEOUT, ECHO_TIMEOUT};

impl Client<'_> {
    pub(super) fn send_message(&mut self, i: usize) {
        let size = {
            let (lo, hi) = (self.ctx.min_size as f64, self.ctx.max_size as f64);
            if self.ctx.warmup {
                self.ctx.max_size
            } else {
                (lo * (hi / lo).powf(self.rng.unit())).round() as usize
            }
        };
        let c = &mut self.conns[i];
        c.seq += 1;
        let seq = c.seq.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let opcode = if c.seq.is_multiple_of(2) { 1u8 } else { 2 };
        let payload: Vec<u8> = (0..size).map(|k| payload_byte(seq, k, opcode)).collect();
        let op = if opcode == 1 {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        self.queue(i, op, &payload);
        let now = Instant::now();
        self.conns[i].in_flight = Some((now, seq, size, opcode));
        self.ctx.sent_total.fetch_add(1, Ordering::Relaxed);
        self.set_wake(i, now + ECHO_TIMEOUT);
    }

    pub(super) fn start_close(&mut self, i: usize) {
        self.queue(i, OpCode::Close, &1000u16.to_be_bytes());
        self.conns[i].st = St::Closing;
        self.set_wake(i, Instant::now() + CLOSE_TIMEOUT);
    }

    /// After an echo: close, wait for the soak to start, or think and then send the next message.
    pub(super) fn after_echo(&mut self, i: usize) {
        match self.ctx.phase.load(Ordering::Relaxed) {
            STOP => self.start_close(i),
            // Ramp (or the warm-up): look again within a second, so the soak starts spread out.
            RAMP => {
                let at = Instant::now() + Duration::from_millis(1 + self.rng.next() % 1000);
                self.set_wake(i, at);
            }
            _ if self.ctx.warmup => {
                let at = Instant::now() + Duration::from_secs(1);
                self.set_wake(i, at);
            }
            _ if self.ctx.think_ms == 0 => self.send_message(i),
            _ => {
                let ms = self.rng.next() % (2 * self.ctx.think_ms + 1);
                let at = Instant::now() + Duration::from_millis(ms);
                self.set_wake(i, at);
            }
        }
    }

    /// A well-behaved client's timer with nothing in flight: the think time is over.
    pub(super) fn on_idle_timer(&mut self, i: usize) {
        match self.ctx.phase.load(Ordering::Relaxed) {
            STOP => self.start_close(i),
            RUN if !self.ctx.warmup => self.send_message(i),
            _ => {
                let at = Instant::now() + Duration::from_secs(1);
                self.set_wake(i, at);
            }
        }
    }

    /// The connection is established: send what the role sends first.
    pub(super) fn on_connected(&mut self, i: usize) -> Flow {
        let attack = self.conns[i].attack;
        match attack {
            Kind::Slowloris => {
                self.conns[i].st = St::Handshake;
                return self.trickle(i);
            }
            Kind::ResetMidHandshake => {
                let request = self.ctx.request.as_bytes();
                let c = &mut self.conns[i];
                c.wbuf.extend_from_slice(&request[..request.len() / 2]);
                c.st = St::Handshake;
                let at = Instant::now() + Duration::from_millis(20);
                self.set_wake(i, at);
            }
            _ => {
                let c = &mut self.conns[i];
                c.wbuf.extend_from_slice(self.ctx.request.as_bytes());
                c.st = St::Handshake;
            }
        }
        Flow::Keep
    }

    pub(super) fn trickle(&mut self, i: usize) -> Flow {
        const SLOW: &[u8] =
            b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: ";
        let c = &mut self.conns[i];
        let byte = SLOW.get(c.trickled).copied().unwrap_or(b'z');
        c.trickled += 1;
        c.wbuf.push(byte);
        let at = Instant::now() + Duration::from_millis(250);
        self.set_wake(i, at);
        Flow::Keep
    }

    /// The server's 101 (or refusal) arrived for slot `i`.
    pub(super) fn on_response(&mut self, i: usize, status: u16) -> Flow {
        let c = &mut self.conns[i];
        c.st = St::Open;
        self.connecting = self.connecting.saturating_sub(1);
        if c.kind == Kind::Good {
            if status != 101 {
                self.error(format!("handshake answered {status}"));
                return Flow::End(false);
            }
            self.ctx.good_open.fetch_add(1, Ordering::Relaxed);
            self.send_message(i);
            return Flow::Keep;
        }
        self.ctx.hostile_open.fetch_add(1, Ordering::Relaxed);
        let attack = c.attack;
        if attack == Kind::Slowloris {
            let ok = status == 408;
            self.hostile_outcome(i, ok, &format!("answered {status}"));
            return Flow::End(false);
        }
        if status != 101 {
            self.hostile_outcome(i, false, &format!("handshake answered {status}"));
            return Flow::End(false);
        }
        match attack {
            Kind::Garbage => {
                let unmasked = [0x81, 0x03, b'b', b'a', b'd'];
                let reserved = [0x83, 0x80, 1, 2, 3, 4];
                let bytes: &[u8] = if self.conns[i].attacks.is_multiple_of(2) {
                    &unmasked
                } else {
                    &reserved
                };
                self.conns[i].wbuf.extend_from_slice(bytes);
            }
            Kind::Oversize => {
                let header = [0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 9, 8, 7, 6];
                self.conns[i].wbuf.extend_from_slice(&header);
            }
            Kind::ResetMidFrame => {
                let mask = [1, 2, 3, 4];
                let frame = encode_masked_frame(true, OpCode::Binary, mask, &[0x42; 1000]);
                self.conns[i].wbuf.extend_from_slice(&frame[..500]);
                let at = Instant::now() + Duration::from_millis(20);
                self.set_wake(i, at);
            }
            Kind::NeverReads => {
                let frame =
                    encode_masked_frame(true, OpCode::Binary, [9, 9, 9, 9], &[0x33; 16 * 1024]);
                self.conns[i].wbuf.extend_from_slice(&frame);
            }
            _ => {}
        }
        Flow::Keep
    }

    pub(super) fn on_readable(&mut self, i: usize) -> Flow {
        loop {
            let Some(sock) = self.conns[i].sock.as_ref() else {
                return Flow::Keep;
            };
            match (&*sock).read(&mut self.scratch) {
                Ok(0) => return self.on_eof(i),
                Ok(n) => {
                    let c = &mut self.conns[i];
                    c.rbuf.extend_from_slice(&self.scratch[..n]);
                    if n < self.scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.on_io_error(i, &e),
            }
        }
        if self.conns[i].st == St::Handshake {
            let Some(end) = self.conns[i].rbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Flow::Keep;
            };
            let head = String::from_utf8_lossy(&self.conns[i].rbuf[..end]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            self.conns[i].rbuf.drain(..end + 4);
            if let Flow::End(r) = self.on_response(i, status) {
                return Flow::End(r);
            }
        }
        self.on_frames(i)
    }

    pub(super) fn on_frames(&mut self, i: usize) -> Flow {
        let mut used = 0;
        let mut flow = Flow::Keep;
        loop {
            let frame = match frames::server_frame(&mut self.conns[i].rbuf[used..]) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    let what = format!("a frame no server may send: {e}");
                    if self.conns[i].kind == Kind::Good {
                        self.error(what);
                    } else {
                        self.hostile_outcome(i, false, &what);
                    }
                    flow = Flow::End(false);
                    break;
                }
            };
            let start = used;
            used += frame.len;
            let payload = start + frame.payload.start..start + frame.payload.end;
            let opcode = frame.opcode;
            let c = &self.conns[i];
            if c.kind != Kind::Good {
                if opcode == OpCode::Close {
                    let code = frames::close_code(&c.rbuf[payload]);
                    let want = match c.attack {
                        Kind::Garbage => 1002,
                        Kind::Oversize => 1009,
                        _ => 0,
                    };
                    self.hostile_outcome(i, code == want, &format!("closed with {code}"));
                    flow = Flow::End(false);
                    break;
                }
                continue;
            }
            match opcode {
                OpCode::Text | OpCode::Binary => {
                    let Some((sent, seq, size, op)) = c.in_flight else {
                        self.error("a message nobody asked for");
                        flow = Flow::End(false);
                        break;
                    };
                    let data = &c.rbuf[payload];
                    let good = op == opcode.as_u8()
                        && data.len() == size
                        && data
                            .iter()
                            .enumerate()
                            .all(|(k, &b)| b == payload_byte(seq, k, op));
                    if !good {
                        self.error("echo differs from the message");
                        flow = Flow::End(false);
                        break;
                    }
                    let rtt = sent.elapsed();
                    self.local.hist.record(rtt);
                    self.local.window.record(rtt);
                    self.local.messages += 1;
                    self.local.bytes += size as u64;
                    let c = &mut self.conns[i];
                    c.in_flight = None;
                    if !c.first_echo {
                        c.first_echo = true;
                        self.ctx.ready.fetch_add(1, Ordering::Relaxed);
                    }
                    if c.st == St::Open {
                        self.after_echo(i);
                    }
                }
                OpCode::Ping => {
                    let ping = self.conns[i].rbuf[payload].to_vec();
                    if self.conns[i].st == St::Open {
                        self.queue(i, OpCode::Pong, &ping);
                    }
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    if c.st == St::Closing {
                        self.local.closed_clean += 1;
                    } else {
                        let code = frames::close_code(&c.rbuf[payload]);
                        self.error(format!("server closed with {code}"));
                    }
                    flow = Flow::End(false);
                    break;
                }
                OpCode::Continuation => {
                    self.error("unexpected opcode 0");
                    flow = Flow::End(false);
                    break;
                }
            }
        }
        let c = &mut self.conns[i];
        c.rbuf.drain(..used.min(c.rbuf.len()));
        flow
    }

    pub(super) fn on_eof(&mut self, i: usize) -> Flow {
        let c = &self.conns[i];
        match (c.kind, c.st) {
            (Kind::Good, _) => self.error(format!("EOF while {:?}", c.st)),
            _ => {
                let expected = c.attack == Kind::NeverReads && c.st == St::Open;
                self.hostile_outcome(i, expected, "EOF");
            }
        }
        Flow::End(false)
    }

    pub(super) fn on_io_error(&mut self, i: usize, e: &io::Error) -> Flow {
        let c = &self.conns[i];
        if c.kind == Kind::Good {
            self.error(format!("{:?} while {:?}", e.kind(), c.st));
        } else {
            let expected = c.attack == Kind::NeverReads && c.st == St::Open;
            self.hostile_outcome(i, expected, &format!("{:?}", e.kind()));
        }
        Flow::End(true)
    }

    pub(super) fn on_event(&mut self, i: usize, events: u32) {
        let flow = self.handle_event(i, events);
        self.finish_flow(i, flow);
    }

    /// After an event or a timer: a connection that carries on gets its pending output written, one that
    /// is over is ended (with a reset if `End(true)`).
    pub(super) fn finish_flow(&mut self, i: usize, flow: Flow) {
        let flow = match flow {
            Flow::Keep => match self.flush(i) {
                Ok(()) => Flow::Keep,
                Err(e) => self.on_io_error(i, &e),
            },
            end => end,
        };
        if let Flow::End(reset) = flow {
            self.end(i, reset);
        }
    }

    pub(super) fn handle_event(&mut self, i: usize, events: u32) -> Flow {
        let err = events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        let c = &self.conns[i];
        if c.st == St::Connecting {
            let sock = c.sock.as_ref().expect("connecting socket");
            match sock.take_error() {
                Ok(None) if !err => {}
                Ok(Some(e)) | Err(e) => return self.on_connect_failed(i, &e),
                Ok(None) => {
                    let e = io::Error::from(io::ErrorKind::ConnectionRefused);
                    return self.on_connect_failed(i, &e);
                }
            }
            if events & libc::EPOLLOUT as u32 == 0 {
                return Flow::Keep;
            }
            if let Flow::End(r) = self.on_connected(i) {
                return Flow::End(r);
            }
        }
        let c = &self.conns[i];
        if c.attack == Kind::NeverReads && c.st == St::Open {
            if err || events & libc::EPOLLRDHUP as u32 != 0 {
                self.hostile_outcome(i, true, "");
                return Flow::End(true);
            }
            // Keep the socket full: one more 16 KiB message whenever there is room.
            if c.wpos == c.wbuf.len() {
                let frame =
                    encode_masked_frame(true, OpCode::Binary, [9, 9, 9, 9], &[0x33; 16 * 1024]);
                let c = &mut self.conns[i];
                c.wbuf.clear();
                c.wpos = 0;
                c.wbuf.extend_from_slice(&frame);
            }
            return Flow::Keep;
        }
        if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0
        {
            return self.on_readable(i);
        }
        Flow::Keep
    }

    pub(super) fn on_connect_failed(&mut self, i: usize, e: &io::Error) -> Flow {
        if self.conns[i].kind == Kind::Good {
            self.error(format!("connect: {:?}", e.kind()));
        } else {
            self.hostile_outcome(i, false, &format!("connect: {:?}", e.kind()));
        }
        Flow::End(true)
    }

    pub(super) fn on_timer(&mut self, i: usize) {
        let c = &self.conns[i];
        let flow = match (c.kind, c.st) {
            (_, St::Done) => Flow::Keep,
            (Kind::Good, St::Open) => {
                if c.in_flight.is_some() {
                    self.error("no echo within 30 s");
                    Flow::End(false)
                } else {
                    self.on_idle_timer(i);
                    Flow::Keep
                }
            }
            (Kind::Good, St::Closing) => {
                self.error("no close answer within 15 s");
                Flow::End(false)
            }
            (Kind::Good, _) => {
                self.error(format!("stuck {:?} for 60 s", c.st));
                Flow::End(true)
            }
            (_, St::Idle) => {
                if self.ctx.phase.load(Ordering::Relaxed) == RUN {
                    self.connect(i);
                }
                Flow::Keep
            }
            (_, st) => {
                let attack = c.attack;
                let late = c.started.elapsed() >= ATTACK_TIMEOUT;
                if late {
                    self.hostile_outcome(i, false, &format!("no refusal within 60 s ({st:?})"));
                    Flow::End(true)
                } else if attack == Kind::Slowloris && st == St::Handshake {
                    self.trickle(i)
                } else if matches!(attack, Kind::ResetMidFrame | Kind::ResetMidHandshake)
                    && matches!(st, St::Open | St::Handshake)
                    && c.wpos == c.wbuf.len()
                {
                    self.hostile_outcome(i, true, "");
                    Flow::End(true)
                } else {
                    let at = c.started + ATTACK_TIMEOUT;
                    self.set_wake(i, at);
                    Flow::Keep
                }
            }
        };
        self.finish_flow(i, flow);
    }
}

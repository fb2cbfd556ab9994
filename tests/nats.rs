//! The bus on a real `nats-server` (started by the tests on a free loopback port; without the binary
//! these tests say how to install it and pass as skipped, unless `HYDROGEN_REQUIRE_NATS=1`): fan-out
//! across three instances, wildcards, Hydrogen's `nats_subscribe`, request/reply, timeouts and no
//! responders, permissions, NATS killed and restarted, and a shutdown with NATS hung (SIGSTOP).

mod support;

#[path = "nats/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{config, start, Client, Nats, RawNats, Responder};
use hydrogen_ws::{BusState, Config, Hydrogen, Mode, Permissions, Server};
use hydrogen_ws_protocol::Message;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

fn publisher() -> Permissions {
    Permissions {
        publish: vec!["printer.>".into()],
        request: vec!["printer.control.*".into()],
        ..Permissions::default()
    }
}

fn subscribed(c: &mut Client, topic: &str) {
    let ack = c.ask(&json!({"type": "subscribe", "topic": topic, "id": topic}));
    assert_eq!(
        ack,
        json!({"type": "subscribed", "topic": topic, "id": topic})
    );
}

#[test]
fn a_publish_on_any_of_three_instances_reaches_every_subscriber_once_and_in_order() {
    let Some(nats) = Nats::start() else { return };
    let servers: Vec<Server> = (0..3)
        .map(|_| start(config(&nats.url(), publisher())))
        .collect();
    let mut clients: Vec<Client> = servers
        .iter()
        .map(|s| Client::open(s.local_addr()))
        .collect();
    for c in &mut clients {
        subscribed(c, "printer.temp");
    }
    let mut bystander = Client::open(servers[1].local_addr());
    subscribed(&mut bystander, "printer.other");
    // The library API on each instance, in turn.
    for (i, s) in servers.iter().enumerate() {
        let text = json!({"from": i}).to_string();
        s.handle().publish("printer.temp", Message::Text(&text));
        for c in &mut clients {
            let push = c.next();
            assert_eq!(
                push,
                json!({"type": "event", "topic": "printer.temp", "data": {"from": i}})
            );
        }
    }
    // A permitted client's publish: its own instance first (it is subscribed), then the others.
    let ack = clients[2]
        .ask(&json!({"type": "publish", "topic": "printer.temp", "data": [1, 2], "id": 9}));
    assert_eq!(
        ack["data"],
        json!([1, 2]),
        "its own push comes first: {ack}"
    );
    assert_eq!(
        clients[2].next(),
        json!({"type": "published", "topic": "printer.temp", "id": 9})
    );
    for c in &mut clients[..2] {
        assert_eq!(c.next()["data"], json!([1, 2]));
    }
    // A burst from one instance arrives in order everywhere.
    for seq in 0..200 {
        let text = json!({"seq": seq}).to_string();
        servers[0]
            .handle()
            .publish("printer.temp", Message::Text(&text));
    }
    for c in &mut clients {
        for seq in 0..200 {
            assert_eq!(c.next()["data"]["seq"], json!(seq));
        }
        assert!(c.silent_for(QUIET), "nothing twice");
    }
    assert!(bystander.silent_for(QUIET), "another topic got nothing");
    let status = servers[1].handle().status_document();
    assert_eq!(status.bus.kind, "nats");
    assert_eq!(status.bus.state, "connected");
    assert!(status.bus.messages.received >= 203, "{:?}", status.bus);
    let (status, metrics) = get(&servers[0], "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("hydrogen_ws_bus_connected 1"), "{metrics}");
    assert!(
        metrics.contains("hydrogen_ws_bus_messages_out_total 201"),
        "{metrics}"
    );
    for s in servers {
        s.shutdown();
    }
}

#[test]
fn wildcards_select_one_token_or_the_rest_and_each_subscription_is_a_stream() {
    let Some(nats) = Nats::start() else { return };
    let a = start(config(&nats.url(), Permissions::default()));
    let b = start(config(&nats.url(), Permissions::default()));
    let mut c = Client::open(a.local_addr());
    subscribed(&mut c, "printer.*");
    subscribed(&mut c, "printer.>");
    let mut outside = RawNats::connect(nats.port);
    for (subject, copies) in [
        ("hydrogen.printer.temp", 2),
        ("hydrogen.printer.bed.temp", 1),
        ("hydrogen.order.updated", 0),
        ("other.printer.temp", 0),
    ] {
        outside.publish(subject, b"21.5");
        for _ in 0..copies {
            let push = c.next();
            assert_eq!(push["data"], json!(21.5), "{subject}: {push}");
            assert_eq!(push["topic"].as_str(), subject.strip_prefix("hydrogen."));
        }
        assert!(c.silent_for(QUIET), "{subject}: exactly {copies}");
    }
    // From the other instance, through the library API (a text that is not JSON is a string).
    b.handle().publish("printer.x", Message::Text("not json"));
    assert_eq!(c.next()["data"], json!("not json"));
    assert_eq!(c.next()["data"], json!("not json"));
    assert!(c.silent_for(QUIET));
    // Unsubscribed: one stream left.
    let ack = c.ask(&json!({"type": "unsubscribe", "topic": "printer.*"}));
    assert_eq!(ack["was_subscribed"], true);
    b.handle().publish("printer.x", Message::Text("1"));
    assert_eq!(c.next()["data"], json!(1));
    assert!(c.silent_for(QUIET));
    a.shutdown();
    b.shutdown();
}

#[test]
fn hydrogens_nats_subscribe_replaces_the_list_and_pushes_nats_events() {
    let Some(nats) = Nats::start() else { return };
    let mut cfg = config(
        &nats.url(),
        Permissions {
            subscribe: vec!["order.>".into(), "printer.*".into()],
            ..Permissions::none()
        },
    );
    cfg.bus.prefix = "cluster.philement".into();
    let server = start(cfg);
    let mut sub = Client::open(server.local_addr());
    let mut empty = Client::open(server.local_addr());
    let ack = sub.ask(&json!({"type": "nats_subscribe", "events": ["order.updated", "order.updated", "printer.*"]}));
    assert_eq!(
        ack,
        json!({"type": "nats_subscribe_ok", "events": ["order.updated", "printer.*"]})
    );
    assert_eq!(
        empty.ask(&json!({"type": "nats_subscribe", "events": []})),
        json!({"type": "nats_subscribe_ok", "events": []})
    );
    let mut hydrogen = RawNats::connect(nats.port);
    hydrogen.publish("cluster.philement.order.updated", br#"{"id":"62"}"#);
    assert_eq!(
        sub.next(),
        json!({"type": "nats_event", "event": "order.updated",
               "subject": "cluster.philement.order.updated", "data": {"id": "62"}})
    );
    assert!(empty.silent_for(QUIET));
    // A refused list leaves the old one in force.
    let refused = sub
        .ask(&json!({"type": "nats_subscribe", "events": ["order.updated", "secret.x"], "id": 4}));
    assert_eq!(refused["type"], "nats_subscribe_error");
    assert_eq!(refused["error"], "forbidden");
    assert_eq!(refused["id"], 4);
    let bad = sub.ask(&json!({"type": "nats_subscribe", "events": "order.updated"}));
    assert_eq!(bad["error"], "bad_events");
    let bad = sub.ask(&json!({"type": "nats_subscribe", "events": ["a..b"]}));
    assert_eq!(bad["error"], "bad_events");
    hydrogen.publish("cluster.philement.printer.temp", b"{}");
    assert_eq!(sub.next()["event"], "printer.temp");
    // Replaced: the new list only.
    let ack = sub.ask(&json!({"type": "nats_subscribe", "events": ["order.created"]}));
    assert_eq!(ack["events"], json!(["order.created"]));
    hydrogen.publish("cluster.philement.order.updated", b"{}");
    hydrogen.publish("cluster.philement.order.created", b"{}");
    assert_eq!(sub.next()["event"], "order.created");
    assert!(sub.silent_for(QUIET));
    server.shutdown();
}

#[test]
fn requests_get_the_reply_or_timeout_or_no_responders_with_their_id() {
    let Some(nats) = Nats::start() else { return };
    let server = start(config(&nats.url(), publisher()));
    let _responder = Responder::start(nats.port, "hydrogen.printer.control.home", |payload| {
        let got: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        json!({"ok": true, "got": got}).to_string().into_bytes()
    });
    // A subscriber that never answers.
    let mut silent = RawNats::connect(nats.port);
    silent.subscribe("hydrogen.printer.control.stuck", 1);
    let mut c = Client::open(server.local_addr());
    let reply = c.ask(&json!({"type": "request", "topic": "printer.control.home",
                              "data": {"axes": "xy"}, "timeout_ms": 2000, "id": 3}));
    assert_eq!(
        reply,
        json!({"type": "reply", "data": {"ok": true, "got": {"axes": "xy"}}, "id": 3})
    );
    let asked = Instant::now();
    let reply = c.ask(
        &json!({"type": "request", "topic": "printer.control.stuck", "timeout_ms": 300, "id": "t"}),
    );
    assert_eq!(reply["error"], "timeout", "{reply}");
    assert_eq!(reply["id"], "t");
    assert!(asked.elapsed() >= Duration::from_millis(300));
    let reply = c.ask(&json!({"type": "request", "topic": "printer.control.nobody", "id": 5}));
    assert_eq!(reply["error"], "no_responders", "{reply}");
    assert_eq!(reply["id"], 5);
    let reply = c.ask(&json!({"type": "request", "topic": "printer.temp", "id": 6}));
    assert_eq!(reply["error"], "forbidden");
    let reply = c.ask(
        &json!({"type": "request", "topic": "printer.control.home", "timeout_ms": -1, "id": 7}),
    );
    assert_eq!(reply["error"], "bad_request");
    // A request never comes back to subscribers as an event.
    let mut watcher = Client::open(server.local_addr());
    subscribed(&mut watcher, "printer.control.*");
    let reply = c.ask(&json!({"type": "request", "topic": "printer.control.home", "id": 8}));
    assert_eq!(reply["type"], "reply");
    assert!(watcher.silent_for(QUIET));
    let bus = server.handle().status_document().bus;
    assert_eq!(
        (
            bus.requests.replies,
            bus.requests.timeouts,
            bus.requests.no_responders
        ),
        (2, 1, 1)
    );
    server.shutdown();
}

#[test]
fn a_client_that_does_not_read_never_slows_the_bus() {
    let Some(nats) = Nats::start() else { return };
    let a = start(config(&nats.url(), Permissions::default()));
    let b = start(config(&nats.url(), Permissions::default()));
    let _stalled = harness::non_reader(a.local_addr(), "bulk");
    let mut reader = Client::open(a.local_addr());
    subscribed(&mut reader, "bulk");
    // 200 x 64 KiB from the other instance: far more than the stalled client's queue holds.
    let big = format!("\"{}\"", "x".repeat(64 * 1024));
    let started = Instant::now();
    for _ in 0..200 {
        b.handle().publish("bulk", Message::Text(&big));
    }
    for i in 0..200 {
        let push = reader.next();
        assert_eq!(push["topic"], "bulk", "push {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the reader got everything in {:?}",
        started.elapsed()
    );
    let ha = a.handle();
    assert!(
        support::wait_until(Duration::from_secs(3), || ha.stats().evicted >= 1),
        "the stalled client was evicted"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn an_instance_subscribes_on_nats_to_what_its_clients_hold_and_no_more() {
    let Some(nats) = Nats::start() else { return };
    let a = start(config(&nats.url(), publisher()));
    let b = start(config(&nats.url(), publisher()));
    // (The status document is cached for 50 ms: poll it.)
    let subscriptions = |s: &Server, n: u64| {
        let h = s.handle();
        support::wait_until(Duration::from_secs(3), || {
            h.status_document().bus.subscriptions == n
        })
    };
    // Broadcasts only.
    assert!(subscriptions(&b, 1));
    let mut on_b = Client::open(b.local_addr());
    subscribed(&mut on_b, "printer.temp");
    subscribed(&mut on_b, "printer.*");
    let mut also_on_b = Client::open(b.local_addr());
    subscribed(&mut also_on_b, "printer.*");
    assert!(subscriptions(&b, 3), "two patterns and broadcasts");
    // b is not a subscriber of every subject: a request nobody answers fails at once.
    let mut on_a = Client::open(a.local_addr());
    let started = Instant::now();
    let reply = on_a
        .ask(&json!({"type": "request", "topic": "printer.control.nobody", "timeout_ms": 3000}));
    assert_eq!(reply["error"], "no_responders", "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The patterns nobody holds any more are dropped; those still held stay.
    drop(on_b);
    assert!(
        subscriptions(&b, 2),
        "printer.temp is unsubscribed once its only holder left"
    );
    a.handle().publish("printer.temp", Message::Text("7"));
    assert_eq!(also_on_b.next()["data"], json!(7));
    assert!(also_on_b.silent_for(QUIET));
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_refusal_is_an_error_reply_and_the_connection_stays_open() {
    let Some(nats) = Nats::start() else { return };
    let server = start(config(
        &nats.url(),
        Permissions {
            subscribe: vec!["printer.>".into()],
            ..Permissions::default()
        },
    ));
    let mut c = Client::open(server.local_addr());
    for (request, code) in [
        (
            json!({"type": "subscribe", "topic": ">", "id": 1}),
            "forbidden",
        ),
        (
            json!({"type": "subscribe", "topic": "order.updated", "id": 1}),
            "forbidden",
        ),
        (
            json!({"type": "publish", "topic": "printer.temp", "data": 1, "id": 1}),
            "forbidden",
        ),
        (
            json!({"type": "request", "topic": "printer.home", "id": 1}),
            "forbidden",
        ),
        (
            json!({"type": "publish", "topic": "printer.*", "id": 1}),
            "bad_request",
        ),
        (json!({"type": "publish", "id": 1}), "bad_request"),
    ] {
        let reply = c.ask(&request);
        assert_eq!(reply["type"], "error", "{request}: {reply}");
        assert_eq!(reply["error"], code, "{request}: {reply}");
        assert_eq!(reply["id"], 1);
        assert!(reply["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    subscribed(&mut c, "printer.*");
    assert_eq!(c.ask(&json!({"type": "ping"})), json!({"type": "pong"}));
    server.shutdown();
}

#[test]
fn nats_killed_and_restarted_local_traffic_goes_on_and_the_bus_comes_back() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let mut cfg = config(&nats.url(), publisher());
    cfg.bus.require_nats = true;
    let a = start(cfg);
    let b = start(config(&nats.url(), publisher()));
    let mut on_a = Client::open(a.local_addr());
    subscribed(&mut on_a, "printer.temp");
    nats.kill();
    let ha = a.handle();
    assert!(support::wait_until(Duration::from_secs(5), || ha
        .bus_state()
        == BusState::Disconnected));
    assert_eq!(health(&a), 503);
    // Local traffic never stops.
    for i in 0..3 {
        let text = json!({"down": i}).to_string();
        ha.publish("printer.temp", Message::Text(&text));
        assert_eq!(on_a.next()["data"]["down"], json!(i));
    }
    let mut late = Client::open(a.local_addr());
    assert_eq!(late.ask(&json!({"type": "ping"})), json!({"type": "pong"}));
    let reply = late.ask(&json!({"type": "request", "topic": "printer.control.x", "id": 1}));
    assert_eq!(reply["error"], "unavailable");
    nats.restart();
    let hb = b.handle();
    assert!(support::wait_until(Duration::from_secs(10), || {
        ha.bus_state() == BusState::Connected && hb.bus_state() == BusState::Connected
    }));
    assert_eq!(health(&a), 200);
    // Re-subscribed: a publish on b reaches a's client (the few published while down may come too,
    // buffered by the NATS client; skip them).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        hb.publish("printer.temp", Message::Text(r#"{"back":true}"#));
        if !on_a.silent_for(Duration::from_millis(200)) {
            seen = true;
        }
    }
    assert!(
        seen,
        "a publish on the other instance arrives after the restart"
    );
    let bus = ha.status_document().bus;
    assert!(bus.reconnects >= 1, "{bus:?}");
    a.shutdown();
    b.shutdown();
}

#[test]
fn nats_down_at_start_the_server_serves_and_connects_later() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    nats.kill();
    let server = Server::start(config(&nats.url(), Permissions::default()), Hydrogen)
        .expect("starts without NATS");
    let handle = server.handle();
    assert_ne!(handle.bus_state(), BusState::Connected);
    let mut c = Client::open(server.local_addr());
    subscribed(&mut c, "printer.temp");
    handle.publish("printer.temp", Message::Text("1"));
    assert_eq!(c.next()["data"], json!(1));
    nats.restart();
    assert!(support::wait_until(Duration::from_secs(10), || handle
        .bus_state()
        == BusState::Connected));
    let mut outside = RawNats::connect(nats.port);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        outside.publish("hydrogen.printer.temp", b"2");
        seen = !c.silent_for(Duration::from_millis(200));
    }
    assert!(seen, "the subscription reached NATS once connected");
    server.shutdown();
}

#[test]
fn a_hung_nats_never_delays_the_shutdown() {
    let Some(nats) = Nats::start() else { return };
    let mut cfg = config(&nats.url(), publisher());
    cfg.shutdown_timeout = Duration::from_millis(500);
    let server = start(cfg);
    let mut c = Client::open(server.local_addr());
    subscribed(&mut c, "printer.temp");
    nats.signal("STOP");
    // Work in flight towards the hung server: publishes and a request.
    for _ in 0..100 {
        server.handle().publish("printer.temp", Message::Text("{}"));
    }
    c.send(&json!({"type": "request", "topic": "printer.control.home", "timeout_ms": 5000}));
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let report = server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "shutdown took {took:?}");
    assert!(report.completed(), "{report}");
    assert_eq!(c.close_code(), Some(1001));
    nats.signal("CONT");
}

#[test]
fn without_nats_the_bus_is_in_process_and_requests_are_unavailable() {
    let cfg = Config {
        mode: Mode::Hydrogen,
        key: Some(harness::KEY.to_string()),
        permissions: Permissions::all(),
        ..support::config()
    };
    let server = Server::start(cfg, Hydrogen).expect("starts");
    let mut c = Client::open(server.local_addr());
    subscribed(&mut c, "printer.>");
    let ack = c.ask(&json!({"type": "publish", "topic": "printer.bed.temp", "data": 60}));
    assert_eq!(
        ack,
        json!({"type": "event", "topic": "printer.bed.temp", "data": 60})
    );
    assert_eq!(c.next()["type"], "published");
    let reply = c.ask(&json!({"type": "request", "topic": "printer.home", "id": 1}));
    assert_eq!(reply["error"], "unavailable");
    let bus = server.handle().status_document().bus;
    assert_eq!(
        (bus.kind.as_str(), bus.state.as_str()),
        ("in_process", "local")
    );
    server.shutdown();
}

/// The status and body of `GET path`, with the key.
fn get(server: &Server, path: &str) -> (u16, String) {
    let mut c = support::RawClient::connect(server.local_addr());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Key {}\r\n\r\n",
        harness::KEY
    );
    c.send_raw(request.as_bytes());
    match c.read_response() {
        Ok(r) => (r.status, r.body),
        Err(_) => (0, String::new()),
    }
}

/// The status of `GET /health`.
fn health(server: &Server) -> u16 {
    get(server, "/health").0
}

#[test]
fn what_nats_sent_before_a_shutdown_reaches_the_clients_before_their_1001() {
    let Some(nats) = Nats::start() else { return };
    let server = start(config(&nats.url(), publisher()));
    let mut c = Client::open(server.local_addr());
    subscribed(&mut c, "printer.temp");
    // Published elsewhere (into NATS directly, as Hydrogen does) and acknowledged by NATS, so on its
    // way to the instance when the shutdown begins.
    let mut outside = RawNats::connect(nats.port);
    const EVENTS: usize = 500;
    for n in 0..EVENTS {
        outside.publish(
            "hydrogen.printer.temp",
            json!({ "n": n }).to_string().as_bytes(),
        );
    }
    outside.sync();
    let report = server.shutdown();
    assert!(report.completed(), "{report}");
    let mut got = Vec::new();
    let code = loop {
        match c.next_or_close() {
            Ok(event) => got.push(event["data"]["n"].as_u64()),
            Err(code) => break code,
        }
    };
    let expected: Vec<Option<u64>> = (0..EVENTS as u64).map(Some).collect();
    assert_eq!(
        got.len(),
        EVENTS,
        "{} of {EVENTS} events before the close",
        got.len()
    );
    assert_eq!(got, expected);
    assert_eq!(code, Some(1001));
}

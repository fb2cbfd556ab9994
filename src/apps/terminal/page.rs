//! The console page served at `GET /terminal`: no third-party script, a line-oriented console (output
//! with the basic ANSI colours, other escape sequences stripped; an input line; Enter, Tab, Ctrl-C and
//! Ctrl-D passed through). Full-screen programs need an xterm.js client (see the README's protocol).
//!
//! The page takes the key from its own URL (`/terminal?key=...`); the WebSocket path and subprotocol
//! from `path=` and `protocol=` (defaults `/terminal/ws` and `terminal`). A connection refused before
//! it opened is a refused key (or path, or subprotocol): the page says so.

/// The page.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hydrogen-ws terminal</title>
<style>
  body { margin: 0; background: #111; color: #ddd; font: 14px/1.35 ui-monospace, monospace; }
  #bar { padding: .4rem .6rem; background: #222; } #state.bad { color: #f66; } #state.good { color: #6c6; }
  #out { white-space: pre-wrap; word-break: break-all; padding: .6rem; height: calc(100vh - 6rem); overflow-y: auto; }
  #line { width: calc(100% - 1.2rem); margin: 0 .6rem; background: #000; color: #eee; border: 1px solid #444;
          font: inherit; padding: .3rem; box-sizing: border-box; }
  .c30{color:#555}.c31{color:#e55}.c32{color:#5c5}.c33{color:#dc5}.c34{color:#59f}.c35{color:#c6c}.c36{color:#5cc}.c37{color:#eee}
  .b { font-weight: bold; }
</style>
</head>
<body>
<div id="bar">hydrogen-ws terminal: <span id="state">connecting…</span></div>
<div id="out"></div>
<input id="line" autocomplete="off" autofocus placeholder="type a command; Enter sends it (Tab, Ctrl-C, Ctrl-D go through)">
<script>
"use strict";
const q = new URLSearchParams(location.search);
const key = q.get("key") || "";
const path = q.get("path") || "/terminal/ws";
const proto = q.get("protocol") || "terminal";
const out = document.getElementById("out");
const line = document.getElementById("line");
const state = document.getElementById("state");
function say(text, good) { state.textContent = text; state.className = good ? "good" : "bad"; }
let colour = "", bold = false;
function show(text) {
  // SGR colours 30-37 and bold are kept; every other escape sequence and \r are dropped.
  const parts = text.split(/(\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b.)/);
  for (const part of parts) {
    if (!part) continue;
    if (part[0] === "\x1b") {
      const m = /^\x1b\[([0-9;]*)m$/.exec(part);
      if (m) for (const n of (m[1] || "0").split(";").map(Number)) {
        if (n === 0) { colour = ""; bold = false; } else if (n === 1) bold = true;
        else if (n >= 30 && n <= 37) colour = "c" + n; else if (n === 39) colour = "";
      }
      continue;
    }
    const clean = part.replace(/\r/g, "").replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
    if (!clean) continue;
    const span = document.createElement("span");
    span.textContent = clean;
    span.className = colour + (bold ? " b" : "");
    out.append(span);
  }
  out.scrollTop = out.scrollHeight;
}
if (!key) say("no key: open this page as /terminal?key=YOUR_TERMINAL_KEY", false);
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + path + "?key=" + encodeURIComponent(key), proto);
let opened = false;
const send = (msg) => { if (ws.readyState === 1) ws.send(JSON.stringify(msg)); };
ws.onopen = () => {
  opened = true; say("connected", true);
  const rows = Math.max(1, Math.floor(out.clientHeight / 19)), cols = Math.max(1, Math.floor(out.clientWidth / 8.4));
  send({ type: "resize", rows, cols });
  setInterval(() => send({ type: "ping" }), 30000);
};
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.type === "output") show(msg.data);
  else if (msg.type === "exit") say("the command exited (" + ("code" in msg ? "code " + msg.code : "signal " + msg.signal) + ")", false);
  else if (msg.type === "error") say("error: " + msg.error, false);
};
ws.onclose = (e) => {
  if (!opened) say("refused: the key is wrong or missing (or the terminal is off, or on another path)", false);
  else if (e.code === 1013) say("refused: " + (e.reason || "too many sessions; try again later"), false);
  else if (!state.textContent.startsWith("the command exited")) say("closed (" + e.code + (e.reason ? " " + e.reason : "") + ")", false);
  line.disabled = true;
};
line.addEventListener("keydown", (e) => {
  let data = null;
  if (e.key === "Enter") { data = line.value + "\r"; line.value = ""; }
  else if (e.key === "Tab") data = line.value + "\t";
  else if (e.ctrlKey && (e.key === "c" || e.key === "C")) data = "\x03";
  else if (e.ctrlKey && (e.key === "d" || e.key === "D")) data = line.value + "\x04";
  if (data === null) return;
  e.preventDefault();
  if (e.key !== "Enter") line.value = "";
  send({ type: "input", data });
});
</script>
</body>
</html>
"#;

//! The terminal's messages: JSON text, tagged by `"type"`.
//!
//! | client -> server | server -> client |
//! |---|---|
//! | `{"type":"input","data":"ls\r"}` written to the PTY | `{"type":"output","data":"..."}` what the PTY printed |
//! | `{"type":"resize","rows":R,"cols":C}` the window size | `{"type":"exit","code":N}` or `{"type":"exit","signal":S}`, then close 1000 |
//! | `{"type":"ping"}` keeps the session alive | `{"type":"pong"}` |
//! | anything else | `{"type":"error","error":"..."}`; the session goes on |

use serde::{Deserialize, Serialize};

/// A client's message.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Request {
    /// Keystrokes (or pasted text) for the command.
    Input { data: String },
    /// The client's window size in characters.
    Resize { rows: u16, cols: u16 },
    /// A keep-alive (also through proxies that drop quiet connections).
    Ping,
}

/// A message to the client.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Reply {
    /// What the command printed (whole characters; invalid bytes as U+FFFD).
    Output { data: String },
    /// How the command ended: its exit code, or the signal that ended it.
    Exit {
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// The answer to a ping.
    Pong,
    /// A message that was refused; the session goes on.
    Error { error: String },
}

impl Reply {
    /// The message's JSON text.
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error","error":"?"}"#.into())
    }
}

/// Reads a client's message; the error says what is wrong with it.
pub(super) fn parse(text: &str) -> Result<Request, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("{e} (expected {{\"type\":\"input\",\"data\":\"...\"}}, {{\"type\":\"resize\",\"rows\":R,\"cols\":C}} or {{\"type\":\"ping\"}})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_and_write_as_documented() {
        assert_eq!(
            parse(r#"{"type":"input","data":"ls\r"}"#),
            Ok(Request::Input {
                data: "ls\r".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"resize","rows":40,"cols":120}"#),
            Ok(Request::Resize {
                rows: 40,
                cols: 120
            })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(Request::Ping));
        assert!(parse(r#"{"type":"resize","rows":-1,"cols":2}"#).is_err());
        assert!(parse(r#"{"type":"shell"}"#).is_err());
        assert!(parse("nonsense").is_err());
        let exit = Reply::Exit {
            code: Some(3),
            signal: None,
        };
        assert_eq!(exit.to_json(), r#"{"type":"exit","code":3}"#);
        let output = Reply::Output {
            data: "é\u{1b}[0m".into(),
        };
        assert_eq!(output.to_json(), r#"{"type":"output","data":"é\u001b[0m"}"#);
        assert_eq!(Reply::Pong.to_json(), r#"{"type":"pong"}"#);
    }
}

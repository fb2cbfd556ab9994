//! The values of the command line: each type reads its text by the library's rule, and its error
//! message is the rule (the caller names the option).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::logger::Level;
use hydrogen_ws::config::{format_duration, format_size, parse_duration, parse_size, Mode};

/// A byte size as `parse_size` reads it and `format_size` writes it.
#[derive(Debug, Clone, Copy)]
pub struct Size(pub usize);

impl FromStr for Size {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_size(text).map(Size)
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

/// A duration as `parse_duration` reads it and `format_duration` writes it; `0` means never where the
/// option allows it.
#[derive(Debug, Clone, Copy)]
pub struct Time(pub Duration);

impl Time {
    pub fn never_or(d: Option<Duration>) -> Time {
        Time(d.unwrap_or(Duration::ZERO))
    }

    pub fn or_never(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl FromStr for Time {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Time)
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.is_zero() {
            true => f.write_str("0"),
            false => f.write_str(&format_duration(self.0)),
        }
    }
}

/// The allowed origins; none means any.
#[derive(Debug, Clone)]
pub struct Origins(pub Vec<String>);

impl FromStr for Origins {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let origins: Vec<String> = text
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        // `*` is what people write for "any origin", which is what no list means.
        match origins.iter().any(|o| o == "*") {
            false => Ok(Origins(origins)),
            true if origins.len() == 1 => Ok(Origins(Vec::new())),
            true => Err("'*' allows any origin: give it alone, or list the origins".to_string()),
        }
    }
}

pub fn whole_number(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))
}

pub fn backlog(text: &str) -> Result<i32, String> {
    i32::try_from(whole_number(text)?).map_err(|_| "is too large".to_string())
}

pub fn listen(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an ADDR:PORT such as 127.0.0.1:5001 or [::1]:0"))
}

pub fn mode(text: &str) -> Result<Mode, String> {
    match text.trim() {
        "echo" => Ok(Mode::Echo),
        "hydrogen" => Ok(Mode::Hydrogen),
        other => Err(format!("unknown mode '{other}' (known: hydrogen, echo)")),
    }
}

/// `--no-auth` is a flag; its environment twin (and `--no-auth=VALUE`) says yes or no.
pub fn switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("'{other}' is not true or false")),
    }
}

pub fn level(text: &str) -> Result<Level, String> {
    Level::parse(text.trim())
        .ok_or_else(|| format!("unknown level '{text}' (off, error, warn, info, debug)"))
}

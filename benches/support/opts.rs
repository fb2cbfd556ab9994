//! The benches' environment knobs (`HYDROGEN_BENCH_*`, `HYDROGEN_LOAD_*`).
//!
//! A knob that is unset or blank takes its default. A value that does not parse is an error that
//! names the knob; [`or_exit`] turns it into a message and exit status 2.

use std::path::PathBuf;
use std::str::FromStr;

/// The knob's value, if it is set and not blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The knob as a path, if set.
pub fn path(name: &str) -> Option<PathBuf> {
    var(name).map(PathBuf::from)
}

/// An on/off knob: `0` is off, any other value on, and unset is `default`.
pub fn switch(name: &str, default: bool) -> bool {
    match var(name) {
        Some(v) => v.trim() != "0",
        None => default,
    }
}

/// One value, as `T` (`_` may separate digits: `10_000`).
pub fn one<T: FromStr>(name: &str, default: T) -> Result<T, String> {
    match var(name) {
        Some(v) => item(name, &v),
        None => Ok(default),
    }
}

/// A comma-separated list of `T` (empty items skipped); `default` is parsed the same way when the
/// knob is unset. A knob set to a blank value is unset: use [`list_or_empty`] where blank means
/// "none".
pub fn list<T: FromStr>(name: &str, default: &str) -> Result<Vec<T>, String> {
    let value = var(name).unwrap_or_else(|| default.to_string());
    split(name, &value)
}

/// Like [`list`], but a knob set to a blank value is the empty list.
pub fn list_or_empty<T: FromStr>(name: &str, default: &str) -> Result<Vec<T>, String> {
    let value = std::env::var(name).unwrap_or_else(|_| default.to_string());
    split(name, &value)
}

fn split<T: FromStr>(name: &str, value: &str) -> Result<Vec<T>, String> {
    value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| item(name, s))
        .collect()
}

fn item<T: FromStr>(name: &str, s: &str) -> Result<T, String> {
    let s = s.trim();
    s.parse()
        .or_else(|_| s.replace('_', "").parse())
        .map_err(|_| format!("{name}: cannot read {s:?}"))
}

/// The value, or the error on stderr (prefixed with `who`) and exit status 2.
pub fn or_exit<T>(who: &str, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("{who}: {e}");
        std::process::exit(2)
    })
}

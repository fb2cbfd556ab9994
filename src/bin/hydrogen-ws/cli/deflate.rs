//! permessage-deflate's options (`--deflate` and the `--deflate-*` family), flattened into the command
//! line.

use clap::Args;
use hydrogen_ws::config::{Config, Deflate};

use super::values::{switch, Size};

/// permessage-deflate's options.
#[derive(Debug, Args)]
pub struct DeflateArgs {
    /// agree to permessage-deflate (RFC 7692) when a client offers it, as every browser does: on or off
    #[arg(long, env = "HYDROGEN_WS_DEFLATE", value_name = "BOOL", value_parser = switch, action = clap::ArgAction::Set,
          default_value = "on")]
    pub deflate: bool,
    /// largest compression window (log2 bytes, 8 to 15) in both directions
    #[arg(long, env = "HYDROGEN_WS_DEFLATE_WINDOW_BITS", value_name = "N",
          value_parser = clap::value_parser!(u8), default_value_t = Deflate::default().window_bits)]
    pub deflate_window_bits: u8,
    /// keep the compression context between messages (better ratio, ~360 KiB per connection): on or off
    #[arg(long, env = "HYDROGEN_WS_DEFLATE_CONTEXT_TAKEOVER", value_name = "BOOL",
          value_parser = switch, action = clap::ArgAction::Set, default_value = "off")]
    pub deflate_context_takeover: bool,
    /// messages shorter than this are sent uncompressed
    #[arg(long, env = "HYDROGEN_WS_DEFLATE_MIN_SIZE", value_name = "SIZE",
          default_value_t = Size(Config::default().deflate.min_size))]
    pub deflate_min_size: Size,
}

impl DeflateArgs {
    pub fn into_config(self) -> Deflate {
        Deflate {
            enabled: self.deflate,
            window_bits: self.deflate_window_bits,
            context_takeover: self.deflate_context_takeover,
            min_size: self.deflate_min_size.0,
        }
    }
}

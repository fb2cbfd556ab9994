//! The applications served on top of the server: [`Hydrogen`] (JSON status, subscriptions) and
//! [`Echo`], and the route table the binary's `--mode` stands for.

mod echo;
mod hydrogen;

pub use echo::Echo;
pub use hydrogen::{Hydrogen, DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL, STATUS_TOPIC};

use crate::config::{Config, Mode};
use crate::routes::Routes;

/// The routes `config.mode` stands for: the Hydrogen application or echo, with the configuration's
/// key, subprotocol and origin policy (see [`Routes::for_config`]).
pub fn routes_for_mode(config: &Config) -> Routes {
    match config.mode {
        Mode::Hydrogen => Routes::for_config(config, Hydrogen),
        Mode::Echo => Routes::for_config(config, Echo),
    }
}

//! The applications served on top of the server: [`Hydrogen`] (JSON status, subscriptions) and
//! [`Echo`], and the route table the binary's `--mode` stands for.

mod echo;
mod hydrogen;
mod terminal;

pub use echo::Echo;
pub use hydrogen::{Hydrogen, DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL, STATUS_TOPIC};
pub use terminal::{Terminal, PAGE as TERMINAL_PAGE, TRY_AGAIN_LATER};

use crate::config::{Config, Mode};
use crate::routes::{Route, Routes};

/// The path of the terminal's console page.
pub const TERMINAL_PAGE_PATH: &str = "/terminal";

/// The routes `config.mode` stands for: the Hydrogen application or echo, with the configuration's
/// key, subprotocol and origin policy (see [`Routes::for_config`]); with the terminal on, also the
/// terminal on its own path with its own key and subprotocol, and its page at `/terminal`. Each key is
/// refused on the other's route.
pub fn routes_for_mode(config: &Config) -> Routes {
    let routes = match config.mode {
        Mode::Hydrogen => Routes::for_config(config, Hydrogen),
        Mode::Echo => Routes::for_config(config, Echo),
    };
    match &config.terminal {
        Some(t) => {
            let route = Route::new(Terminal::new(t.clone()))
                .key(Some(t.key.clone()))
                .protocol(Some(t.protocol.clone()))
                .refuse_key(config.key.clone())
                .allowed_origins(config.allowed_origins.clone());
            routes
                .route(t.path.clone(), route)
                .page(TERMINAL_PAGE_PATH, TERMINAL_PAGE)
        }
        None => routes,
    }
}

//! The route table: which application serves an upgrade, by request path, with its key, subprotocol and
//! origin policy.

use std::fmt;
use std::sync::Arc;

use crate::config::{Config, Mode};
use crate::handler::Handler;
use crate::topic::Permissions;

/// One application and the policy of the path it serves.
///
/// # Example
///
/// Echo on `/echo` for anyone, and an application of one's own on `/app` behind a key:
///
/// ```
/// use hydrogen_ws::{Echo, Route, Routes};
///
/// let routes = Routes::new()
///     .route("/echo", Route::new(Echo))
///     .route("/app", Route::new(Echo).key(Some("s3cret-key".into())).protocol(Some("app".into())));
/// assert_eq!(routes.len(), 2);
/// ```
#[derive(Clone)]
pub struct Route {
    handler: Arc<dyn Handler>,
    key: Option<String>,
    protocol: Option<String>,
    allowed_origins: Vec<String>,
    refused_key: Option<String>,
    permissions: Arc<Permissions>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("protocol", &self.protocol)
            .field("allowed_origins", &self.allowed_origins)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// A route to `handler`: no key, no subprotocol, any origin.
    pub fn new(handler: impl Handler) -> Route {
        Route {
            handler: Arc::new(handler),
            key: None,
            protocol: None,
            allowed_origins: Vec::new(),
            refused_key: None,
            permissions: Arc::new(Permissions::default()),
        }
    }

    /// The key clients must present (`Authorization: Key ...` or `?key=`); `None`: no check.
    pub fn key(mut self, key: Option<String>) -> Route {
        self.key = key;
        self
    }

    /// The subprotocol this route speaks. A client that offers subprotocols but not this one is
    /// refused (400); one that offers none is served without. `None`: never select one.
    pub fn protocol(mut self, protocol: Option<String>) -> Route {
        self.protocol = protocol;
        self
    }

    /// Browser origins allowed to connect (`Origin` header); empty: any.
    pub fn allowed_origins(mut self, origins: Vec<String>) -> Route {
        self.allowed_origins = origins;
        self
    }

    /// A key this route refuses (401) even when it requires none: another route's key, which must not
    /// open this one (the terminal's key on the Hydrogen route).
    pub fn refuse_key(mut self, key: Option<String>) -> Route {
        self.refused_key = key;
        self
    }

    /// What this route's clients (the holders of its key) may do on the bus: which topics they may
    /// subscribe to, publish to and send requests to. The default: subscribe to anything, nothing else.
    pub fn permissions(mut self, permissions: Permissions) -> Route {
        self.permissions = Arc::new(permissions);
        self
    }

    /// This route's bus permissions.
    pub fn bus_permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// The same permissions, shared with each connection.
    pub(crate) fn shared_permissions(&self) -> Arc<Permissions> {
        Arc::clone(&self.permissions)
    }

    /// The key this route refuses, if any.
    pub fn refused_key(&self) -> Option<&str> {
        self.refused_key.as_deref()
    }

    /// The application.
    pub fn handler(&self) -> &dyn Handler {
        &*self.handler
    }

    /// The key, if one is required.
    pub fn required_key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The subprotocol, if the route speaks one.
    pub fn subprotocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The origin allow-list (empty: any).
    pub fn origins(&self) -> &[String] {
        &self.allowed_origins
    }
}

/// Paths and the routes that serve them. An upgrade whose path (the target without its query) matches
/// no route, and no fallback, is refused with 404.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<(String, Route)>,
    fallback: Option<usize>,
    status_page: bool,
    pages: Vec<(String, &'static str)>,
}

impl Routes {
    /// An empty table.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serves `path` (exact match, e.g. `/wss`) with `route`; a later route for the same path wins.
    pub fn route(mut self, path: impl Into<String>, route: Route) -> Routes {
        let path = path.into();
        self.routes.retain(|(p, _)| *p != path);
        self.routes.push((path, route));
        self
    }

    /// Serves every path no route names with `route`.
    pub fn fallback(mut self, route: Route) -> Routes {
        self.routes.push((String::new(), route));
        self.fallback = Some(self.routes.len() - 1);
        self
    }

    /// Also serves the live status page at `GET /` (it connects back with the `hydrogen` subprotocol).
    pub fn with_status_page(mut self) -> Routes {
        self.status_page = true;
        self
    }

    /// Serves the HTML `page` at `GET path` (plain HTTP).
    pub fn page(mut self, path: impl Into<String>, page: &'static str) -> Routes {
        let path = path.into();
        self.pages.retain(|(p, _)| *p != path);
        self.pages.push((path, page));
        self
    }

    /// The table `config` stands for, serving `handler`: one route on every path with the
    /// configuration's key and origin allow-list. In hydrogen mode it also speaks the configured
    /// subprotocol, names `/wss` (the path Hydrogen's own clients use) and serves the status page.
    pub fn for_config(config: &Config, handler: impl Handler) -> Routes {
        let route = Route::new(handler)
            .key(config.key.clone())
            .refuse_key(config.terminal.as_ref().map(|t| t.key.clone()))
            .allowed_origins(config.allowed_origins.clone())
            .permissions(config.permissions.clone());
        match config.mode {
            Mode::Hydrogen => {
                let route = route.protocol(Some(config.protocol.clone()));
                Routes::new()
                    .route("/wss", route.clone())
                    .fallback(route)
                    .with_status_page()
            }
            Mode::Echo => Routes::new().fallback(route),
        }
    }

    /// Routes in the table, the fallback included.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no route at all.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route serving `path` and its index.
    pub(crate) fn find(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .position(|(p, _)| !p.is_empty() && p == path)
            .or(self.fallback)
            .and_then(|i| self.routes.get(i).map(|(_, r)| (i, r)))
    }

    /// The route at `index` (from [`Routes::find`]).
    pub(crate) fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index).map(|(_, r)| r)
    }

    /// The page served at `GET path`, if any.
    pub(crate) fn page_at(&self, path: &str) -> Option<&'static str> {
        self.pages
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, page)| *page)
    }

    /// Whether `GET /` serves the status page.
    pub(crate) fn serves_status_page(&self) -> bool {
        self.status_page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;
    use hydrogen_ws_protocol::Message;

    struct Nop;
    impl Handler for Nop {
        fn on_message(&self, _: &Conn, _: Message<'_>) {}
    }

    #[test]
    fn exact_paths_first_then_the_fallback_and_otherwise_nothing() {
        let routes = Routes::new()
            .route("/a", Route::new(Nop).protocol(Some("a".into())))
            .route("/b", Route::new(Nop));
        assert_eq!(
            routes.find("/a").map(|(i, r)| (i, r.subprotocol())),
            Some((0, Some("a")))
        );
        assert_eq!(routes.find("/b").map(|(i, _)| i), Some(1));
        assert!(routes.find("/c").is_none());
        let routes = routes.fallback(Route::new(Nop).key(Some("k".repeat(8))));
        assert_eq!(routes.find("/c").map(|(i, _)| i), Some(2));
        assert_eq!(routes.find("").map(|(i, _)| i), Some(2));
        assert_eq!(
            routes.get(2).and_then(Route::required_key),
            Some("kkkkkkkk")
        );
    }

    #[test]
    fn the_mode_shorthand_names_wss_in_hydrogen_mode() {
        let config = Config {
            no_auth: true,
            ..Config::default()
        };
        let routes = Routes::for_config(&config, Nop);
        assert!(routes.serves_status_page());
        assert_eq!(routes.find("/wss").map(|(i, _)| i), Some(0));
        assert_eq!(
            routes.find("/anything").map(|(_, r)| r.subprotocol()),
            Some(Some("hydrogen"))
        );
        let echo = Routes::for_config(
            &Config {
                mode: Mode::Echo,
                ..Config::default()
            },
            Nop,
        );
        assert!(!echo.serves_status_page());
        assert_eq!(echo.find("/wss").map(|(_, r)| r.subprotocol()), Some(None));
    }
}

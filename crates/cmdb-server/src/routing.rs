//! A router that remembers the paths it serves, so a test can call every route of the application
//! (not only those the OpenAPI document lists) and no route can be added without being covered.

use axum::Router;
use axum::routing::MethodRouter;

/// An axum [`Router`] plus the path of every route added to it.
#[derive(Debug)]
pub struct Routes<S = ()> {
    router: Router<S>,
    paths: Vec<&'static str>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes { router: Router::new(), paths: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `method_router` at `path` (as [`Router::route`]).
    pub fn route(mut self, path: &'static str, method_router: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, method_router);
        self.paths.push(path);
        self
    }

    /// Gives the routes their state.
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Routes<S2> {
        Routes { router: self.router.with_state(state), paths: self.paths }
    }

    /// Applies `f` to the router (layers, fallbacks); the paths stay.
    pub fn map(self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        Routes { router: f(self.router), paths: self.paths }
    }

    /// Adds the routes of `other`.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// The router and the paths it serves.
    pub fn into_parts(self) -> (Router<S>, Vec<&'static str>) {
        (self.router, self.paths)
    }
}

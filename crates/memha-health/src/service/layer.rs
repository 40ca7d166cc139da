use tower::Layer;

use super::Health;
use crate::node::NodeHealth;

/// A [`Layer`] that wraps one node's service in [`Health`].
#[derive(Debug, Clone)]
pub struct HealthLayer {
    node: NodeHealth,
}

impl HealthLayer {
    /// A layer recording into `node`'s health.
    pub fn new(node: NodeHealth) -> Self {
        HealthLayer { node }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Health<S> {
        Health::new(inner, self.node.clone())
    }
}

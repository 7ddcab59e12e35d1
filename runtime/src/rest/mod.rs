//! The REST API (axum). (Being implemented.)

use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::NodeApi;

#[derive(Clone)]
pub struct RestState {
    pub api: NodeApi,
    pub admin_token: String,
    pub metrics: Option<PrometheusHandle>,
}

impl RestState {
    pub fn new(api: NodeApi, admin_token: String, metrics: Option<PrometheusHandle>) -> Self {
        Self { api, admin_token, metrics }
    }
}

pub fn router(_state: RestState) -> axum::Router {
    axum::Router::new()
}

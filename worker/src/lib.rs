//! Ferry as a service: `ferry worker`.
//!
//! Workers of one group share pipelines the way Kafka Connect's workers share connectors:
//!
//! | part | module |
//! |---|---|
//! | settings (`worker.yaml`, flags) | [`config`] |
//! | pipeline definitions (the config topic) | [`store`] |
//! | task status (the status topic) | [`status`] |
//! | the compacted topics both live in | [`topic`] |
//! | the group protocol and sticky, cooperative assignor | [`assign`] |
//! | membership: join, heartbeat, rebalance | [`member`] |
//! | the fence a task checks before it commits | [`fence`] |
//! | the tasks this worker runs | [`tasks`] |
//! | the REST API | [`api`] |
//! | backup locations in the API | [`backups`] |
//! | restore plans for the console's wizard | [`restore`] |
//! | the console (`/ui`) | [`ui`] |
//! | pipeline files from a folder | [`dir`] |
//!
//! State lives in Kafka (definitions and status in compacted topics), checkpoints stay with
//! the data (a backup is self-describing), and membership and assignment go through Kafka's
//! group coordinator with Ferry's own protocol type.

pub mod api;
pub mod assign;
pub mod backups;
pub mod config;
pub mod dir;
pub mod fence;
pub mod member;
pub mod restore;
pub mod status;
pub mod store;
pub mod tasks;
pub mod topic;
pub mod ui;

pub use config::WorkerConfig;

use assign::Plan;
use ferry_core::{Error, Registry, Result};
use ferry_kafka::Client;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

/// What every part of a worker shares.
pub struct Shared {
    /// The settings.
    pub config: WorkerConfig,
    /// How this worker is reached.
    pub url: String,
    /// Component types pipelines may use.
    pub registry: Arc<Registry>,
    /// The client of the group's cluster.
    pub client: Client,
    /// Pipeline definitions.
    pub store: store::PipelineStore,
    /// Task status.
    pub status: status::StatusBoard,
    /// The latest plan this worker received, with its generation and member id.
    pub plan: RwLock<Option<Assigned>>,
    /// The units this worker runs now: what it tells the group when it (re)joins.
    pub owned: Mutex<Vec<assign::Unit>>,
    /// The Prometheus metrics of this process.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Secret for the REST API (`FERRY_API_TOKEN`).
    pub token: Option<String>,
    /// Verify runs of the backup locations (`/backups/{index}/verify`).
    pub verifies: backups::Verifies,
}

/// The assignment this worker works under.
#[derive(Debug, Clone)]
pub struct Assigned {
    /// The group generation.
    pub generation: i32,
    /// This worker's member id.
    pub member_id: String,
    /// The whole plan.
    pub plan: Plan,
}

impl Shared {
    /// The current plan (empty before the first join).
    pub fn plan(&self) -> Plan {
        read_lock(&self.plan)
            .as_ref()
            .map(|a| a.plan.clone())
            .unwrap_or_default()
    }

    /// The generation and member id this worker works under.
    pub fn assigned(&self) -> Option<Assigned> {
        read_lock(&self.plan).clone()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Runs a worker until `shutdown` completes: opens the group's topics, serves the REST API,
/// joins the group and runs what it is given. On shutdown it stops its tasks (each writes
/// what it read and its checkpoint), leaves the group and returns.
pub async fn run(
    config: WorkerConfig,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate().map_err(Error::config)?;
    let client_config = config.connection.client_config().map_err(Error::config)?;
    let brokers = config.connection.brokers.join(",");
    let client = Client::connect(client_config)
        .await
        .map_err(|e| Error::connection(format!("kafka {brokers}"), e.is_retriable(), e))?;
    let configs = topic::CompactedTopic::open(&client, &config.config_topic()).await?;
    let statuses = topic::CompactedTopic::open(&client, &config.status_topic()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            Error::config(format!(
                "cannot listen on {}: {e} (is another worker using that port? set --listen)",
                config.listen
            ))
        })?;
    let shared = Arc::new(Shared {
        url: config.url(),
        registry,
        client,
        store: store::PipelineStore::new(configs),
        status: status::StatusBoard::new(statuses),
        plan: RwLock::new(None),
        owned: Mutex::new(Vec::new()),
        metrics: ferry_core::metrics::install_recorder(),
        token: std::env::var("FERRY_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        verifies: backups::Verifies::default(),
        config,
    });
    tracing::info!(
        group = %shared.config.group,
        url = %shared.url,
        listen = %shared.config.listen,
        configs = %shared.store.topic().name(),
        "worker started"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let api = tokio::spawn(api::serve(listener, shared.clone(), stop_rx.clone()));
    if let Some(dir) = shared.config.pipelines_dir.clone() {
        tokio::spawn(dir::watch(dir, shared.clone(), stop_rx.clone()));
    }
    let result = member::run(shared.clone(), stop_rx).await;
    api.abort();
    result
}

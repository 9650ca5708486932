//! A service on PostgreSQL: the coordination state and the plugin catalog in
//! one database, each store in its own. Hosts share only the databases, and
//! know each other by leases.

use std::sync::Arc;
use std::time::Duration;

use super::Backends;
use super::layout;
use crate::catalog::PostgresCatalog;
use crate::coordination::PostgresCoordination;
use crate::fleet::liveness::Liveness;
use crate::stores::DataStores;

/// Where a service on PostgreSQL lives: one URL per database.
#[derive(Debug, Clone)]
pub struct PostgresBackends {
    pub coordination: String,
    pub legacy_store: String,
    /// One URL per new-store shard, in shard order; none: plain mode.
    pub new_stores: Vec<String>,
}

/// Checks (or, on a new coordination database, creates) the service's
/// identity, then opens its databases; each store database is claimed for
/// the service and its role. Leases are `lease` long, on the database's clock.
pub(super) fn open(pg: &PostgresBackends, host_name: &str, lease: Duration) -> anyhow::Result<Backends> {
    let coordination = PostgresCoordination::open(&pg.coordination)?.with_lease(lease);
    let service = layout::open_service(&coordination.layout_record()?, pg.new_stores.len() as u32)?;
    Ok(Backends {
        catalog: Arc::new(PostgresCatalog::open(&pg.coordination, host_name)?),
        stores: DataStores::open_postgres(&pg.legacy_store, &pg.new_stores, service.id)?,
        coordination: Arc::new(coordination),
        liveness: Liveness::Lease(lease),
    })
}

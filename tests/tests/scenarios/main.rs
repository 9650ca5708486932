//! Scenario tests: the real host binary, the real plugins, real SQLite files
//! (and a real PostgreSQL), over HTTP on loopback. One test binary (one link
//! step), one module per area; test names say the behaviour in the design
//! note's words (ARCHITECTURE.md, "Words").

/// Runs the named scenarios of the module again in module `$module`, each
/// through `$runner` (which sets how the hosts it starts are backed).
macro_rules! again_in {
    ($module:ident, $runner:path, $($scenario:ident),* $(,)?) => {
        mod $module {
            $(
                #[test]
                fn $scenario() {
                    $runner(super::$scenario);
                }
            )*
        }
    };
}

/// Runs the named scenarios of the module again with every host on
/// PostgreSQL (`<module>::postgres::<scenario>`): the scenarios whose
/// subject is not SQLite itself hold on both backends.
macro_rules! also_on_postgres {
    ($($scenario:ident),* $(,)?) => { again_in!(postgres, notes_scenarios::on_postgres, $($scenario),*); };
}

/// Runs the named scenarios again on PostgreSQL with each service's stores
/// in schemas of one database (`<module>::postgres_schemas::<scenario>`):
/// they share that database's read connections, and keep their notes apart.
macro_rules! also_on_postgres_schemas {
    ($($scenario:ident),* $(,)?) => { again_in!(postgres_schemas, notes_scenarios::on_postgres_schemas, $($scenario),*); };
}

mod api;
mod authoring;
mod cli;
mod console;
mod contention;
mod contract;
mod endurance;
mod faults;
mod fleet;
mod gate;
mod keys;
mod migration;
mod moves;
mod notely;
mod observe;
mod placement;
mod plain;
mod plugins;
mod postgres_fleet;
mod rollback;
mod sandbox;
mod slow_clients;
mod store_plugins;
mod web_pages;

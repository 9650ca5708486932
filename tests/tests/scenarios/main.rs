//! Scenario tests: the real host binary, the real plugins, real SQLite files,
//! over HTTP on loopback. One test binary (one link step), one module per
//! area; test names say the behaviour in the design note's words (ARCHITECTURE.md, "Words").

mod api;
mod contract;
mod faults;
mod fleet;
mod gate;
mod keys;
mod migration;
mod moves;
mod notely;
mod observe;
mod plain;
mod plugins;
mod rollback;
mod sandbox;
mod slow_clients;

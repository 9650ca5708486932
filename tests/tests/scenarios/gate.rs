//! Deployment timing (the design note's first goal): a migration may only start once the code
//! that understands it runs; and the flag is read, failing closed.

use notes_scenarios::*;
use serde_json::json;

#[test]
fn the_gate_refuses_the_flag_while_the_legacy_only_plugin_is_active() {
    let host = Host::start_with(Plugin::LegacyOnly);
    let account = host.create_account(false);
    let refused = host.set_migrating(&account, true).expect(409);
    assert!(refused.error().contains("legacy-only@0.1.0 does not support migration"), "{}", refused.error());
    assert!(refused.error().contains("notes-host plugin rollback"), "the refusal names the command that fixes it: {}", refused.error());
    assert_eq!(host.get(&format!("/accounts/{account}")).json()["isMigrating"], false, "nothing changed");

    let before = host.get("/accounts").json().as_array().unwrap().len();
    host.post("/accounts", json!({ "name": "Bob", "isMigrating": true })).expect(409);
    assert_eq!(host.get("/accounts").json().as_array().unwrap().len(), before, "no account was created");

    // Once the new code runs, the same request is allowed: at once on one
    // machine (the old process's lock is gone), once the killed host's lease
    // lapsed on PostgreSQL (it might only be paused).
    let host = host.restart_with(Plugin::Migrate);
    match backend() {
        Backend::Sqlite => drop(host.set_migrating(&account, true).expect(200)),
        Backend::Postgres => eventually("the old host's lease lapses", || host.set_migrating(&account, true).status == 200),
    }
}

#[test]
fn old_code_cannot_start_while_an_account_is_migrating() {
    let host = Host::start();
    let account = host.create_account(true);
    let dir = host.stop();
    let err = Host::builder().plugin(Plugin::LegacyOnly).state_of(&dir).start_fails();
    assert!(err.contains("does not support migration") && err.contains(&account), "{err}");
}

/// Why the gate exists: old code serving after a migration began misses the
/// notes that moved (the design note's first and third data-loss cases).
#[test]
fn old_code_after_a_migration_misses_moved_notes() {
    let host = Host::start();
    let account = host.create_account(true);
    let moved = host.create_note(&account, "in new");
    host.set_migrating(&account, false).expect(200);
    let old_code = host.restart_with(Plugin::LegacyOnly);
    old_code.get_note(&account, &moved).expect(404);
    old_code.update_note(&account, &moved, "lost?").expect(404);
    assert!(old_code.list_notes(&account).is_empty());
    // The note is still there for code that understands the migration.
    let new_code = old_code.restart_with(Plugin::Migrate);
    assert_eq!(new_code.get_note(&account, &moved).expect(200).json()["content"], "in new");
}

#[test]
fn a_flag_that_cannot_be_read_fails_the_request_and_writes_nothing() {
    let host = Host::start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    // The accounts table becomes unreadable (schema damage, a bad restore).
    let db = host.sqlite("accounts.db");
    db.execute_batch("ALTER TABLE accounts RENAME TO accounts_unreadable").unwrap();
    // The host knew the account's flag from the create; it forgets it once
    // its watcher sees the state change (a poll of 1 ms), then reads again.
    eventually("the host reads the damaged flag", || host.try_request("GET", &format!("/accounts/{account}/notes/{note}"), None, &[]).is_ok_and(|r| r.status == 503));

    let create = host.post(&format!("/accounts/{account}/notes"), json!({ "content": "new" })).expect(503);
    assert!(create.error().contains("isMigrating"), "{}", create.error());
    host.update_note(&account, &note, "v2").expect(503);
    host.get_note(&account, &note).expect(503);
    host.delete_note(&account, &note).expect(503);
    host.get(&format!("/accounts/{account}/notes")).expect(503);

    db.execute_batch("ALTER TABLE accounts_unreadable RENAME TO accounts").unwrap();
    assert_eq!(host.list_notes(&account), [note.as_str()], "the failed create wrote nothing, the delete deleted nothing");
    assert_eq!(host.get_note(&account, &note).expect(200).json()["version"], 1, "the failed update wrote nothing");
}

#[test]
fn a_flag_flip_by_another_process_takes_effect_on_the_next_request() {
    let host = Host::start();
    let account = host.create_account(false);
    host.sqlite("accounts.db").execute("UPDATE accounts SET is_migrating = 1 WHERE id = ?1", [&account]).unwrap();
    let note = host.create_note(&account, "routed by the new flag");
    assert_eq!(host.placement(&account, &note), NEW);
}

also_on_postgres!(
    the_gate_refuses_the_flag_while_the_legacy_only_plugin_is_active,
    old_code_cannot_start_while_an_account_is_migrating,
    old_code_after_a_migration_misses_moved_notes,
);

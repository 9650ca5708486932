//! Plain mode: no new store configured (`--shards 0`): legacy only.

use notes_scenarios::*;

#[test]
fn plain_mode_keeps_every_note_in_legacy() {
    let host = Host::builder().arg("--shards").arg("0").start();
    let account = host.create_account(false);
    let note = host.create_note(&account, "v1");
    host.update_note(&account, &note, "v2").expect(200);
    assert_eq!(host.placement(&account, &note), LEGACY);
    assert_eq!(host.list_notes(&account), [note.as_str()]);
    assert_eq!(host.counts(&account), (1, 0));
    host.delete_note(&account, &note).expect(204);
    assert_eq!(host.placement(&account, &note), NOWHERE);
}

#[test]
fn plain_mode_refuses_to_start_a_migration() {
    let host = Host::builder().arg("--shards").arg("0").start();
    let account = host.create_account(false);
    let refused = host.set_migrating(&account, true).expect(409);
    assert!(refused.error().contains("no new store"), "{}", refused.error());
    assert_eq!(host.get(&format!("/accounts/{account}")).json()["isMigrating"], false);
}

#[test]
fn a_data_dir_refuses_another_shard_count() {
    let host = Host::start();
    let account = host.create_account(true);
    host.create_note(&account, "in a shard");
    let dir = host.stop();
    let err = Host::builder().state_of(&dir).arg("--shards").arg("2").start_fails();
    assert!(err.contains("created with 4 new-store shard(s), not 2"), "{err}");
}

also_on_postgres!(
    plain_mode_keeps_every_note_in_legacy,
    plain_mode_refuses_to_start_a_migration,
    a_data_dir_refuses_another_shard_count,
);

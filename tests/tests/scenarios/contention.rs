//! Many writers of one note: an unconditional update never fails because
//! others write the same note, and costs no retries (the host gives each
//! note's writers one turn at a time).

use notes_scenarios::*;

#[test]
fn thirty_two_clients_updating_one_note_unconditionally_all_succeed_and_nothing_is_retried() {
    // Every client is of one account: lift its cap on requests in flight.
    let host = Host::builder().args(["--max-requests-per-account", "64"]).start();
    let account = host.create_account(true);
    let note = host.create_note(&account, "v1");
    let puts_before = host.metric("notes_store_operations_total{store=\"new\",op=\"put\"}");
    std::thread::scope(|s| {
        for client in 0..32 {
            let (host, account, note) = (&host, &account, &note);
            s.spawn(move || {
                for i in 0..150 {
                    host.update_note(account, note, &format!("client {client}, update {i}")).expect(200);
                }
            });
        }
    });
    let last = host.get_note(&account, &note).expect(200).json();
    assert_eq!(last["version"], 4801, "every update landed, one version each: {last}");
    let puts = host.metric("notes_store_operations_total{store=\"new\",op=\"put\"}") - puts_before;
    assert_eq!(puts, 4800, "one store write per update: no write was refused and retried");
}

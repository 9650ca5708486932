//! The operator console (`/ui`) in a real headless Chromium against a real
//! host with the real migrate plugin: an operator's story, each step asserted
//! on what the page shows and checked against the API, with a screenshot of
//! each step in `target/console-screenshots/`.

use notes_scenarios::browser::Browser;
use notes_scenarios::{Host, Plugin};

const TOKEN: &str = "console-test-admin-token";
const ACCOUNTS: usize = 20;
const NOTES_EACH: usize = 5;
const ESCAPE: &str = "\u{E00C}";

/// `n` of `<dd data-state=…>` in the overview's accounts per state.
fn accounts_in(browser: &Browser, state: &str, n: u64) {
    browser.wait_text(&format!("#accounts-per-state dd[data-state=\"{state}\"]"), |t| t == n.to_string());
}

fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}

/// A time as the CLI prints it: ISO 8601, UTC, to the second.
fn is_iso_second(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && text.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == 'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The notes card's figures as the page shows them at one instant:
/// (in legacy, in new, left to move → new).
fn notes_card(browser: &Browser) -> (u64, u64, u64) {
    let read = browser.eval("return ['#notes-legacy', '#notes-new', '#to-new'].map((id) => document.querySelector(id)?.textContent.replace(/,/g, ''))");
    let figure = |i: usize| read[i].as_str().and_then(|t| t.parse().ok());
    match (figure(0), figure(1), figure(2)) {
        (Some(legacy), Some(new), Some(to_new)) => (legacy, new, to_new),
        _ => (u64::MAX, u64::MAX, u64::MAX), // not shown yet
    }
}

#[test]
fn an_operator_rolls_out_backfills_verifies_and_kills_a_migration_from_the_console() {
    let host = Host::builder().admin_token(TOKEN).start();
    for i in 0..ACCOUNTS {
        let account = host.create_account(false);
        for n in 0..NOTES_EACH {
            host.create_note(&account, &format!("note {n} of account {i}"));
        }
    }
    let browser = Browser::open(1280, 900);
    browser.goto(&format!("{}/ui", host.base));

    // Signing in: a wrong token is refused with the server's reason.
    browser.type_into("#token", "not-the-admin-token");
    browser.screenshot("01-sign-in");
    browser.click("#sign-in");
    let refused = browser.text("#login-error");
    assert!(refused.contains("wrong admin token"), "{refused}");
    browser.type_into("#token", TOKEN);
    browser.click("#sign-in");

    // The overview: every account in legacy, every note in the legacy store.
    accounts_in(&browser, "legacy", ACCOUNTS as u64);
    browser.wait_text("#notes-legacy", |t| t == (ACCOUNTS * NOTES_EACH).to_string());
    browser.wait_text("#notes-new", |t| t == "0");
    let hosts = browser.wait_text("#hosts tbody", |t| t.contains("live"));
    assert!(hosts.contains("migrate@0.1.0") && hosts.contains("live"), "the host, its plugin and liveness: {hosts}");
    assert!(hosts.contains("can migrate"), "the plugin's migration support, said: {hosts}");
    // The host's own version, named as the host's: "0.1.0" alone under the
    // plugin reads as the plugin's version.
    let version = host.get("/hosts").json()[0]["version"].as_str().unwrap().to_owned();
    assert_eq!(browser.text("#hosts .host-version"), format!("host {version}"));
    browser.screenshot("02-overview");

    // Rollout to 50%: the preview says how many accounts turn on, and the
    // rollout turns exactly those on.
    browser.click("#nav-rollout");
    browser.type_into("#rollout-number", "50");
    let preview = browser.wait_text("#rollout-preview", |t| t.starts_with("At 50%"));
    let turning_on: u64 = preview.split(": ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse().ok()).expect(&preview);
    assert!(preview.contains(&format!("{turning_on} accounts turn on, 0 turn off")), "{preview}");
    assert_eq!(host.get("/migration").json()["accounts"]["migrating"].as_u64().unwrap_or(0), 0, "a preview flips nothing");
    browser.click("#rollout-apply");
    browser.click("#confirm-go");
    let outcome = browser.wait_text("#rollout-outcome", |t| t.starts_with("Rolled out"));
    assert!(outcome.contains(&format!("{turning_on} turned on, 0 turned off")), "{outcome}");
    let service = host.get("/migration").json();
    assert_eq!(service["accounts"]["migrating"].as_u64().unwrap_or(0), turning_on, "{service}");
    assert_eq!(service["rolloutPercent"], 50.0);
    browser.screenshot("03-rollout-50");

    // A backfill of every migrating account, throttled so its progress can be watched.
    browser.type_into("#job-rate", "20");
    browser.click("#start-backfill");
    let started = browser.text("#job-message");
    assert!(started.contains("Started backfill job") && started.contains(&format!("{} to go", turning_on * NOTES_EACH as u64)), "{started}");
    // Shown as it runs (it may already be done by the first poll: not asserted).
    browser.wait_text("#jobs tbody tr:first-child", |t| has_word(t, "backfill"));
    browser.screenshot("04-backfill-running");
    // Meanwhile the overview's notes card, read at instants while notes move:
    // its figures are of one moment, so what is in legacy is always what is
    // left to move plus the notes of the accounts that are not migrating
    // (separate polls of the stores and of what is left to move disagree
    // while a backfill runs).
    browser.click("#nav-overview");
    let staying = (ACCOUNTS as u64 - turning_on) * NOTES_EACH as u64;
    let mut samples = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "the backfill never showed as done on the notes card");
        let (legacy, new, to_new) = notes_card(&browser);
        if legacy != u64::MAX {
            samples += 1;
            assert_eq!(legacy as i64 - to_new as i64, staying as i64, "in legacy {legacy}, left to move {to_new}, in new {new}: not of one moment");
            if new == turning_on * NOTES_EACH as u64 && to_new == 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(samples > 0);
    browser.click("#nav-rollout");
    let done = browser.wait_text("#jobs tbody tr:first-child", |t| has_word(t, "backfill") && has_word(t, "done") && t.contains("(100%)"));
    let total = (turning_on * NOTES_EACH as u64).to_string();
    assert!(done.contains(&format!("{total} / {total}")), "{done}");
    let bar = browser.eval("const bar = document.querySelector('#jobs tbody tr:first-child progress'); return [bar.value, bar.max]");
    assert_eq!(bar, serde_json::json!([turning_on * NOTES_EACH as u64, turning_on * NOTES_EACH as u64]), "the progress bar is full");
    assert_eq!(host.get("/migration").json()["notesToNew"], 0, "nothing left to move");
    browser.screenshot("05-backfill-done");

    // Every note is in new, yet the accounts are `migrating`: the page says
    // why (a verify is due) and offers it, for one account and for all.
    browser.click("#nav-accounts");
    browser.wait_text("#accounts tbody", |t| t.contains("a verify is due"));
    let due = browser.eval("return [...document.querySelectorAll('#accounts button.verify')].map((b) => b.closest('tr').dataset.account)");
    let due: Vec<&str> = due.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(due.len() as u64, turning_on, "a verify offered to every migrating account: {due:?}");
    let first = due[0].to_owned();
    assert!(browser.text(&format!("tr[data-account=\"{first}\"] td.state")).contains("migrating"));
    browser.click(&format!("tr[data-account=\"{first}\"] button.verify"));
    let verified = browser.wait_text("#account-outcome", |t| t.contains("verify"));
    assert!(verified.contains("verify clean; now migrated"), "{verified}");
    assert_eq!(host.get(&format!("/accounts/{first}/migration")).json()["state"], "migrated");
    browser.wait_text(&format!("tr[data-account=\"{first}\"] td.state"), |t| t == "migrated");
    browser.screenshot("05b-verify-due");
    if turning_on > 1 {
        browser.click("#nav-overview");
        let hint = browser.wait_text("#verify-due", |t| t.contains("a verify is due"));
        assert!(hint.starts_with(&format!("{} ", turning_on - 1)), "the migrating accounts it concerns: {hint}");
    }
    browser.click("#nav-rollout");

    // Verify: every note where its account's mode wants it.
    browser.type_into("#job-rate", "0"); // 0: no limit
    browser.click("#start-verify");
    let verified = browser.wait_text("#jobs tbody tr:first-child", |t| has_word(t, "verify") && has_word(t, "done"));
    assert!(verified.contains(&format!("{ACCOUNTS} / {ACCOUNTS}")), "every account verified: {verified}");
    assert_eq!(browser.texts("#jobs tbody tr:first-child td.num").last().map(String::as_str), Some("0"), "no problems: {verified}");

    // The kill switch asks first; Escape closes the question and changes nothing.
    browser.click("#kill-switch");
    assert!(browser.text("#confirm").contains("Every account goes to rollback mode"));
    browser.press(ESCAPE);
    assert!(!browser.is_displayed("#confirm"), "Escape closes the question");
    assert_eq!(host.get("/migration").json()["accounts"]["migrated"].as_u64().unwrap_or(0), turning_on, "nothing changed");
    browser.click("#kill-switch");
    browser.click("#confirm-go");
    let killed = browser.wait_text("#rollout-outcome", |t| t.starts_with("Kill switch"));
    assert!(killed.contains(&format!("0 turned on, {turning_on} turned off")), "{killed}");
    browser.click("#nav-overview");
    for state in ["migrating", "migrated"] {
        accounts_in(&browser, state, 0);
    }
    browser.wait_text("#flips tbody", |t| t.contains("true → false") && t.contains(" ms ("));
    let at = browser.text("#flips tbody tr:first-child td:first-child");
    assert!(is_iso_second(&at), "a time as the CLI shows it: {at:?}");
    browser.screenshot("06-kill-switch");
    browser.click("#nav-accounts");
    browser.wait_text("#account-count", |t| t == format!("{ACCOUNTS} accounts"));
    let flags = browser.texts("#accounts td.flag");
    assert_eq!(flags.len(), ACCOUNTS);
    assert!(flags.iter().all(|f| f == "off"), "every account went back: {flags:?}");
    let accounts = host.get("/accounts").json();
    assert!(accounts.as_array().unwrap().iter().all(|a| a["isMigrating"] == false), "{accounts}");

    // A bad plugin is refused with the server's reason, and nothing is stored.
    browser.click("#nav-plugins");
    let stored = host.plugins()["plugins"].as_array().unwrap().len();
    browser.type_into("#plugin-file", Plugin::FutureWit.path().canonicalize().unwrap().to_str().unwrap());
    browser.click("#plugin-upload");
    let refusal = browser.wait_text("#plugin-outcome", |t| t.starts_with("Refused"));
    assert!(refusal.contains("Refused (422)") && refusal.contains("built against notes:plugin@0.9.0"), "{refusal}");
    assert_eq!(host.plugins()["plugins"].as_array().unwrap().len(), stored, "nothing stored");
    let active = browser.text("#active-plugin");
    assert!(active.contains("migrate@0.1.0") && active.contains("can migrate") && !active.contains("cannot"), "{active}");
    let uploaded = browser.texts("#plugins tbody td:nth-child(4)");
    assert!(!uploaded.is_empty() && uploaded.iter().all(|t| is_iso_second(t)), "{uploaded:?}");
    browser.screenshot("07-bad-plugin");

    // The audit log, filtered to rollouts, then to the kill switch, named as such.
    browser.click("#nav-audit");
    browser.click("#audit-kind option[value=\"rollout\"]");
    let rollouts = browser.wait_text("#audit tbody", |t| !t.contains("flag") && t.contains("∅ → 50%"));
    assert!(!rollouts.contains("50% → 0%"), "the kill switch is not a rollout: {rollouts}");
    browser.click("#audit-kind option[value=\"kill-switch\"]");
    let killed = browser.wait_text("#audit tbody", |t| t.contains("50% → 0%"));
    assert!(killed.contains("kill-switch") && !killed.contains("∅ → 50%"), "{killed}");
    // One action, one row: the accounts it turned off are one click away.
    let count = browser.text("#audit tbody button.action-flips");
    assert_eq!(count, format!("{turning_on} account{}", if turning_on == 1 { "" } else { "s" }), "the kill switch counts its flips");
    browser.click("#audit tbody button.action-flips");
    let turned_off = browser.wait_text("#audit tbody ul.action-flips", |t| t.contains("true → false"));
    assert_eq!(turned_off.lines().filter(|l| l.contains("true → false")).count() as u64, turning_on, "{turned_off}");

    let blocked = browser.eval("return window.consoleCspViolations");
    assert_eq!(blocked, serde_json::json!([]), "nothing on the page was blocked by its Content-Security-Policy");

    // On a phone-sized screen, then with the host gone.
    browser.set_size(390, 844);
    browser.click("#nav-overview");
    accounts_in(&browser, "legacy", host.get("/migration").json()["accounts"]["legacy"].as_u64().unwrap_or(0));
    browser.screenshot("08-overview-phone");
    // A job at a phone's width: Pause and Cancel are on the screen, not past
    // its edge in a table scrolled sideways, and they work.
    let job = host.post("/jobs", serde_json::json!({ "kind": "verify", "rate": 1 })).expect(201).json();
    let job = job["id"].as_str().unwrap().to_owned();
    let row = format!("#jobs tr[data-job=\"{job}\"]");
    browser.wait_text(&format!("{row} button.pause"), |t| t == "Pause");
    let on_screen = |css: &str| {
        browser.eval(&format!(
            "const r = document.querySelector('{css}').getBoundingClientRect(); return r.left >= 0 && r.right <= document.documentElement.clientWidth && r.width > 0"
        ))
    };
    for button in ["pause", "cancel"] {
        assert_eq!(on_screen(&format!("{row} button.{button}")), serde_json::json!(true), "{button} is on a 390-pixel screen");
    }
    browser.screenshot("08b-job-phone");
    browser.click(&format!("{row} button.pause"));
    browser.wait_text(&format!("{row} button.resume"), |t| t == "Resume");
    assert_eq!(host.get(&format!("/jobs/{job}")).json()["state"], "paused");
    assert_eq!(on_screen(&format!("{row} button.cancel")), serde_json::json!(true));
    browser.click(&format!("{row} button.cancel"));
    browser.wait_text(&format!("{row}"), |t| has_word(t, "cancelled"));
    assert_eq!(host.get(&format!("/jobs/{job}")).json()["state"], "cancelled");
    drop(host);
    let banner = browser.text("#unreachable");
    assert!(banner.contains("unreachable"), "{banner}");
    browser.screenshot("09-host-unreachable");
}

#[test]
fn the_console_is_served_without_credentials_but_shows_nothing_without_the_token() {
    let host = Host::builder().admin_token(TOKEN).start();
    let client = notes_client::Client::new(&host.base); // no token
    let page = client.request("GET", "/ui/", None, &[]).unwrap();
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    // Its data comes from the admin API, which still wants the token.
    assert_eq!(client.request("GET", "/migration", None, &[]).unwrap().status, 401);
    assert_eq!(client.request("GET", "/ui/nothing.js", None, &[]).unwrap().status, 404);
}

#[test]
fn a_refused_flip_shows_the_servers_reason_and_changes_nothing() {
    // A host whose plugin cannot migrate: the deployment gate refuses to turn migration on.
    let host = Host::builder().plugin(Plugin::LegacyOnly).admin_token(TOKEN).start();
    let account = host.create_account(false);
    let browser = Browser::open(1280, 900);
    browser.goto(&format!("{}/ui/#accounts", host.base));
    browser.type_into("#token", TOKEN);
    browser.click("#sign-in");
    browser.click(&format!("tr[data-account=\"{account}\"] button.flip"));
    let question = browser.text("#confirm");
    assert!(question.contains("enters migration mode") && question.contains("new notes go to the new store"), "says what happens to its notes: {question}");
    browser.click("#confirm-go");
    let refused = browser.text("#confirm-error");
    assert!(refused.contains("does not support migration"), "the gate's reason: {refused}");
    browser.screenshot("10-refused-flip");
    assert!(!host.is_migrating(&account), "nothing changed");
    assert_eq!(browser.text(&format!("tr[data-account=\"{account}\"] td.flag")), "off");
    // Why: the active plugin cannot migrate, as the page says.
    browser.press(ESCAPE);
    browser.click("#nav-plugins");
    let active = browser.text("#active-plugin");
    assert!(active.contains("legacy-only@") && active.contains("cannot migrate"), "{active}");
    assert_eq!(host.plugins()["active"]["supportsMigration"], false);
}

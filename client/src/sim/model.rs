//! What a strict client remembers of one account's notes, and how it judges
//! every answer against that memory.
//!
//! Each account is driven by one client thread, one request at a time, so
//! the memory is exact, except after a write whose outcome the client could
//! not learn (the connection broke, a 5xx): the note is then `Unknown` with
//! every state it may be in, and the next read settles it.

use std::collections::{BTreeMap, HashSet};

/// What the client expects of one note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Acknowledged: the newest content.
    Present(String),
    /// Deletion acknowledged.
    Deleted,
    /// A write's outcome is unknown: any of these (`None` = absent).
    Unknown(Vec<Option<String>>),
}

/// The anomalies a strict client counts; any of them fails the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Anomalies {
    /// An acknowledged note is missing (404, or absent from a list).
    pub lost: u64,
    /// A read returned an older content than the last acknowledged write.
    pub stale: u64,
    /// A list returned an id twice, or a note stayed in both stores.
    pub duplicated: u64,
    /// A note whose deletion was acknowledged came back.
    pub resurrected: u64,
    /// An answer no correct server gives (an unknown id, a content never written, a 500).
    pub unexpected: u64,
}

impl Anomalies {
    pub fn total(&self) -> u64 {
        self.lost + self.stale + self.duplicated + self.resurrected + self.unexpected
    }

    pub fn add(&mut self, other: &Anomalies) {
        self.lost += other.lost;
        self.stale += other.stale;
        self.duplicated += other.duplicated;
        self.resurrected += other.resurrected;
        self.unexpected += other.unexpected;
    }
}

/// One account's notes as the client knows them.
#[derive(Debug, Default)]
pub struct Memory {
    pub notes: BTreeMap<String, Expect>,
    /// Every content ever written per note, to tell "stale" from "unexpected".
    written: BTreeMap<String, HashSet<String>>,
    /// Notes with a delete that was never answered. Such a delete may take
    /// effect at any later time (linearizability allows an unanswered
    /// operation to), even after a read still saw the note: a host that died
    /// midway leaves it for the next writer to finish. An acknowledged update
    /// proves it will not.
    may_vanish: HashSet<String>,
}

/// What a read observed of one note.
pub type Seen = Option<String>;

impl Memory {
    pub fn present_ids(&self) -> Vec<String> {
        self.notes.iter().filter(|(_, e)| matches!(e, Expect::Present(_))).map(|(id, _)| id.clone()).collect()
    }

    pub fn unknown_ids(&self) -> Vec<String> {
        self.notes.iter().filter(|(_, e)| matches!(e, Expect::Unknown(_))).map(|(id, _)| id.clone()).collect()
    }

    pub fn live_count(&self) -> usize {
        self.notes.values().filter(|e| !matches!(e, Expect::Deleted)).count()
    }

    /// True if `id` may be gone without an anomaly (an unanswered delete).
    pub fn may_vanish(&self, id: &str) -> bool {
        self.may_vanish.contains(id)
    }

    /// A write was acknowledged: `to` is now the state.
    pub fn acknowledged(&mut self, id: &str, to: Option<String>) {
        self.may_vanish.remove(id);
        if let Some(content) = &to {
            self.written.entry(id.to_owned()).or_default().insert(content.clone());
        }
        self.notes.insert(id.to_owned(), match to {
            Some(content) => Expect::Present(content),
            None => Expect::Deleted,
        });
    }

    /// A write's outcome is unknown: it may or may not have happened.
    pub fn uncertain(&mut self, id: &str, to: Option<String>) {
        match &to {
            Some(content) => {
                self.written.entry(id.to_owned()).or_default().insert(content.clone());
            }
            None => {
                self.may_vanish.insert(id.to_owned());
            }
        }
        let mut options = match self.notes.get(id) {
            None => vec![None],
            Some(Expect::Present(c)) => vec![Some(c.clone())],
            Some(Expect::Deleted) => vec![None],
            Some(Expect::Unknown(o)) => o.clone(),
        };
        if !options.contains(&to) {
            options.push(to);
        }
        self.notes.insert(id.to_owned(), Expect::Unknown(options));
    }

    /// Judges a read of one note (`GET`) and settles an unknown state.
    pub fn judge_read(&mut self, id: &str, seen: Seen, out: &mut Anomalies) {
        let Some(expect) = self.notes.get(id).cloned() else {
            if seen.is_some() {
                out.unexpected += 1;
            }
            return;
        };
        if seen.is_none() && self.may_vanish.remove(id) {
            self.notes.insert(id.to_owned(), Expect::Deleted);
            return;
        }
        match (&expect, &seen) {
            (Expect::Present(c), Some(s)) if c == s => {}
            (Expect::Present(_), Some(s)) => self.wrong_content(id, s, out),
            (Expect::Present(_), None) => out.lost += 1,
            (Expect::Deleted, None) => {}
            (Expect::Deleted, Some(_)) => out.resurrected += 1,
            (Expect::Unknown(options), _) if options.contains(&seen) => {
                // Settled: from now on the client expects what it saw.
                self.notes.insert(id.to_owned(), match seen {
                    Some(c) => Expect::Present(c),
                    None => Expect::Deleted,
                });
            }
            (Expect::Unknown(_), None) => out.lost += 1,
            (Expect::Unknown(_), Some(s)) => self.wrong_content(id, s, out),
        }
    }

    fn wrong_content(&self, id: &str, seen: &str, out: &mut Anomalies) {
        if self.written.get(id).is_some_and(|w| w.contains(seen)) {
            out.stale += 1;
        } else {
            out.unexpected += 1;
        }
    }

    /// Judges a list of ids (`GET .../notes`).
    pub fn judge_list(&self, ids: &[String], out: &mut Anomalies) {
        let listed: HashSet<&str> = ids.iter().map(String::as_str).collect();
        out.duplicated += (ids.len() - listed.len()) as u64;
        for (id, expect) in &self.notes {
            let is_listed = listed.contains(id.as_str());
            match expect {
                Expect::Present(_) if !is_listed && !self.may_vanish.contains(id) => out.lost += 1,
                Expect::Deleted if is_listed => out.resurrected += 1,
                _ => {}
            }
        }
        out.unexpected += listed.iter().filter(|id| !self.notes.contains_key(**id)).count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    #[test]
    fn a_strict_client_names_each_kind_of_anomaly() {
        let mut m = Memory::default();
        let mut a = Anomalies::default();
        m.acknowledged("n", s("v1"));
        m.acknowledged("n", s("v2"));
        m.judge_read("n", s("v2"), &mut a);
        assert_eq!(a.total(), 0);
        m.judge_read("n", s("v1"), &mut a);
        assert_eq!(a.stale, 1);
        m.judge_read("n", None, &mut a);
        assert_eq!(a.lost, 1);
        m.acknowledged("n", None);
        m.judge_read("n", s("v2"), &mut a);
        assert_eq!(a.resurrected, 1);
        m.judge_list(&["n".into(), "x".into(), "x".into()], &mut a);
        assert_eq!((a.resurrected, a.unexpected, a.duplicated), (2, 1, 1));
    }

    #[test]
    fn an_unknown_outcome_accepts_either_state_and_is_settled_by_the_next_read() {
        let mut m = Memory::default();
        let mut a = Anomalies::default();
        m.acknowledged("n", s("v1"));
        m.uncertain("n", s("v2"));
        m.judge_list(&["n".into()], &mut a);
        m.judge_read("n", s("v1"), &mut a);
        assert_eq!(a.total(), 0, "v1 was one of the possible states");
        assert_eq!(m.notes["n"], Expect::Present("v1".into()), "settled");
        // Once v1 was seen, v2 showing up later means a write landed late.
        m.judge_read("n", s("v2"), &mut a);
        assert_eq!(a.stale, 1);
    }

    #[test]
    fn an_unanswered_delete_may_take_effect_after_a_read_still_saw_the_note() {
        let mut m = Memory::default();
        let mut a = Anomalies::default();
        m.acknowledged("n", s("v1"));
        m.uncertain("n", None);
        m.judge_read("n", s("v1"), &mut a);
        m.judge_list(&[], &mut a);
        m.judge_read("n", None, &mut a);
        assert_eq!(a.total(), 0);
        assert_eq!(m.notes["n"], Expect::Deleted);
        // An acknowledged update ends that: the note may no longer vanish.
        m.acknowledged("o", s("v1"));
        m.uncertain("o", None);
        m.acknowledged("o", s("v2"));
        m.judge_read("o", None, &mut a);
        assert_eq!(a.lost, 1);
    }
}

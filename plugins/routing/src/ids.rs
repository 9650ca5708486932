//! [`IdList`]: a list of note ids in one string, as WIT 0.3's `note-id-list`.

use std::fmt;

/// Note ids, each followed by a line feed, in one string (`"a\nb\n"`). A
/// list of ids is built, merged and handed across the Wasm boundary without
/// an allocation per id: one string crosses in one copy where a
/// `list<string>` costs an allocation and a host → guest transition per id.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IdList(String);

impl IdList {
    /// From a `note-id-list` written by code that keeps its format (the
    /// host's stores, for a plugin): no scan, so a plugin pays nothing per
    /// id; only a missing final line feed is added.
    pub fn from_joined(mut joined: String) -> IdList {
        if !joined.is_empty() && !joined.ends_with('\n') {
            joined.push('\n');
        }
        IdList(joined)
    }

    /// From a `note-id-list` nobody vouches for (a plugin's answer, for the
    /// host): empty lines are no ids, and a last id without its line feed counts.
    pub fn parse(joined: String) -> IdList {
        if joined.contains("\n\n") || joined.starts_with('\n') {
            return joined.split('\n').filter(|id| !id.is_empty()).collect();
        }
        IdList::from_joined(joined)
    }

    /// The `note-id-list` string.
    pub fn into_joined(self) -> String {
        self.0
    }

    /// The `note-id-list` string, borrowed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split_terminator('\n')
    }

    pub fn len(&self) -> usize {
        self.0.bytes().filter(|b| *b == b'\n').count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// Both lists' ids, sorted, each once. Stores list their ids sorted, so
    /// this is one linear merge with no allocation per id, and no work at all
    /// when one list is empty (plain mode, a finished migration). Lists that
    /// turn out not to be sorted are sorted instead.
    pub fn union(self, other: IdList) -> IdList {
        if other.is_empty() {
            return self;
        }
        if self.is_empty() {
            return other;
        }
        let mut out = String::with_capacity(self.0.len() + other.0.len());
        let (mut left, mut right) = (self.iter().peekable(), other.iter().peekable());
        let mut last: Option<&str> = None;
        loop {
            let next = match (left.peek(), right.peek()) {
                (Some(l), Some(r)) if l < r => left.next(),
                (Some(l), Some(r)) if l > r => right.next(),
                (Some(_), Some(_)) => {
                    right.next();
                    left.next()
                }
                (Some(_), None) => left.next(),
                (None, Some(_)) => right.next(),
                (None, None) => break,
            };
            let next = next.expect("peeked");
            if last.is_some_and(|last| last >= next) {
                return self.iter().chain(other.iter()).collect::<Vec<_>>().into_iter().sorted_unique();
            }
            last = Some(next);
            out.push_str(next);
            out.push('\n');
        }
        IdList(out)
    }
}

/// Sorting and deduplicating ids, for lists that were not sorted.
trait SortedUnique<'a> {
    fn sorted_unique(self) -> IdList;
}

impl<'a, I: Iterator<Item = &'a str>> SortedUnique<'a> for I {
    fn sorted_unique(self) -> IdList {
        let mut ids: Vec<&str> = self.collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for IdList {
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> IdList {
        let mut joined = String::new();
        for id in ids {
            joined.push_str(id.as_ref());
            joined.push('\n');
        }
        IdList(joined)
    }
}

impl fmt::Debug for IdList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Compares with a slice of ids, for tests: `assert_eq!(list, ["a", "b"])`.
impl<const N: usize> PartialEq<[&str; N]> for IdList {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_union_merges_sorted_lists_once_each() {
        let a: IdList = ["a", "c", "e"].into_iter().collect();
        let b: IdList = ["b", "c", "f"].into_iter().collect();
        assert_eq!(a.union(b), ["a", "b", "c", "e", "f"]);
    }

    #[test]
    fn lists_that_are_not_sorted_are_sorted_by_a_union() {
        let a: IdList = ["c", "a", "c"].into_iter().collect();
        assert_eq!(a.union(["b"].into_iter().collect()), ["a", "b", "c"]);
        let b: IdList = ["z", "b"].into_iter().collect();
        assert_eq!(b.union(["b"].into_iter().collect()), ["b", "z"]);
    }

    #[test]
    fn a_union_with_nothing_is_the_list_as_given() {
        let a: IdList = ["b", "a"].into_iter().collect();
        assert_eq!(a.clone().union(IdList::default()), ["b", "a"]);
        assert_eq!(IdList::default().union(a), ["b", "a"]);
    }

    #[test]
    fn a_joined_string_from_the_boundary_is_normalized() {
        assert_eq!(IdList::from_joined("a\nb".into()), ["a", "b"]);
        assert_eq!(IdList::parse("\na\n\nb\n".into()), ["a", "b"]);
        assert_eq!(IdList::parse("a\nb".into()), ["a", "b"]);
        assert_eq!(IdList::parse(String::new()).len(), 0);
        assert_eq!(IdList::from_joined("a\nb\n".into()).len(), 2);
    }
}

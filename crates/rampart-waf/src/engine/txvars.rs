//! `TX`, the transaction's own variables, addressed by number.
//!
//! Every `TX` name a ruleset writes literally (`setvar:tx.inbound_anomaly_score_pl1=0`),
//! reads in a macro (`%{tx.critical_anomaly_score}`) or tests (`TX:DETECTION_PARANOIA_LEVEL`)
//! is numbered once, at load ([`TxNames`]). A transaction keeps the values of those names
//! in a table indexed by that number ([`TxVars`]): a `setvar` overwrites the bytes of its
//! slot in place, a macro copies them out — no key is built, compared or allocated on the
//! request path. Names only known at run time (`setvar:'tx.header_name_%{tx.0}=…'`) are
//! kept beside the table, by name. Listing the collection (`TX`, `TX:/regex/`) yields
//! both in name order, as ModSecurity lists it.

use std::collections::{BTreeMap, HashMap};

/// A hasher for short names (FNV-1a; the names are the ruleset's, not the client's).
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The `TX` names a ruleset mentions, numbered from 0. Names are lower-case (`TX` names
/// compare case-insensitively). The capture groups `0`…`9` are always ids 0…9.
#[derive(Debug, Default)]
pub(crate) struct TxNames {
    index: HashMap<Box<str>, u32, std::hash::BuildHasherDefault<NameHasher>>,
    names: Vec<Box<str>>,
    /// Ids in name order.
    sorted: Vec<u32>,
}

/// How many ids the capture groups take.
pub(crate) const CAPTURES: u32 = 10;

impl TxNames {
    pub(crate) fn new() -> Self {
        let mut n = TxNames::default();
        for g in 0..CAPTURES {
            n.intern(&g.to_string());
        }
        n.finish();
        n
    }

    /// The id of a (lower-case) name, numbering it if it is new.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        id
    }

    /// Orders the ids by name; called once all names are in.
    pub(crate) fn finish(&mut self) {
        let mut sorted: Vec<u32> = (0..self.names.len())
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        sorted.sort_by(|&a, &b| self.name(a).cmp(self.name(b)));
        self.sorted = sorted;
    }

    /// The id of a (lower-case) name the ruleset mentions.
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The ids in name order.
    pub(crate) fn sorted(&self) -> &[u32] {
        &self.sorted
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }
}

/// One member of `TX` when the collection is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member<'a> {
    /// A numbered name.
    Id(u32),
    /// A name made at run time, and its value.
    Named(&'a str, &'a [u8]),
}

/// The values of `TX` in one transaction.
#[derive(Debug, Default)]
pub(crate) struct TxVars {
    /// By id; a buffer outlives a `delete` so that setting the name again reuses it.
    vals: Vec<Vec<u8>>,
    set: Vec<bool>,
    /// Names not numbered at load (made by macros at run time).
    named: BTreeMap<String, Vec<u8>>,
}

impl TxVars {
    /// Forgets every value, keeping the buffers (for the next transaction).
    pub(crate) fn reset(&mut self) {
        self.named.clear();
        // Values held for ids beyond this many (rare) are let go; `set` stays as long as
        // `vals`, all false.
        self.vals.truncate(1024);
        self.vals.iter_mut().for_each(Vec::clear);
        self.set.truncate(self.vals.len());
        self.set.iter_mut().for_each(|s| *s = false);
    }

    pub(crate) fn get(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        match self.set.get(i) {
            Some(true) => self.vals.get(i).map(Vec::as_slice),
            _ => None,
        }
    }

    /// The buffer of `id`, marked set and emptied, to write the new value into.
    pub(crate) fn slot(&mut self, id: u32) -> &mut Vec<u8> {
        let i = id as usize;
        if i >= self.vals.len() {
            self.vals.resize_with(i + 1, Vec::new);
            self.set.resize(i + 1, false);
        }
        self.set[i] = true;
        let v = &mut self.vals[i];
        v.clear();
        v
    }

    /// Sets `id` to `value`, handing back the buffer it held (for reuse).
    pub(crate) fn put(&mut self, id: u32, value: Vec<u8>) -> Vec<u8> {
        self.slot(id);
        std::mem::replace(&mut self.vals[id as usize], value)
    }

    pub(crate) fn remove(&mut self, id: u32) {
        if let Some(s) = self.set.get_mut(id as usize) {
            *s = false;
        }
    }

    /// By (lower-case) name, numbered or not.
    pub(crate) fn get_named(&self, names: &TxNames, name: &str) -> Option<&[u8]> {
        match names.id(name) {
            Some(id) => self.get(id),
            None => self.named.get(name).map(Vec::as_slice),
        }
    }

    pub(crate) fn put_named(&mut self, names: &TxNames, name: String, value: Vec<u8>) {
        match names.id(&name) {
            Some(id) => {
                self.put(id, value);
            }
            None => {
                self.named.insert(name, value);
            }
        }
    }

    /// A name made at run time that [`TxNames`] does not number: its value.
    pub(crate) fn get_made(&self, name: &str) -> Option<&[u8]> {
        self.named.get(name).map(Vec::as_slice)
    }

    /// Sets such a name.
    pub(crate) fn put_made(&mut self, name: String, value: Vec<u8>) {
        self.named.insert(name, value);
    }

    /// Deletes such a name.
    pub(crate) fn remove_made(&mut self, name: &str) {
        self.named.remove(name);
    }

    /// Visits every member, in name order.
    pub(crate) fn for_each_member<'a>(&'a self, names: &'a TxNames, f: impl FnMut(Member<'a>)) {
        self.for_each_member_of(names, &names.sorted, f);
    }

    /// Visits the members among the numbered names `ids` (in name order) and every member
    /// named at run time, in name order.
    pub(crate) fn for_each_member_of<'a>(
        &'a self,
        names: &'a TxNames,
        ids: &[u32],
        mut f: impl FnMut(Member<'a>),
    ) {
        let mut made = self.named.iter().peekable();
        for &id in ids {
            if self.get(id).is_none() {
                continue;
            }
            let name = names.name(id);
            while let Some((k, v)) = made.next_if(|(k, _)| k.as_str() < name) {
                f(Member::Named(k, v));
            }
            f(Member::Id(id));
        }
        for (k, v) in made {
            f(Member::Named(k, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> TxNames {
        let mut n = TxNames::new();
        for s in list {
            n.intern(s);
        }
        n.finish();
        n
    }

    #[test]
    fn captures_are_the_first_ids_and_names_are_numbered_once() {
        let n = names(&["score", "anomaly", "score"]);
        assert_eq!(n.id("0"), Some(0));
        assert_eq!(n.id("9"), Some(9));
        assert_eq!(n.id("score"), Some(CAPTURES));
        assert_eq!(n.id("anomaly"), Some(CAPTURES + 1));
        assert_eq!(n.name(CAPTURES), "score");
        assert_eq!(n.id("missing"), None);
        assert_eq!(n.name(CAPTURES + 1), "anomaly");
    }

    #[test]
    fn set_get_delete_by_id_and_by_name() {
        let n = names(&["score"]);
        let id = n.id("score").unwrap_or_default();
        let mut t = TxVars::default();
        assert_eq!(t.get(id), None);
        t.slot(id).extend_from_slice(b"5");
        assert_eq!(t.get(id), Some(&b"5"[..]));
        assert_eq!(t.get_named(&n, "score"), Some(&b"5"[..]));
        t.slot(id).extend_from_slice(b"10");
        assert_eq!(t.get(id), Some(&b"10"[..]), "a new value replaces the old");
        t.remove(id);
        assert_eq!(t.get(id), None);
        assert_eq!(t.get_named(&n, "score"), None);
        // An empty value is set, not absent.
        t.slot(id);
        assert_eq!(t.get(id), Some(&b""[..]));
        t.put_named(&n, "header_name_x".into(), b"/x/".to_vec());
        assert_eq!(t.get_named(&n, "header_name_x"), Some(&b"/x/"[..]));
        t.put_named(&n, "score".into(), b"7".to_vec());
        assert_eq!(t.get(id), Some(&b"7"[..]), "a known name goes to its slot");
        t.remove_made("header_name_x");
        assert_eq!(t.get_named(&n, "header_name_x"), None);
        // Ids never seen are absent, whatever their number.
        assert_eq!(t.get(u32::MAX), None);
        t.remove(u32::MAX);
    }

    #[test]
    fn members_are_listed_in_name_order_across_both_kinds() {
        let n = names(&["b", "d", "f"]);
        let mut t = TxVars::default();
        for (name, v) in [("f", "6"), ("b", "2"), ("c", "3"), ("a", "1"), ("g", "7")] {
            t.put_named(&n, name.into(), v.as_bytes().to_vec());
        }
        t.slot(0).extend_from_slice(b"cap");
        let mut listed: Vec<String> = Vec::new();
        t.for_each_member(&n, |m| {
            listed.push(match m {
                Member::Id(id) => format!(
                    "{}={}",
                    n.name(id),
                    String::from_utf8_lossy(t.get(id).unwrap_or_default())
                ),
                Member::Named(k, v) => format!("{k}={}", String::from_utf8_lossy(v)),
            });
        });
        assert_eq!(listed, ["0=cap", "a=1", "b=2", "c=3", "f=6", "g=7"]);
    }
}

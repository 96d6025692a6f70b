//! Lookup structures over declared column names: the key tree the flattener walks, and the
//! paths used to find the id and incremental fields.
//!
//! Declared names join nesting levels with `__`. The tree is built so that a record path
//! `k1, k2, .., kn` reaches column `c` exactly when `k1__k2__..__kn == c`, which also covers
//! keys that start or end with `_` (`board` → `_info` → `board_href` is `board___info__board_href`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::lite::{Json, Obj};

/// A word-at-a-time hash for short keys (the keys are ours or the API's field names, so
/// there is no flooding concern); much cheaper than SipHash or byte-wise FNV.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K).rotate_left(26);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.mix(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

pub(crate) type KeyHash = BuildHasherDefault<KeyHasher>;

/// What a key leads to at one level of the tree: a declared column, a deeper level, or both.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Entry {
    pub column: Option<u32>,
    pub child: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct Node {
    /// The flattened name of this level (`""` at the root), used to name undeclared leaves.
    pub prefix: Box<str>,
    children: HashMap<Box<str>, Entry, KeyHash>,
}

impl Node {
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Entry> {
        self.children.get(key).copied()
    }
}

/// The lookup tree over the declared column names; node 0 is the record itself.
#[derive(Debug)]
pub(crate) struct Lookup {
    nodes: Vec<Node>,
}

/// Positions of every `__` in `name` (overlapping: `___` has two), excluding position 0.
fn cuts(name: &str) -> impl Iterator<Item = usize> + '_ {
    let b = name.as_bytes();
    (1..b.len().saturating_sub(1)).filter(move |&i| b[i] == b'_' && b[i + 1] == b'_')
}

impl Lookup {
    pub(crate) fn new(names: &[&str]) -> Self {
        let mut prefixes: Vec<&str> = vec![""];
        for name in names {
            for cut in cuts(name) {
                let p = &name[..cut];
                if !prefixes.contains(&p) {
                    prefixes.push(p);
                }
            }
        }
        let mut nodes: Vec<Node> = prefixes
            .iter()
            .map(|p| Node {
                prefix: (*p).into(),
                children: HashMap::default(),
            })
            .collect();
        for (at, prefix) in prefixes.iter().enumerate() {
            // The key leading from `prefix` to `target`, when `target` is `prefix__key`.
            let key_to = |target: &'_ str| -> Option<String> {
                if prefix.is_empty() {
                    return Some(target.to_owned());
                }
                let rest = target.strip_prefix(prefix)?.strip_prefix("__")?;
                (!rest.is_empty()).then(|| rest.to_owned())
            };
            let mut children: HashMap<Box<str>, Entry, KeyHash> = HashMap::default();
            for (child, target) in prefixes.iter().enumerate().skip(1) {
                if let Some(key) = key_to(target) {
                    children.entry(key.into()).or_default().child = Some(child as u32);
                }
            }
            for (column, target) in names.iter().enumerate() {
                if let Some(key) = key_to(target) {
                    children.entry(key.into()).or_default().column = Some(column as u32);
                }
            }
            nodes[at].children = children;
        }
        Lookup { nodes }
    }

    /// Level `i` of the tree; 0 is the record itself.
    #[inline]
    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }
}

/// The ways a flattened name can be spelled as a path of record keys
/// (`_info__lastUpdated`: the key itself, or `_info` → `lastUpdated`), at most 64.
fn splits(name: &str) -> Vec<Vec<Box<str>>> {
    let mut out = vec![vec![Box::from(name)]];
    for cut in cuts(name) {
        for mut rest in splits(&name[cut + 2..]) {
            if out.len() >= 64 {
                return out;
            }
            rest.insert(0, Box::from(&name[..cut]));
            out.push(rest);
        }
    }
    out
}

/// Finds one declared field (the id or the incremental field) in records, trying first the
/// spelling that matched last time.
#[derive(Debug)]
pub(crate) struct FieldPath {
    paths: Vec<Vec<Box<str>>>,
    last: AtomicUsize,
}

impl FieldPath {
    pub(crate) fn new(name: &str) -> Self {
        FieldPath {
            paths: splits(name),
            last: AtomicUsize::new(0),
        }
    }

    pub(crate) fn find<'s, 'a>(&self, obj: &'s Obj<'a>) -> Option<&'s Json<'a>> {
        let n = self.paths.len();
        let first = self.last.load(Ordering::Relaxed);
        (0..n).map(|k| (first + k) % n).find_map(|i| {
            let (leaf, parents) = self.paths[i].split_last()?;
            let mut at = obj;
            for key in parents {
                match Json::get(at, key) {
                    Some(Json::Obj(inner)) => at = inner,
                    _ => return None,
                }
            }
            let found = Json::get(at, leaf)?;
            if i != first {
                self.last.store(i, Ordering::Relaxed);
            }
            Some(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_follow_nesting_and_flat_keys() {
        use crate::sink::lite::lite;
        let rec =
            lite(json!({"_info": {"lastUpdated": "x"}, "a__b": 1, "board": {"_info": {"h": 2}}}));
        let obj = rec.as_obj().unwrap();
        let find = |name: &str| FieldPath::new(name).find(obj).cloned();
        assert_eq!(find("_info__lastUpdated"), Some(lite(json!("x"))));
        assert_eq!(find("a__b"), Some(lite(json!(1))));
        assert_eq!(find("board___info__h"), Some(lite(json!(2))));
        assert_eq!(find("board__nope"), None);
        let spellings = splits("a___b__c").len();
        assert_eq!(spellings, 6, "{:?}", splits("a___b__c"));
    }

    #[test]
    fn the_tree_covers_every_spelling_of_a_name() {
        let lookup = Lookup::new(&["board___info__board_href", "a__b", "id"]);
        let root = lookup.node(0);
        assert_eq!(root.get("id").and_then(|e| e.column), Some(2));
        assert_eq!(root.get("a__b").and_then(|e| e.column), Some(1));
        let board = root.get("board").and_then(|e| e.child).unwrap() as usize;
        assert_eq!(&*lookup.node(board).prefix, "board");
        let info = lookup
            .node(board)
            .get("_info")
            .and_then(|e| e.child)
            .unwrap() as usize;
        assert_eq!(
            lookup.node(info).get("board_href").and_then(|e| e.column),
            Some(0)
        );
        assert!(root.get("nope").is_none());
    }
}

//! [`FileMap`]: the path -> content maps the reward reads.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

/// A map from file path to file content, as the reward's `code_context`, `oracle_new_content`
/// and edited contents are.
///
/// Implemented for `HashMap` and `BTreeMap` with `String` or `&str` keys and values, and for
/// slices of `(path, content)` pairs (first pair wins for a repeated path), so callers keep
/// whatever map they already have.
pub trait FileMap {
    /// The content of `path`, if the map has it.
    fn file(&self, path: &str) -> Option<&str>;

    /// Every path in the map, in the map's own order.
    fn paths(&self) -> impl Iterator<Item = &str>;
}

impl<K, V, S> FileMap for HashMap<K, V, S>
where
    K: Borrow<str> + Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn file(&self, path: &str) -> Option<&str> {
        self.get(path).map(AsRef::as_ref)
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        self.keys().map(Borrow::borrow)
    }
}

impl<K, V> FileMap for BTreeMap<K, V>
where
    K: Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn file(&self, path: &str) -> Option<&str> {
        self.get(path).map(AsRef::as_ref)
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        self.keys().map(Borrow::borrow)
    }
}

impl<K, V> FileMap for [(K, V)]
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    fn file(&self, path: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k.as_ref() == path).map(|(_, v)| v.as_ref())
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k.as_ref())
    }
}

impl<K, V> FileMap for Vec<(K, V)>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    fn file(&self, path: &str) -> Option<&str> {
        self.as_slice().file(path)
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        self.as_slice().paths()
    }
}

impl<M: FileMap + ?Sized> FileMap for &M {
    fn file(&self, path: &str) -> Option<&str> {
        (**self).file(path)
    }

    fn paths(&self) -> impl Iterator<Item = &str> {
        (**self).paths()
    }
}

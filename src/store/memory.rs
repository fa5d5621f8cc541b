//! A store in memory: the reference `Store` for tests of everything above the backends (the
//! conformance suite holds it to the same contract as the directory and S3 stores).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Result;

use super::{check_key, Creator, InMemory, ObjectReader, Store};

/// An object and the token of the create that made it (`None` once `put` rewrote it), as S3
/// keeps it in the object's metadata: so `FaultyStore` over this store can lose a create's
/// answer and the recognition (`create`) still finds its own object.
struct Object {
    bytes: Vec<u8>,
    token: Option<String>,
}

#[derive(Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Object>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key and its bytes (a snapshot).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let g = self.objects.lock().unwrap();
        g.iter()
            .map(|(k, o)| (k.clone(), o.bytes.clone()))
            .collect()
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.bytes.clone()))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        let o = Object {
            bytes: bytes.to_vec(),
            token: None,
        };
        self.objects.lock().unwrap().insert(key.to_string(), o);
        Ok(())
    }

    /// Decided under one lock, and the answer cannot be lost: no read-back needed.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.try_create(key, bytes, &super::create::token())
    }

    fn try_create(&self, key: &str, bytes: &[u8], token: &str) -> Result<bool> {
        check_key(key)?;
        let mut g = self.objects.lock().unwrap();
        if g.contains_key(key) {
            return Ok(false);
        }
        let o = Object {
            bytes: bytes.to_vec(),
            token: Some(token.to_string()),
        };
        g.insert(key.to_string(), o);
        Ok(true)
    }

    fn creator(&self, key: &str) -> Result<Creator> {
        check_key(key)?;
        Ok(match self.objects.lock().unwrap().get(key) {
            None => Creator::Absent,
            Some(Object { token: None, .. }) => Creator::Unmarked,
            Some(Object { token: Some(t), .. }) => Creator::Marked(t.clone()),
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        let p = prefix.trim_matches('/');
        if !p.is_empty() {
            check_key(p)?;
        }
        let full = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        let names: BTreeSet<String> = self
            .objects
            .lock()
            .unwrap()
            .range(full.clone()..)
            .take_while(|(k, _)| k.starts_with(&full))
            .filter_map(|(k, _)| k[full.len()..].split('/').next().map(str::to_string))
            .collect();
        Ok(names.into_iter().collect())
    }

    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        // A copy: the pinned version survives a later put or delete of the key.
        Ok(self
            .get(key)?
            .map(|b| Box::new(InMemory(b)) as Box<dyn ObjectReader>))
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

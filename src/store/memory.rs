//! A store in memory: the reference `Store` for tests of everything above the backends (the
//! conformance suite holds it to the same contract as the directory and S3 stores).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Result;

use super::{check_key, InMemory, ObjectReader, Store};

#[derive(Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key and its bytes (a snapshot).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.objects.lock().unwrap().clone()
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), bytes.to_vec());
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        check_key(key)?;
        let mut g = self.objects.lock().unwrap();
        if g.contains_key(key) {
            return Ok(false);
        }
        g.insert(key.to_string(), bytes.to_vec());
        Ok(true)
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

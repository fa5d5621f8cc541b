//! The contract every `Store` keeps, as one suite run against each backend (directory, S3,
//! memory), so the layers above can rely on it whatever the store. In the manner of zarrs's
//! storage tests: one function, called from each backend's tests.
//!
//! It works under `conformance/` and expects nothing to be there.

use anyhow::{ensure, Context, Result};

use super::{Creator, ObjectReader, Store, Transient};

/// Runs the suite; the error says which rule `store` broke.
pub fn run(store: &dyn Store) -> Result<()> {
    run_with(store, true)
}

/// The suite; `atomic_create` false skips only the race of concurrent `put_if_absent` calls on
/// one key, for a test server known not to make that atomic (s3s-fs 0.14.1 checks
/// `If-None-Match` before it writes; AWS S3, Ceph RGW and MinIO decide atomically).
pub fn run_with(store: &dyn Store, atomic_create: bool) -> Result<()> {
    let d = store.describe();
    let k = |s: &str| format!("conformance/{s}");

    // Absent keys read as absent; deleting them is fine; listing an absent prefix is empty.
    ensure!(
        store.get(&k("absent"))?.is_none(),
        "{d}: absent key read as present"
    );
    store.delete(&k("absent"))?;
    ensure!(
        store.list_dir(&k("nowhere"))?.is_empty(),
        "{d}: absent prefix lists names"
    );

    // Round trips: binary content, empty objects, overwrite, large objects.
    let binary: Vec<u8> = (0..=255u8).cycle().take(4099).collect();
    store.put(&k("a/bin"), &binary)?;
    ensure!(
        store.get(&k("a/bin"))?.as_deref() == Some(&binary[..]),
        "{d}: binary round trip"
    );
    store.put(&k("a/empty"), &[])?;
    ensure!(
        store.get(&k("a/empty"))?.as_deref() == Some(&[][..]),
        "{d}: empty object"
    );
    store.put(&k("a/bin"), b"new")?;
    ensure!(
        store.get(&k("a/bin"))?.as_deref() == Some(&b"new"[..]),
        "{d}: overwrite"
    );
    let large: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    store.put(&k("large"), &large)?;
    ensure!(
        store.get(&k("large"))?.as_deref() == Some(&large[..]),
        "{d}: 6 MiB object"
    );

    // Ranged reads of an opened object: every range is that slice of it, clipped at its end.
    ensure!(
        store.open_object(&k("absent"))?.is_none(),
        "{d}: absent key opened"
    );
    let o = store
        .open_object(&k("large"))?
        .with_context(|| format!("{d}: large object not opened"))?;
    ensure!(
        o.len() == large.len() as u64,
        "{d}: opened size {}",
        o.len()
    );
    let n = large.len() as u64;
    for (off, len) in [
        (0, 10),
        (4095, 8193),
        (1 << 20, 1 << 20),
        (n - 5, 100),
        (n, 10),
    ] {
        let want = &large[(off.min(n)) as usize..(off + len as u64).min(n) as usize];
        ensure!(
            o.read_at(off, len)? == want,
            "{d}: bytes {off}+{len} of the large object"
        );
    }
    // The opened version is pinned: after a rewrite it reads its own bytes or fails naming the
    // key, and never returns the new version's.
    store.put(&k("pinned"), &binary)?;
    let o = store
        .open_object(&k("pinned"))?
        .with_context(|| format!("{d}: pinned object not opened"))?;
    let rewritten: Vec<u8> = binary.iter().map(|b| !b).collect();
    store.put(&k("pinned"), &rewritten)?;
    match o.read_at(100, 64) {
        Ok(b) => ensure!(b == binary[100..164], "{d}: a pinned read saw the rewrite"),
        Err(e) => ensure!(
            format!("{e:#}").contains("conformance/pinned"),
            "{d}: a failed pinned read does not name the key: {e:#}"
        ),
    }
    let o = store
        .open_object(&k("pinned"))?
        .with_context(|| format!("{d}: rewritten object not opened"))?;
    ensure!(
        o.read_at(100, 64)? == rewritten[100..164],
        "{d}: reopened object does not read the rewrite"
    );

    // Listing: immediate children only, each once, sorted; the root lists the top level.
    for key in ["a/b/c/0", "a/b/c/1", "a/b/zarr.json", "a/c/1/0/2"] {
        store.put(&k(key), key.as_bytes())?;
    }
    let names = store.list_dir(&k("a"))?;
    ensure!(
        names == ["b", "bin", "c", "empty"],
        "{d}: list of conformance/a: {names:?}"
    );
    let names = store.list_dir(&k("a/b"))?;
    ensure!(
        names == ["c", "zarr.json"],
        "{d}: list of conformance/a/b: {names:?}"
    );
    ensure!(
        store.list_dir("")?.contains(&"conformance".to_string()),
        "{d}: root listing"
    );
    ensure!(
        store.list_dir(&k("a/"))? == store.list_dir(&k("a"))?,
        "{d}: trailing slash"
    );

    // Deleting removes the object (a directory store may keep the emptied directory).
    store.delete(&k("a/c/1/0/2"))?;
    ensure!(
        store.get(&k("a/c/1/0/2"))?.is_none(),
        "{d}: deleted key still reads"
    );
    ensure!(
        store.list_dir(&k("a/c/1/0"))?.is_empty(),
        "{d}: deleted key still listed"
    );

    // Keys that could escape the store or are not plain Zarr keys are refused, for every call.
    for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/.", "a\0b"] {
        ensure!(store.get(bad).is_err(), "{d}: GET accepted {bad:?}");
        ensure!(store.put(bad, b"x").is_err(), "{d}: PUT accepted {bad:?}");
        ensure!(store.delete(bad).is_err(), "{d}: DELETE accepted {bad:?}");
        ensure!(
            store.open_object(bad).is_err(),
            "{d}: open_object accepted {bad:?}"
        );
    }
    ensure!(store.list_dir("../x").is_err(), "{d}: LIST accepted ../x");

    // Concurrent writers of distinct keys all land.
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..8)
            .map(|i| s.spawn(move || store.put(&k(&format!("par/{i}")), &[i as u8; 100])))
            .collect();
        for h in handles {
            h.join().expect("writer thread")?;
        }
        Ok(())
    })?;
    for i in 0..8u8 {
        ensure!(
            store.get(&k(&format!("par/{i}")))?.as_deref() == Some(&[i; 100][..]),
            "{d}: concurrent put {i}"
        );
    }
    ensure!(
        store.list_dir(&k("par"))?.len() == 8,
        "{d}: concurrent puts listed"
    );

    // Create-if-absent: creates once, never overwrites, and of racing writers exactly one wins.
    ensure!(
        store.put_if_absent(&k("once"), b"first")?,
        "{d}: put_if_absent on a free key refused"
    );
    ensure!(
        !store.put_if_absent(&k("once"), b"second")?,
        "{d}: put_if_absent overwrote"
    );
    ensure!(
        store.get(&k("once"))?.as_deref() == Some(&b"first"[..]),
        "{d}: put_if_absent changed the object"
    );
    let winners = if !atomic_create {
        vec![0u8]
    } else {
        std::thread::scope(|s| -> Result<Vec<u8>> {
            let handles: Vec<_> = (0..8u8)
                .map(|i| s.spawn(move || store.put_if_absent(&k("race"), &[i; 64]).map(|w| (i, w))))
                .collect();
            let mut winners = Vec::new();
            for h in handles {
                let (i, won) = h.join().expect("writer thread")?;
                if won {
                    winners.push(i);
                }
            }
            Ok(winners)
        })?
    };
    if atomic_create {
        ensure!(
            winners.len() == 1,
            "{d}: racing put_if_absent winners: {winners:?}"
        );
        ensure!(
            store.get(&k("race"))?.as_deref() == Some(&[winners[0]; 64][..]),
            "{d}: the object is not the winner's"
        );
    }
    ensure!(
        !store.list_dir(&k(""))?.iter().any(|n| n.contains(".tmp-")),
        "{d}: put_if_absent left temporary objects"
    );
    ensure!(
        store.put_if_absent("a/../b", b"x").is_err(),
        "{d}: put_if_absent accepted a bad key"
    );

    // Creation tokens: a create's token reads back with the object, and an overwrite is no
    // longer the creator's object. A store whose create answers can be lost (S3: the SDK retries
    // a create into a 412; Ceph RGW answers a lost race with a 5xx) must keep them, or a lost
    // answer reads as a lost race; a store that decides locally (directory) may keep none.
    ensure!(
        store.creator(&k("absent"))? == Creator::Absent,
        "{d}: creator of an absent key"
    );
    ensure!(
        store.try_create(&k("marked"), b"m", "conformance-1")?,
        "{d}: try_create on a free key refused"
    );
    ensure!(
        !store.try_create(&k("marked"), b"n", "conformance-2")?,
        "{d}: try_create overwrote"
    );
    let keeps_tokens = match store.creator(&k("marked"))? {
        Creator::Marked(t) => {
            ensure!(t == "conformance-1", "{d}: the creator read back is {t:?}");
            true
        }
        Creator::Unmarked => {
            ensure!(
                !d.starts_with("s3://"),
                "{d}: an S3 store must keep creation tokens"
            );
            false
        }
        Creator::Absent => anyhow::bail!("{d}: a created object reads as absent"),
    };
    store.put(&k("marked"), b"rewritten")?;
    ensure!(
        store.creator(&k("marked"))? != Creator::Marked("conformance-1".into()),
        "{d}: an overwritten object still names its creator"
    );
    if keeps_tokens {
        // The answers `put_if_absent` must see through, made by a client between it and `store`.
        let lost = Lossy {
            inner: store,
            answer: Answer::Retried412,
        };
        ensure!(
            lost.put_if_absent(&k("lost"), b"mine")?,
            "{d}: a create whose answer was lost (412 on the retry) is not ours"
        );
        ensure!(
            !store.put_if_absent(&k("lost"), b"theirs")?,
            "{d}: a second create after a lost answer won too"
        );
        ensure!(
            store.get(&k("lost"))?.as_deref() == Some(&b"mine"[..]),
            "{d}: the object is not the first create's"
        );
        let failing = Lossy {
            inner: store,
            answer: Answer::ServerError,
        };
        ensure!(
            !failing.put_if_absent(&k("lost"), b"late")?,
            "{d}: a lost race answered with a 5xx counted as a win"
        );
        ensure!(
            failing.put_if_absent(&k("landed"), b"mine")?,
            "{d}: a create answered with a 5xx after it landed is not ours"
        );
        ensure!(
            store.get(&k("landed"))?.as_deref() == Some(&b"mine"[..]),
            "{d}: the created object is not ours"
        );
    }

    // Sweeping temporary objects leaves every real object alone.
    store.sweep_temp("conformance")?;
    ensure!(
        store.get(&k("a/bin"))?.as_deref() == Some(&b"new"[..]),
        "{d}: sweep removed data"
    );
    Ok(())
}

/// What the client between `put_if_absent` and the store makes of a conditional create that the
/// store carries out.
enum Answer {
    /// The answer is lost and the client's retry answers: 412 for a create that landed.
    Retried412,
    /// A transient server error (a 5xx), whatever the store did.
    ServerError,
}

/// A store seen through such a client: only `try_create` differs, and `put_if_absent` runs the
/// recognition (`create::put_if_absent`) on top, as the S3 store does.
struct Lossy<'a> {
    inner: &'a dyn Store,
    answer: Answer,
}

impl Store for Lossy<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put(key, bytes)
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        super::create::put_if_absent(self, key, bytes)
    }
    fn try_create(&self, key: &str, bytes: &[u8], token: &str) -> Result<bool> {
        let first = self.inner.try_create(key, bytes, token);
        match self.answer {
            Answer::Retried412 => self.inner.try_create(key, bytes, token),
            Answer::ServerError => {
                first?;
                Err(anyhow::Error::new(Transient(format!(
                    "{}: PUT (if absent) {key}: 503 (simulated)",
                    self.describe()
                ))))
            }
        }
    }
    fn creator(&self, key: &str) -> Result<Creator> {
        self.inner.creator(key)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list_dir(prefix)
    }
    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        self.inner.open_object(key)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_conforms() {
        run(&super::super::MemStore::new()).unwrap();
    }

    #[test]
    fn the_directory_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run(&super::super::DirStore::create(dir.path()).unwrap()).unwrap();
    }
}

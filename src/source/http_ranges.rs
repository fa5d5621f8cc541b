//! Byte ranges of remote files over HTTP(S), kept in the source's disk cache.
//!
//! A file is read in aligned blocks of `block` bytes (the last one shorter). Each block is one
//! `GET` with a `Range` header and is an ordinary entry of a [`DiskCache`]: written to a
//! temporary file, checked (status 206, `Content-Range` naming exactly the block and the file
//! size, body of that length) and renamed into place, so the cache never holds a partial or
//! foreign block; evicted least recently used under the cache's byte cap; pinned while read.
//! A file's size (a `HEAD`) is cached beside its blocks, so a warm read sends no request at all.
//! Remote files are taken as immutable per URL (EODC publishes a reprocessed slice under a new
//! data version, hence a new URL); a block whose `Content-Range` reports another size than the
//! cached one is an error naming the URL, never mixed in.
//!
//! Requests go through [`Limits`] (a cap of connections in flight and of requests per minute)
//! and are retried with the client's [`RetryPolicy`] (5xx, 429, dropped connections, short
//! bodies); every error names the method, the URL and the byte range.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::disk_cache::DiskCache;
use super::vsi::{VirtualFile, VirtualFiles};
use super::LocalFile;
use crate::remote::http;
use crate::remote::limits::Limits;
use crate::remote::retry::{Failure, RetryPolicy};

/// Block size: big enough that a GeoTIFF strip or JPEG 2000 tile-part rarely spans two, small
/// enough that a window of a file does not pull much more than it needs.
pub const DEFAULT_BLOCK: u64 = 4 << 20;

crate::counters! {
    /// Requests sent (retries included) and bytes received.
    pub struct RangeStats { heads, gets, bytes }
}

pub struct HttpRanges {
    http: reqwest::Client,
    cache: DiskCache,
    limits: Limits,
    retry: RetryPolicy,
    block: u64,
    pub stats: RangeStats,
}

impl HttpRanges {
    pub fn new(
        cache: DiskCache,
        max_connections: usize,
        max_requests_per_minute: u32,
        retry: RetryPolicy,
        block: u64,
    ) -> Result<Arc<Self>> {
        let http = crate::remote::http_client().context("building the HTTP client")?;
        Ok(Arc::new(HttpRanges {
            http,
            cache,
            limits: Limits::new(max_connections, max_requests_per_minute),
            retry,
            block: block.max(1),
            stats: RangeStats::default(),
        }))
    }

    pub fn cache(&self) -> &DiskCache {
        &self.cache
    }

    /// The most requests ever in flight at once.
    pub fn peak_connections(&self) -> usize {
        self.limits.peak()
    }

    /// The cache key prefix of `url`'s entries: `ranges/HOST[:PORT]/PATH`.
    fn key_of(url: &str) -> Result<String> {
        let u = reqwest::Url::parse(url).with_context(|| format!("{url}: not a URL"))?;
        if !matches!(u.scheme(), "http" | "https") || u.query().is_some() {
            bail!("{url}: only plain http(s) URLs without a query are read by ranges");
        }
        let host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}_{p}"),
            (Some(h), None) => h.to_string(),
            _ => bail!("{url}: no host"),
        };
        let path = u.path().trim_matches('/');
        if path.is_empty() {
            bail!("{url}: no path");
        }
        Ok(format!("ranges/{host}/{path}"))
    }

    /// The size of the file at `url` (cached after the first `HEAD`).
    pub fn size(&self, url: &str) -> Result<u64> {
        let key = format!("{}/size", Self::key_of(url)?);
        let file = crate::remote::block_on(self.cache.get_or_fetch(&key, |tmp| async move {
            let size = self.head(url).await?;
            super::write_new_file(&tmp, size.to_string().as_bytes())?;
            Ok(size.to_string().len() as u64)
        }))?;
        let text = std::fs::read_to_string(&*file)
            .with_context(|| format!("source cache: reading {}", file.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("source cache: {} holds no size", file.display()))
    }

    /// Block `index` of the file at `url` of `size` bytes, fetched first if not cached.
    pub fn block(&self, url: &str, size: u64, index: u64) -> Result<LocalFile> {
        let start = index * self.block;
        if start >= size {
            bail!("{url}: block {index} starts past the end ({size} bytes)");
        }
        let end = (start + self.block).min(size); // exclusive
        let key = format!("{}/{index:08}", Self::key_of(url)?);
        crate::remote::block_on(self.cache.get_or_fetch(&key, |tmp| async move {
            let body = self.get_range(url, size, start, end).await?;
            super::write_new_file(&tmp, &body)?;
            Ok(body.len() as u64)
        }))
    }

    pub fn block_size(&self) -> u64 {
        self.block
    }

    async fn head(&self, url: &str) -> Result<u64> {
        let what = format!("HEAD {url}");
        let r = self
            .retry
            .run(&what, || async {
                let _permit = self.limits.acquire().await;
                self.stats.heads.inc();
                let resp = self
                    .http
                    .head(url)
                    .send()
                    .await
                    .map_err(|e| http::transport(&e, ""))?;
                if let Some(f) = http::status_failure(resp.status(), resp.headers(), "") {
                    return Err(f);
                }
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| Failure::Permanent(anyhow::anyhow!("no Content-Length")))
            })
            .await;
        r.map_err(|(e, n)| e.context(format!("{what}: failed after {n} attempt(s)")))
    }

    /// Bytes `[start, end)` of the file, which must be `size` bytes long.
    async fn get_range(&self, url: &str, size: u64, start: u64, end: u64) -> Result<Vec<u8>> {
        let range = format!("bytes={start}-{}", end - 1);
        let what = format!("GET {url} ({range})");
        let r = self
            .retry
            .run(&what, || async {
                let _permit = self.limits.acquire().await;
                self.stats.gets.inc();
                let resp = self
                    .http
                    .get(url)
                    .header(reqwest::header::RANGE, &range)
                    .send()
                    .await
                    .map_err(|e| http::transport(&e, ""))?;
                if let Some(f) = http::status_failure(resp.status(), resp.headers(), "") {
                    return Err(f);
                }
                if resp.status().as_u16() != 206 {
                    return Err(Failure::Permanent(anyhow::anyhow!(
                        "HTTP {} instead of 206: the server ignored the range",
                        resp.status()
                    )));
                }
                let got = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let want = format!("bytes {start}-{}/{size}", end - 1);
                if got != want {
                    // Another size: the file changed under this URL. Never mix it in.
                    return Err(Failure::Permanent(anyhow::anyhow!(
                        "Content-Range {got:?}, expected {want:?} (did the file change?)"
                    )));
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| http::transport(&e, "reading the response: "))?;
                if body.len() as u64 != end - start {
                    return Err(Failure::Transient {
                        error: anyhow::anyhow!("{} bytes received of {}", body.len(), end - start),
                        retry_after: None,
                    });
                }
                self.stats.bytes.add(body.len() as u64);
                Ok(body.to_vec())
            })
            .await;
        r.map_err(|(e, n)| e.context(format!("{what}: failed after {n} attempt(s)")))
    }
}

/// GDAL opens an HTTP(S) URL of this reader as `/vsidatacube/<n>/<url>`.
impl VirtualFiles for HttpRanges {
    fn size(&self, url: &str) -> Result<u64> {
        HttpRanges::size(self, url)
    }

    fn open(self: Arc<Self>, url: &str) -> Result<Box<dyn VirtualFile>> {
        let size = HttpRanges::size(&self, url)?;
        Ok(Box::new(BlockFile {
            ranges: self,
            url: url.to_string(),
            size,
            current: None,
        }))
    }
}

/// An open remote file, read block by block; the block read last is kept open (and pinned):
/// GDAL reads a strip or a tile at a time, many per block.
struct BlockFile {
    ranges: Arc<HttpRanges>,
    url: String,
    size: u64,
    current: Option<(u64, LocalFile, std::fs::File)>,
}

impl VirtualFile for BlockFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, mut pos: u64, mut out: &mut [u8]) -> Result<()> {
        let block = self.ranges.block;
        while !out.is_empty() {
            let index = pos / block;
            if self.current.as_ref().map(|c| c.0) != Some(index) {
                self.current = None; // unpin the previous block first
                let local = self.ranges.block(&self.url, self.size, index)?;
                let file = std::fs::File::open(&*local)
                    .with_context(|| format!("source cache: opening {}", local.display()))?;
                self.current = Some((index, local, file));
            }
            let (_, local, file) = self.current.as_ref().expect("just set");
            let within = pos - index * block;
            let n = ((block - within) as usize).min(out.len());
            file.read_exact_at(&mut out[..n], within)
                .with_context(|| format!("source cache: reading {}", local.display()))?;
            out = &mut out[n..];
            pos += n as u64;
        }
        Ok(())
    }
}

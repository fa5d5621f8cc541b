//! A Zarr store in an S3 bucket (`s3://bucket/prefix`): CSC Allas, CDSE-style object stores, MinIO,
//! AWS. Objects are written with a single PUT, which S3 makes atomic (readers see the old object
//! or the new one), so there are no temporary objects to sweep. The chunk record is a single
//! object too, written after the chunk objects it lists, as with the directory store.
//!
//! Create-if-absent is a PUT with `If-None-Match: *` carrying the call's creation token in user
//! metadata (`CREATE_TOKEN`), settled by `create::put_if_absent`: the SDK retries a create whose
//! answer it lost (the retry then meets our own object: 412), and Ceph RGW may answer a lost race
//! with a 5xx, so neither answer is taken at its word; a HEAD reads the token back.

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;

use super::{check_key, Creator, ObjectReader, Store, Transient};
use crate::remote::s3::{self, S3Options};

/// The user-metadata name (`x-amz-meta-datacube-create`) of a created object's creation token.
const CREATE_TOKEN: &str = "datacube-create";

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Key prefix without trailing slash; empty for the bucket root.
    prefix: String,
}

impl S3Store {
    /// Opens `s3://bucket[/prefix]`, checking that the bucket is reachable.
    pub fn open(url: &str, opts: &S3Options) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("store {url}: expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        if bucket.is_empty() {
            anyhow::bail!("store {url}: no bucket name");
        }
        if !prefix.is_empty() {
            check_key(&prefix).with_context(|| format!("store {url}"))?;
        }
        let client = crate::remote::block_on(s3::client(opts, false));
        // Every call ends within `MAX_CALL`, the consistency protocol's check age: a
        // write that hangs longer fails (and is retried after a fresh check) instead of landing
        // after the invalidation that was meant to follow it.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .operation_timeout(super::MAX_CALL)
            .build();
        let client = aws_sdk_s3::Client::from_conf(
            client
                .config()
                .to_builder()
                .timeout_config(timeouts)
                .build(),
        );
        let store = S3Store {
            client,
            bucket: bucket.to_string(),
            prefix,
        };
        crate::remote::block_on(store.client.head_bucket().bucket(&store.bucket).send()).map_err(
            |e| {
                anyhow::anyhow!(
                    "store {}: bucket not reachable ({}): {}",
                    store.describe(),
                    opts.describe(),
                    s3::error_message(&e)
                )
            },
        )?;
        Ok(store)
    }

    /// The object's metadata (HEAD), or `None` if absent.
    fn head(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
        check_key(key)?;
        let r = crate::remote::block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(self.object(key))
                .send(),
        );
        match r {
            Ok(h) => Ok(Some(h)),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => {
                Err(sdk_error(&e)).with_context(|| format!("{}: HEAD {key}", self.describe()))
            }
        }
    }

    fn object(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

impl Store for S3Store {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let r = crate::remote::block_on(async {
            let resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.object(key))
                .send()
                .await;
            match resp {
                Ok(o) => o
                    .body
                    .collect()
                    .await
                    .map(|b| Some(b.into_bytes().to_vec()))
                    .map_err(|e| anyhow::Error::new(Transient(format!("reading the body: {e}")))),
                Err(e)
                    if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
                {
                    Ok(None)
                }
                Err(e) => Err(sdk_error(&e)),
            }
        });
        r.with_context(|| format!("{}: GET {key}", self.describe()))
    }

    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        let Some(head) = self.head(key)? else {
            return Ok(None);
        };
        let what = format!("{}: {key}", self.describe());
        let etag = head
            .e_tag()
            .map(str::to_string)
            .with_context(|| format!("{what}: HEAD answered no ETag"))?;
        let size = head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .with_context(|| format!("{what}: HEAD answered no Content-Length"))?;
        Ok(Some(Box::new(S3Object {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            object: self.object(key),
            what,
            etag,
            size,
        })))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        crate::remote::block_on(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.object(key))
                .body(ByteStream::from(bytes.to_vec()))
                .send(),
        )
        .map_err(|e| sdk_error(&e).context(format!("{}: PUT {key}", self.describe())))?;
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        super::create::put_if_absent(self, key, bytes)
    }

    fn try_create(&self, key: &str, bytes: &[u8], token: &str) -> Result<bool> {
        check_key(key)?;
        let r = crate::remote::block_on(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.object(key))
                .if_none_match("*")
                .metadata(CREATE_TOKEN, token)
                .body(ByteStream::from(bytes.to_vec()))
                .send(),
        );
        match r {
            Ok(_) => Ok(true),
            // 412: an object is there — another writer's, or ours if the SDK retried after
            // losing the answer to our first attempt (the caller reads the token back).
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            // 409 ConditionalRequestConflict, a concurrent conditional write in flight, is a 4xx
            // the SDK does not retry: marked transient.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 409) => {
                Err(anyhow::Error::new(Transient(s3::error_message(&e))))
                    .with_context(|| format!("{}: PUT (if absent) {key}", self.describe()))
            }
            Err(e) => Err(sdk_error(&e))
                .with_context(|| format!("{}: PUT (if absent) {key}", self.describe())),
        }
    }

    fn creator(&self, key: &str) -> Result<Creator> {
        let Some(head) = self.head(key)? else {
            return Ok(Creator::Absent);
        };
        // Servers may change the case of metadata names.
        let token = head.metadata().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(CREATE_TOKEN))
                .map(|(_, v)| v.clone())
        });
        Ok(token.map_or(Creator::Unmarked, Creator::Marked))
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        crate::remote::block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.object(key))
                .send(),
        )
        .map_err(|e| sdk_error(&e).context(format!("{}: DELETE {key}", self.describe())))?;
        Ok(())
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        let p = prefix.trim_matches('/');
        if !p.is_empty() {
            check_key(p)?;
        }
        let full = match (self.prefix.is_empty(), p.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("{p}/"),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{p}/", self.prefix),
        };
        let mut names = std::collections::BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = crate::remote::block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .delimiter("/")
                    .set_continuation_token(token.take())
                    .send(),
            )
            .map_err(|e| sdk_error(&e).context(format!("{}: LIST {p}/", self.describe())))?;
            for cp in page.common_prefixes() {
                if let Some(n) = cp.prefix().and_then(|s| s.strip_prefix(&full)) {
                    names.insert(n.trim_end_matches('/').to_string());
                }
            }
            for o in page.contents() {
                if let Some(n) = o.key().and_then(|s| s.strip_prefix(&full)) {
                    names.insert(n.to_string());
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        names.remove("");
        Ok(names.into_iter().collect())
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// One version of an object (its ETag), read by ranged GETs that must match it.
struct S3Object {
    client: aws_sdk_s3::Client,
    bucket: String,
    object: String,
    /// `s3://bucket/prefix: key`, for messages.
    what: String,
    etag: String,
    size: u64,
}

impl ObjectReader for S3Object {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let r = super::object::clip(self.size, offset, len);
        if r.is_empty() {
            return Ok(Vec::new());
        }
        let range = format!("bytes={}-{}", r.start, r.end - 1);
        let what = format!("{}: GET {range}", self.what);
        crate::remote::block_on(async {
            let resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.object)
                .range(&range)
                .if_match(&self.etag)
                .send()
                .await;
            let o = match resp {
                Ok(o) => o,
                // 412: the object was rewritten (or deleted and recreated) since it was opened.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                    anyhow::bail!(
                        "the object changed since it was opened (ETag {})",
                        self.etag
                    )
                }
                Err(e) => return Err(sdk_error(&e)),
            };
            // A server that ignores If-Match must still not hand over another version's bytes.
            if o.e_tag().is_some_and(|t| t != self.etag) {
                anyhow::bail!(
                    "the object changed since it was opened (ETag {}, now {})",
                    self.etag,
                    o.e_tag().unwrap_or_default()
                );
            }
            let want = format!("bytes {}-{}/{}", r.start, r.end - 1, self.size);
            if o.content_range() != Some(want.as_str()) {
                anyhow::bail!(
                    "answered Content-Range {:?}, expected {want:?}",
                    o.content_range()
                );
            }
            let body = o
                .body
                .collect()
                .await
                .map_err(|e| anyhow::Error::new(Transient(format!("reading the body: {e}"))))?
                .into_bytes();
            anyhow::ensure!(
                body.len() as u64 == r.end - r.start,
                "answered {} bytes for {} asked",
                body.len(),
                r.end - r.start
            );
            Ok(body.to_vec())
        })
        .with_context(|| what)
    }
}

/// An SDK error as an `anyhow` error, marked `Transient` when worth retrying.
fn sdk_error<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let msg = s3::error_message(e);
    if s3::is_transient(e) {
        anyhow::Error::new(Transient(msg))
    } else {
        anyhow::anyhow!(msg)
    }
}

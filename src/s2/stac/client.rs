//! Searching a STAC API v1 (`/search`, CQL2-JSON) for the `sentinel-2-l1c` items of one MGRS tile.
//!
//! Pages are followed through the `next` link exactly as the server describes it: `GET href`, or
//! `POST href` with the link's `body` (merged into the previous body when `merge` is true), which
//! is how pgstac and CDSE page POST searches. Every request is retried on 429, 5xx, timeouts and
//! connection errors with backoff, honouring `Retry-After`; anything else fails with a message that
//! names the request.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::remote::http;
use crate::remote::retry::{Failure, RetryPolicy};

/// The STAC API of the Copernicus Data Space Ecosystem.
pub const CDSE_STAC_URL: &str = "https://stac.dataspace.copernicus.eu/v1";
/// The largest page CDSE serves.
pub const MAX_LIMIT: usize = 1000;

pub struct StacClient {
    http: reqwest::Client,
    /// The collection `search_tile` searches (`sentinel-2-l1c` unless told otherwise).
    collection: String,
    search_url: String,
    policy: RetryPolicy,
    limit: usize,
    /// HTTP requests sent (retries included).
    pub requests: std::sync::atomic::AtomicU64,
}

/// What a search returned.
#[derive(Debug, Default)]
pub struct SearchResult {
    pub items: Vec<Value>,
    /// Pages fetched (requests that succeeded).
    pub pages: usize,
}

#[derive(Debug, Clone)]
enum Request {
    Get(String),
    Post(String, Value),
}

impl Request {
    fn describe(&self) -> String {
        match self {
            Request::Get(u) => format!("GET {u}"),
            Request::Post(u, _) => format!("POST {u}"),
        }
    }
}

impl StacClient {
    /// `base`: the API root (e.g. `https://stac.dataspace.copernicus.eu/v1`); `limit`: page size.
    pub fn new(base: &str, policy: RetryPolicy, limit: usize) -> Result<Self> {
        let http = crate::remote::http_client().context("building the HTTP client")?;
        Ok(StacClient {
            http,
            collection: crate::s2::product::ProductLevel::L1C
                .stac_collection()
                .into(),
            search_url: format!("{}/search", base.trim_end_matches('/')),
            policy,
            limit: limit.clamp(1, MAX_LIMIT),
            requests: Default::default(),
        })
    }

    /// Searches `collection` from now on.
    pub fn with_collection(mut self, collection: &str) -> Self {
        self.collection = collection.into();
        self
    }

    /// All items of `tile` sensed in `[start, end]` (inclusive, UTC), following every page.
    pub async fn search_tile(
        &self,
        tile: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<SearchResult> {
        let body = json!({
            "collections": [self.collection],
            "datetime": format!("{}/{}", rfc3339(start), rfc3339(end)),
            "filter-lang": "cql2-json",
            "filter": {"op": "=", "args": [{"property": "grid:code"}, format!("MGRS-{tile}")]},
            "limit": self.limit,
        });
        self.search(body).await
    }

    /// Every item of a search whose first request is `POST /search` with `body` (its `limit`
    /// set to this client's page size), following every page.
    pub async fn search(&self, mut body: Value) -> Result<SearchResult> {
        body["limit"] = json!(self.limit);
        let mut result = SearchResult::default();
        let mut next = Some(Request::Post(self.search_url.clone(), body));
        let mut seen = std::collections::HashSet::new();
        while let Some(req) = next.take() {
            let fingerprint = format!("{req:?}");
            if !seen.insert(fingerprint) {
                anyhow::bail!(
                    "STAC search {}: the server's next link repeats a page",
                    req.describe()
                );
            }
            let page = self.fetch_page(&req, result.pages + 1).await?;
            result.pages += 1;
            let features = page
                .get("features")
                .and_then(Value::as_array)
                .with_context(|| {
                    format!(
                        "STAC search {} (page {}): response has no features array",
                        req.describe(),
                        result.pages
                    )
                })?;
            let empty = features.is_empty();
            result.items.extend(features.iter().cloned());
            if !empty {
                next = next_request(&page, &req)?;
            }
        }
        Ok(result)
    }

    /// The same search, one UTC day at a time (the fallback CDSE users rely on when a long range
    /// times out); results are concatenated in day order.
    pub async fn search_tile_per_day(
        &self,
        tile: &str,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<SearchResult> {
        let mut all = SearchResult::default();
        let mut day = first;
        while day <= last {
            let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let end = start + chrono::Duration::days(1) - chrono::Duration::milliseconds(1);
            let r = self.search_tile(tile, start, end).await?;
            all.items.extend(r.items);
            all.pages += r.pages;
            day = day.succ_opt().context("date overflow")?;
        }
        Ok(all)
    }

    async fn fetch_page(&self, req: &Request, page: usize) -> Result<Value> {
        let what = format!("STAC search {} (page {page})", req.describe());
        let r = self
            .policy
            .run(&what, || async {
                let send = match req {
                    Request::Get(u) => self.http.get(u),
                    Request::Post(u, b) => self.http.post(u).json(b),
                };
                self.requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let resp = send.send().await.map_err(|e| http::transport(&e, ""))?;
                let (status, headers) = (resp.status(), resp.headers().clone());
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| http::transport(&e, "reading the response: "))?;
                if let Some(f) =
                    http::status_failure(status, &headers, &format!(": {}", snippet(&body)))
                {
                    return Err(f);
                }
                serde_json::from_slice::<Value>(&body).map_err(|e| {
                    Failure::Permanent(anyhow::anyhow!("invalid JSON ({e}): {}", snippet(&body)))
                })
            })
            .await;
        r.map_err(|(e, attempts)| e.context(format!("{what}: failed after {attempts} attempt(s)")))
    }
}

/// The request for the page after `page`, from its `next` link.
fn next_request(page: &Value, current: &Request) -> Result<Option<Request>> {
    let Some(link) = page
        .get("links")
        .and_then(Value::as_array)
        .and_then(|ls| ls.iter().find(|l| l.get("rel") == Some(&json!("next"))))
    else {
        return Ok(None);
    };
    let href = link
        .get("href")
        .and_then(Value::as_str)
        .with_context(|| format!("STAC search {}: next link without href", current.describe()))?
        .to_string();
    let method = link.get("method").and_then(Value::as_str).unwrap_or("GET");
    if method.eq_ignore_ascii_case("GET") {
        return Ok(Some(Request::Get(href)));
    }
    if !method.eq_ignore_ascii_case("POST") {
        anyhow::bail!(
            "STAC search {}: next link with unsupported method {method}",
            current.describe()
        );
    }
    let link_body = link.get("body").cloned().unwrap_or(json!({}));
    let merge = link.get("merge").and_then(Value::as_bool).unwrap_or(false);
    let body = match (merge, current) {
        (true, Request::Post(_, prev)) => {
            let mut b = prev.clone();
            if let (Some(b), Some(l)) = (b.as_object_mut(), link_body.as_object()) {
                for (k, v) in l {
                    b.insert(k.clone(), v.clone());
                }
            }
            b
        }
        _ => link_body,
    };
    Ok(Some(Request::Post(href, body)))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The start of a response body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if body.len() > 200 {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_post_merge_and_get() {
        let cur = Request::Post("http://h/search".into(), json!({"limit": 2, "filter": 1}));
        let page = json!({"links": [{"rel": "next", "href": "http://h/search", "method": "POST",
            "body": {"token": "next:abc"}, "merge": true}]});
        match next_request(&page, &cur).unwrap().unwrap() {
            Request::Post(u, b) => {
                assert_eq!(u, "http://h/search");
                assert_eq!(b, json!({"limit": 2, "filter": 1, "token": "next:abc"}));
            }
            r => panic!("{r:?}"),
        }
        let page = json!({"links": [{"rel": "next", "href": "http://h/search", "method": "POST",
            "body": {"token": "t"}}]});
        match next_request(&page, &cur).unwrap().unwrap() {
            Request::Post(_, b) => assert_eq!(b, json!({"token": "t"})),
            r => panic!("{r:?}"),
        }
        let page = json!({"links": [{"rel": "self", "href": "x"}, {"rel": "next", "href": "http://h/search?token=2"}]});
        match next_request(&page, &cur).unwrap().unwrap() {
            Request::Get(u) => assert_eq!(u, "http://h/search?token=2"),
            r => panic!("{r:?}"),
        }
        assert!(next_request(&json!({"links": []}), &cur).unwrap().is_none());
    }
}

//! HTTP answers as retry decisions, the same for every HTTP client of datacube (the STAC API,
//! ranged GETs of remote files): a transport failure and 429/5xx may pass when repeated (the
//! server's `Retry-After` honoured), any other failure (403, 404, 416) will not.

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::retry::{parse_retry_after, Failure};

/// A request that failed on the way (connect, reset, timeout): transient. `doing` prefixes the
/// message (e.g. "reading the response: ").
pub fn transport(e: &reqwest::Error, doing: &str) -> Failure<anyhow::Error> {
    Failure::Transient {
        error: anyhow::anyhow!("{doing}{}", super::error_chain(e)),
        retry_after: None,
    }
}

/// The failure a response's status means, if any; `detail` follows `HTTP <status>` in the
/// message (e.g. ": " and a snippet of the body).
pub fn status_failure(
    status: StatusCode,
    headers: &HeaderMap,
    detail: &str,
) -> Option<Failure<anyhow::Error>> {
    let error = || anyhow::anyhow!("HTTP {status}{detail}");
    if status.as_u16() == 429 || status.is_server_error() {
        return Some(Failure::Transient {
            error: error(),
            retry_after: parse_retry_after(headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok())),
        });
    }
    (!status.is_success()).then(|| Failure::Permanent(error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_and_server_errors_are_transient_the_rest_permanent() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        match status_failure(StatusCode::TOO_MANY_REQUESTS, &h, "") {
            Some(Failure::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            status_failure(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), ""),
            Some(Failure::Transient { .. })
        ));
        for s in [403, 404, 416] {
            let f = status_failure(StatusCode::from_u16(s).unwrap(), &HeaderMap::new(), ": x");
            match f {
                Some(Failure::Permanent(e)) => {
                    assert!(e.to_string().starts_with(&format!("HTTP {s}")))
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        assert!(status_failure(StatusCode::PARTIAL_CONTENT, &HeaderMap::new(), "").is_none());
    }
}

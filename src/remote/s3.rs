//! Building an S3 client the way users already configure one: an AWS profile (`~/.aws/config` with
//! `endpoint_url`, `~/.aws/credentials`) or the standard `AWS_*` environment variables, with an
//! optional endpoint override. CDSE and most non-AWS stores (CSC Allas, MinIO, Ceph) need
//! path-style addressing and a region name that is not an AWS one (`default`).

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

/// Where and as whom to connect. Never holds secrets itself: those stay in the SDK's providers.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// AWS profile name; `None` uses the SDK's default chain (environment, `default` profile).
    pub profile: Option<String>,
    /// Overrides the profile's `endpoint_url`.
    pub endpoint: Option<String>,
    /// Region name; `default` unless the profile or environment says otherwise.
    pub region: Option<String>,
}

impl S3Options {
    /// For messages: endpoint and profile, never credentials.
    pub fn describe(&self) -> String {
        format!(
            "endpoint {}, profile {}",
            self.endpoint
                .as_deref()
                .unwrap_or("from profile/environment"),
            self.profile.as_deref().unwrap_or("(default chain)")
        )
    }
}

/// `own_retries`: the caller retries whole operations itself (with its own budget and backoff), so
/// the SDK's retries are turned off rather than multiplied with them.
pub async fn client(o: &S3Options, own_retries: bool) -> aws_sdk_s3::Client {
    use aws_config::environment::{
        EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
    };
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_config::meta::region::RegionProviderChain;
    use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};

    // Only the environment and the profile files: the SDK's default chains would also ask the
    // EC2/ECS metadata endpoints (a network probe, and three WARN lines per run off AWS). A region
    // found nowhere is CDSE's and Allas's `default`.
    // Every client of the SDK gets this one HTTPS client (rustls over ring): with no default
    // client compiled in, a provider built without it would have none.
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let providers = aws_config::provider_config::ProviderConfig::without_region()
        .with_http_client(https.clone());
    let mut profile_region = ProfileFileRegionProvider::builder().configure(&providers);
    let mut profile_creds = ProfileFileCredentialsProvider::builder().configure(&providers);
    if let Some(p) = &o.profile {
        profile_region = profile_region.profile_name(p);
        profile_creds = profile_creds.profile_name(p);
    }
    let region = match &o.region {
        Some(r) => RegionProviderChain::first_try(Region::new(r.clone())),
        None => RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
            .or_else(profile_region.build())
            .or_else(Region::new("default")),
    };
    let credentials = CredentialsProviderChain::first_try(
        "environment",
        EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else("profile", profile_creds.build());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .region(region)
        .credentials_provider(credentials);
    if let Some(p) = &o.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &o.endpoint {
        loader = loader.endpoint_url(e);
    }
    let shared = loader.load().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&shared);
    if own_retries {
        conf = conf.retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
    }
    let conf = conf
        .force_path_style(true)
        // Non-AWS servers do not all speak the SDK's default CRC trailers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SDK error as a one-line message: the service's code and message, or the transport cause.
/// (SDK errors carry no credentials; request signatures are not part of their display.)
pub fn error_message<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            // The status first: an answer without an S3 error body (a 416 from a proxy, a 503
            // from a load balancer) has nothing else to say.
            let status = s.raw().status().as_u16();
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("HTTP {status} {c}: {m}"),
                (Some(c), None) => format!("HTTP {status} {c}"),
                _ => format!("HTTP {status}: {err}"),
            }
        }
        other => super::error_chain(other),
    }
}

/// Whether an SDK error is worth retrying (throttling, 5xx, timeouts, broken connections).
pub fn is_transient<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            status == 429 || status >= 500
        }
        _ => false,
    }
}

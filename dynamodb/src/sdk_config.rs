//! How every AWS SDK client of the project talks HTTPS.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The HTTP(S) client of every SDK client: rustls on ring. The SDK's default client is built
/// with its default features, which this workspace turns off (one TLS stack to build, not two).
pub fn https_client() -> SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK configuration loader (region, credentials, endpoint from the environment) with
/// [`https_client`].
pub fn sdk_config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// The SDK configuration from the environment.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

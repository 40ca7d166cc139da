//! A missing region or missing credentials fail when the ElastiCache API
//! source is built, with typed, readable errors.
//!
//! This binary holds one test, which empties the AWS environment of this
//! process before the SDK reads it: the region and credentials chains then
//! find nothing on this machine. Instance metadata is disabled and, should
//! that be ignored, pointed at a closed port on 127.0.0.1, so no request ever
//! leaves the machine.
#![cfg(feature = "elasticache")]

use memha_discovery::{ElastiCacheApiSource, ErrorKind};

#[tokio::test]
async fn missing_region_and_missing_credentials() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = std::env::temp_dir().join("memha-discovery-no-aws-files");
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://127.0.0.1:{closed_port}"),
    );
    std::env::set_var("AWS_CONFIG_FILE", nowhere.join("config"));
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"));
    let endpoint = format!("http://127.0.0.1:{closed_port}");

    let err = ElastiCacheApiSource::builder("memha-mc")
        .endpoint_url(&endpoint)
        .static_credentials("AKIDMEMHATEST", "memha-test-secret")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRegion, "{err}");
    assert!(err.is_configuration());
    assert!(err.to_string().contains("AWS_REGION"), "{err}");

    let err = ElastiCacheApiSource::builder("memha-mc")
        .endpoint_url(&endpoint)
        .region("eu-west-3")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingCredentials, "{err}");
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
}

//! The ElastiCache API: `DescribeCacheClusters` with node info.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_elasticache::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_elasticache::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_elasticache::operation::describe_cache_clusters::DescribeCacheClustersError;

use crate::addr::NodeAddr;
use crate::error::{Error, ErrorKind};
use crate::source::NodeSource;

/// The nodes of an ElastiCache memcached cluster, from the ElastiCache API
/// (`DescribeCacheClusters` with `ShowCacheNodeInfo=true`). Needs the cargo
/// feature `elasticache`, AWS credentials allowed to call
/// `elasticache:DescribeCacheClusters`, and a region.
///
/// Region and credentials come from the usual AWS environment (environment
/// variables, profile files, web identity, container and instance metadata)
/// unless given to the [builder](ElastiCacheApiBuilder). Both are resolved
/// when the source is built, so a missing one fails at start-up with
/// [`ErrorKind::MissingRegion`] or [`ErrorKind::MissingCredentials`], not on
/// the first poll.
///
/// Each poll lists the cluster's nodes that have an endpoint (a node still
/// being created has none yet and is skipped). Each node's
/// [`host`](NodeAddr::host) is its DNS name; its IP is not known. An unknown
/// cluster is [`ErrorKind::ClusterNotFound`]; a cluster whose engine is not
/// memcached (Redis, Valkey) is [`ErrorKind::NotMemcached`]; any other API
/// failure is [`ErrorKind::Api`] with the service's error code and message.
///
/// ```no_run
/// use memha_discovery::{ElastiCacheApiSource, Watcher};
///
/// # async fn run() -> Result<(), memha_discovery::Error> {
/// let source = ElastiCacheApiSource::builder("my-memcached")
///     .region("eu-west-1")
///     .build()
///     .await?;
/// let mut watcher = Watcher::new(source);
/// let nodes = watcher.ready().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ElastiCacheApiSource {
    client: aws_sdk_elasticache::Client,
    cluster_id: String,
    label: String,
}

/// Configures an [`ElastiCacheApiSource`].
#[derive(Clone)]
pub struct ElastiCacheApiBuilder {
    cluster_id: String,
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<StaticCredentials>,
    timeout: Option<Duration>,
}

#[derive(Clone)]
struct StaticCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for ElastiCacheApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElastiCacheApiBuilder")
            .field("cluster_id", &self.cluster_id)
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoint_url", &self.endpoint_url)
            .field("static_credentials", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ElastiCacheApiSource {
    /// A builder for the cluster with id `cluster_id`.
    pub fn builder(cluster_id: impl Into<String>) -> ElastiCacheApiBuilder {
        ElastiCacheApiBuilder {
            cluster_id: cluster_id.into(),
            region: None,
            profile: None,
            endpoint_url: None,
            credentials: None,
            timeout: None,
        }
    }

    /// The source for cluster `cluster_id`, with region and credentials from
    /// the AWS environment.
    pub async fn new(cluster_id: impl Into<String>) -> Result<Self, Error> {
        Self::builder(cluster_id).build().await
    }

    /// The source for cluster `cluster_id` behind an API endpoint of your own
    /// (a test server, a proxy), with an explicit region and static
    /// credentials: nothing else is looked up.
    pub async fn with_endpoint(
        cluster_id: impl Into<String>,
        endpoint_url: impl Into<String>,
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Result<Self, Error> {
        Self::builder(cluster_id)
            .endpoint_url(endpoint_url)
            .region(region)
            .static_credentials(access_key_id, secret_access_key)
            .build()
            .await
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    fn api_error(&self, err: SdkError<DescribeCacheClustersError>) -> Error {
        let id = &self.cluster_id;
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("unknown error code");
                let message = e.message().unwrap_or("no message");
                let status = service.raw().status().as_u16();
                if matches!(e, DescribeCacheClustersError::CacheClusterNotFoundFault(_))
                    || e.code() == Some("CacheClusterNotFound")
                {
                    Error::new(
                        ErrorKind::ClusterNotFound,
                        format!("no cache cluster {id:?} in this account and region ({code}: {message})"),
                    )
                } else {
                    Error::new(
                        ErrorKind::Api,
                        format!("DescribeCacheClusters for {id:?} failed with HTTP {status}: {code}: {message}"),
                    )
                }
            }
            SdkError::TimeoutError(_) => Error::new(
                ErrorKind::Timeout,
                format!(
                    "DescribeCacheClusters for {id:?} timed out: {}",
                    chain(&err)
                ),
            ),
            _ => Error::new(
                ErrorKind::Api,
                format!("DescribeCacheClusters for {id:?} failed: {}", chain(&err)),
            ),
        }
    }
}

impl ElastiCacheApiBuilder {
    /// The AWS region (else `AWS_REGION`, `AWS_DEFAULT_REGION`, the
    /// profile's region, or instance metadata).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The named profile of the AWS config and credentials files.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Sends the API requests to this URL instead of the region's endpoint
    /// (for tests, proxies, VPC endpoints).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Uses these credentials instead of the default credentials chain.
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        });
        self
    }

    /// Adds a session token to the [static credentials](Self::static_credentials)
    /// (no effect without them).
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        if let Some(credentials) = &mut self.credentials {
            credentials.session_token = Some(token.into());
        }
        self
    }

    /// The bound on one API call, retries included (the SDK's default otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Loads the AWS configuration and resolves the region and credentials.
    ///
    /// Fails with [`ErrorKind::MissingRegion`] or
    /// [`ErrorKind::MissingCredentials`]; the cluster itself is first asked
    /// for on the first poll.
    pub async fn build(self) -> Result<ElastiCacheApiSource, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = self.region {
            loader = loader.region(Region::new(region));
        }
        if let Some(profile) = self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(c) = self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                c.session_token,
                None,
                "memha-static",
            ));
        }
        if let Some(timeout) = self.timeout {
            loader =
                loader.timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build());
        }
        let config = loader.load().await;
        let id = &self.cluster_id;
        if config.region().is_none() {
            return Err(Error::new(
                ErrorKind::MissingRegion,
                format!(
                    "cannot ask the ElastiCache API for cluster {id:?} without a region: set AWS_REGION \
                     (or a profile's region), or give one to the builder"
                ),
            ));
        }
        let Some(provider) = config.credentials_provider() else {
            return Err(Error::new(
                ErrorKind::MissingCredentials,
                format!(
                    "no AWS credentials provider to ask the ElastiCache API for cluster {id:?}"
                ),
            ));
        };
        if let Err(err) = provider.provide_credentials().await {
            return Err(Error::new(
                ErrorKind::MissingCredentials,
                format!(
                    "no AWS credentials to ask the ElastiCache API for cluster {id:?} \
                     (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or an instance role): {}",
                    chain(&err)
                ),
            ));
        }
        let label = format!("elasticache-api:{id}");
        Ok(ElastiCacheApiSource {
            client: aws_sdk_elasticache::Client::new(&config),
            cluster_id: self.cluster_id,
            label,
        })
    }
}

#[async_trait]
impl NodeSource for ElastiCacheApiSource {
    async fn nodes(&self) -> Result<Vec<NodeAddr>, Error> {
        let id = &self.cluster_id;
        let output = self
            .client
            .describe_cache_clusters()
            .cache_cluster_id(id)
            .show_cache_node_info(true)
            .send()
            .await
            .map_err(|err| self.api_error(err))?;
        let cluster = output
            .cache_clusters()
            .iter()
            .find(|cluster| {
                cluster
                    .cache_cluster_id()
                    .is_some_and(|found| found.eq_ignore_ascii_case(id))
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ClusterNotFound,
                    format!("DescribeCacheClusters did not list cluster {id:?}"),
                )
            })?;
        match cluster.engine() {
            Some(engine) if engine.eq_ignore_ascii_case("memcached") => {}
            Some(engine) => {
                return Err(Error::new(
                    ErrorKind::NotMemcached,
                    format!("cluster {id:?} runs {engine:?}, not memcached"),
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::NotMemcached,
                    format!("cluster {id:?} reports no engine"),
                ))
            }
        }
        let mut nodes = Vec::new();
        for node in cluster.cache_nodes() {
            let node_id = node.cache_node_id().unwrap_or("?");
            let Some((address, port)) = node
                .endpoint()
                .and_then(|endpoint| Some((endpoint.address()?, endpoint.port()?)))
            else {
                tracing::debug!(
                    cluster = %id,
                    node = node_id,
                    status = node.cache_node_status().unwrap_or("?"),
                    "skipping a node without an endpoint yet"
                );
                continue;
            };
            let port = u16::try_from(port)
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Api,
                        format!("node {node_id} of cluster {id:?} has the invalid port {port}"),
                    )
                })?;
            nodes.push(NodeAddr::new(address, port));
        }
        Ok(nodes)
    }

    fn name(&self) -> &str {
        &self.label
    }
}

/// An error and its causes on one line, `outer: inner: root` (the SDK's own
/// `Display` stops at "dispatch failure" or "service error").
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let part = err.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = err.source();
    }
    text
}

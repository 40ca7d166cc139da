//! The ElastiCache API source through the real AWS SDK, against a tiny
//! HTTP/1.1 responder on 127.0.0.1 that answers canned XML. Static
//! credentials, an explicit region and the endpoint URL keep every request
//! on this machine.
#![cfg(feature = "elasticache")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use memha_discovery::{ElastiCacheApiSource, ErrorKind, NodeAddr, NodeSource, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake API received it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    headers: BTreeMap<String, String>,
    form: BTreeMap<String, String>,
}

/// Answers every request with `status` and `body`, and records the requests.
struct FakeApi {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeApi {
    async fn start(status: u16, body: String) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (recorded, body) = (recorded.clone(), body.clone());
                tokio::spawn(async move {
                    if let Some(request) = answer(socket, status, &body).await {
                        recorded.lock().unwrap().push(request);
                    }
                });
            }
        });
        FakeApi { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    async fn source(&self, cluster_id: &str) -> ElastiCacheApiSource {
        ElastiCacheApiSource::with_endpoint(
            cluster_id,
            &self.url,
            "eu-west-3",
            "AKIDMEMHATEST",
            "memha-test-secret",
        )
        .await
        .unwrap()
    }
}

/// Reads one HTTP/1.1 request (headers, then a `Content-Length` body),
/// writes the canned answer and closes the connection.
async fn answer(mut socket: TcpStream, status: u16, body: &str) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let method = lines.next()?.split(' ').next()?.to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .expect("the SDK sends a Content-Length")
        .parse()
        .unwrap();
    let mut content = buf[head_end + 4..].to_vec();
    while content.len() < length {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        content.extend_from_slice(&chunk[..n]);
    }
    let form = String::from_utf8(content)
        .unwrap()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let reason = if status == 200 { "OK" } else { "Error" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
         x-amzn-RequestId: 5f1d0c57-memha-test\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await.ok()?;
    let _ = socket.shutdown().await;
    Some(Request {
        method,
        headers,
        form,
    })
}

fn describe_response(cluster_id: &str, engine: &str, nodes: &str) -> String {
    format!(
        r#"<DescribeCacheClustersResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <DescribeCacheClustersResult>
    <CacheClusters>
      <CacheCluster>
        <CacheClusterId>{cluster_id}</CacheClusterId>
        <ConfigurationEndpoint>
          <Address>{cluster_id}.x1y2z3.cfg.euw3.cache.amazonaws.com</Address>
          <Port>11211</Port>
        </ConfigurationEndpoint>
        <ClientDownloadLandingPage>https://console.aws.amazon.com/elasticache/home#client-download:</ClientDownloadLandingPage>
        <CacheNodeType>cache.t3.micro</CacheNodeType>
        <Engine>{engine}</Engine>
        <EngineVersion>1.6.22</EngineVersion>
        <CacheClusterStatus>modifying</CacheClusterStatus>
        <NumCacheNodes>3</NumCacheNodes>
        <PreferredAvailabilityZone>Multiple</PreferredAvailabilityZone>
        <CacheClusterCreateTime>2024-05-02T10:00:00.000Z</CacheClusterCreateTime>
        <CacheNodes>{nodes}</CacheNodes>
      </CacheCluster>
    </CacheClusters>
  </DescribeCacheClustersResult>
  <ResponseMetadata>
    <RequestId>5f1d0c57-memha-test</RequestId>
  </ResponseMetadata>
</DescribeCacheClustersResponse>"#
    )
}

fn available_node(cluster_id: &str, n: u32) -> String {
    format!(
        r#"
          <CacheNode>
            <CacheNodeId>000{n}</CacheNodeId>
            <CacheNodeStatus>available</CacheNodeStatus>
            <CacheNodeCreateTime>2024-05-02T10:00:00.000Z</CacheNodeCreateTime>
            <Endpoint>
              <Address>{cluster_id}.x1y2z3.000{n}.euw3.cache.amazonaws.com</Address>
              <Port>11211</Port>
            </Endpoint>
            <ParameterGroupStatus>in-sync</ParameterGroupStatus>
            <CustomerAvailabilityZone>eu-west-3a</CustomerAvailabilityZone>
          </CacheNode>"#
    )
}

const CREATING_NODE: &str = r#"
          <CacheNode>
            <CacheNodeId>0003</CacheNodeId>
            <CacheNodeStatus>creating</CacheNodeStatus>
            <CacheNodeCreateTime>2024-05-03T10:00:00.000Z</CacheNodeCreateTime>
            <ParameterGroupStatus>in-sync</ParameterGroupStatus>
            <CustomerAvailabilityZone>eu-west-3b</CustomerAvailabilityZone>
          </CacheNode>"#;

fn error_response(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/">
  <Error>
    <Type>Sender</Type>
    <Code>{code}</Code>
    <Message>{message}</Message>
  </Error>
  <RequestId>5f1d0c57-memha-test</RequestId>
</ErrorResponse>"#
    )
}

#[tokio::test]
async fn lists_the_nodes_with_an_endpoint() {
    let nodes = format!(
        "{}{}{CREATING_NODE}",
        available_node("memha-mc", 1),
        available_node("memha-mc", 2)
    );
    let api = FakeApi::start(200, describe_response("memha-mc", "memcached", &nodes)).await;
    let source = api.source("memha-mc").await;

    let found = source.nodes().await.unwrap();

    assert_eq!(
        found,
        vec![
            NodeAddr::new("memha-mc.x1y2z3.0001.euw3.cache.amazonaws.com", 11211),
            NodeAddr::new("memha-mc.x1y2z3.0002.euw3.cache.amazonaws.com", 11211),
        ],
        "the node still creating (no endpoint) is skipped"
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.form.get("Action").map(String::as_str),
        Some("DescribeCacheClusters")
    );
    assert_eq!(
        request.form.get("CacheClusterId").map(String::as_str),
        Some("memha-mc")
    );
    assert_eq!(
        request.form.get("ShowCacheNodeInfo").map(String::as_str),
        Some("true")
    );
    assert!(
        request
            .headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")),
        "{request:?}"
    );
    let auth = request
        .headers
        .get("authorization")
        .expect("a signed request");
    assert!(
        auth.contains("Credential=AKIDMEMHATEST/") && auth.contains("/eu-west-3/elasticache/"),
        "signed with the static credentials for the given region: {auth}"
    );
}

#[tokio::test]
async fn feeds_a_watcher() {
    let api = FakeApi::start(
        200,
        describe_response("memha-mc", "memcached", &available_node("memha-mc", 1)),
    )
    .await;
    let mut watcher = Watcher::new(api.source("memha-mc").await);
    assert_eq!(
        watcher.ready().await.unwrap(),
        [NodeAddr::new(
            "memha-mc.x1y2z3.0001.euw3.cache.amazonaws.com",
            11211
        )]
    );
}

#[tokio::test]
async fn an_unknown_cluster_is_cluster_not_found() {
    let api = FakeApi::start(
        404,
        error_response("CacheClusterNotFound", "CacheCluster not found: nope"),
    )
    .await;
    let err = api.source("nope").await.nodes().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::ClusterNotFound, "{err}");
    assert!(err.is_configuration());
    let text = err.to_string();
    assert!(
        text.contains("\"nope\"") && text.contains("CacheCluster not found: nope"),
        "the message names the cluster and carries the service's message: {text}"
    );
    assert!(!text.contains("service error"), "{text}");
}

#[tokio::test]
async fn a_redis_cluster_is_not_memcached() {
    let api = FakeApi::start(
        200,
        describe_response("memha-redis", "redis", &available_node("memha-redis", 1)),
    )
    .await;
    let err = api.source("memha-redis").await.nodes().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotMemcached, "{err}");
    assert!(err.to_string().contains("\"redis\""), "{err}");
}

#[tokio::test]
async fn another_service_error_carries_its_code_and_message() {
    let api = FakeApi::start(
        400,
        error_response(
            "InvalidParameterValue",
            "The parameter CacheClusterId is not a valid identifier.",
        ),
    )
    .await;
    let err = api.source("Bad_Id").await.nodes().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Api, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("InvalidParameterValue")
            && text.contains("is not a valid identifier")
            && text.contains("HTTP 400"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_readable_api_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let source =
        ElastiCacheApiSource::with_endpoint("memha-mc", url, "eu-west-3", "AKIDMEMHATEST", "s")
            .await
            .unwrap();
    let err = source.nodes().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Api, "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("dispatch failure") && text.contains("Connection refused"),
        "the SDK's error chain is spelled out: {text}"
    );
}

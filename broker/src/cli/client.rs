//! A small Kafka client for the `sluice` command: one connection per broker,
//! one request at a time, each API at the highest version both sides speak
//! (learned from ApiVersions), every step bounded by the command's timeout.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::CliError;

/// Largest response frame read.
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const CLIENT_ID: &str = "sluice-cli";

/// One broker connection and the API versions it speaks.
#[derive(Debug)]
struct Conn {
    addr: String,
    stream: TcpStream,
    versions: HashMap<i16, (i16, i16)>,
}

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: i32,
}

#[derive(Debug)]
pub struct Client {
    timeout: Duration,
    bootstrap: Conn,
    conns: HashMap<i32, Conn>,
    pub brokers: BTreeMap<i32, BrokerAddr>,
    correlation: i32,
}

impl Client {
    /// Connects to the first reachable address of `bootstrap` (comma-separated)
    /// and learns the brokers.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, CliError> {
        let mut last = None;
        for addr in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Conn::open(addr, timeout, &mut 0).await {
                Ok(conn) => {
                    let mut client = Client {
                        timeout,
                        bootstrap: conn,
                        conns: HashMap::new(),
                        brokers: BTreeMap::new(),
                        correlation: 1,
                    };
                    client.refresh_brokers().await?;
                    return Ok(client);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| CliError::Usage("--bootstrap-server names no address".into())))
    }

    async fn refresh_brokers(&mut self) -> Result<(), CliError> {
        let md = self.metadata(Some(&[])).await?;
        self.brokers = md
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerAddr {
                        host: b.host.to_string(),
                        port: b.port,
                    },
                )
            })
            .collect();
        Ok(())
    }

    /// Metadata of `topics` (`None`: every topic).
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
    ) -> Result<MetadataResponse, CliError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.send(None, request).await
    }

    /// One topic's metadata; an error when it does not exist.
    pub async fn topic(&mut self, name: &str) -> Result<MetadataResponseTopic, CliError> {
        let md = self.metadata(Some(&[name])).await?;
        let t = md
            .topics
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Protocol("Metadata answered no topic".into()))?;
        CliError::check(t.error_code, None, || format!("topic {name}"))?;
        Ok(t)
    }

    /// Sends `request` to broker `node` (`None`: the bootstrap broker) and
    /// returns its response.
    pub async fn send<R: Request>(
        &mut self,
        node: Option<i32>,
        request: R,
    ) -> Result<R::Response, CliError> {
        self.send_at_most(node, request, i16::MAX).await
    }

    /// [`Client::send`] at version `max` at most (Produce and Fetch stay below
    /// the versions that address topics by id).
    pub async fn send_at_most<R: Request>(
        &mut self,
        node: Option<i32>,
        request: R,
        max: i16,
    ) -> Result<R::Response, CliError> {
        let timeout = self.timeout;
        self.correlation += 1;
        let correlation = self.correlation;
        let conn = match node {
            None => &mut self.bootstrap,
            Some(id) => {
                if !self.conns.contains_key(&id) {
                    let b = self.brokers.get(&id).ok_or_else(|| {
                        CliError::Protocol(format!("broker {id} is not in the cluster's metadata"))
                    })?;
                    let addr = format!("{}:{}", b.host, b.port);
                    let conn = Conn::open(&addr, timeout, &mut self.correlation).await?;
                    self.conns.insert(id, conn);
                }
                self.conns
                    .get_mut(&id)
                    .ok_or_else(|| CliError::Protocol("no connection".into()))?
            }
        };
        conn.call(request, correlation, timeout, max).await
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Conn {
    async fn open(addr: &str, timeout: Duration, correlation: &mut i32) -> Result<Self, CliError> {
        let unreachable = |reason: String| CliError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            addr: addr.to_string(),
            stream,
            versions: HashMap::new(),
        };
        *correlation += 1;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 is what every current broker answers; v0 framing on refusal.
        let answer: ApiVersionsResponse = conn.exchange(&request, 3, *correlation, timeout).await?;
        if answer.error_code != 0 {
            return Err(CliError::Protocol(format!(
                "{addr} refused ApiVersions (error {})",
                answer.error_code
            )));
        }
        conn.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    async fn call<R: Request>(
        &mut self,
        request: R,
        correlation: i32,
        timeout: Duration,
        cap: i16,
    ) -> Result<R::Response, CliError> {
        let ours = R::VERSIONS;
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            return Err(CliError::Protocol(format!(
                "{} does not support API {}",
                self.addr,
                R::KEY
            )));
        };
        let version = max.min(ours.max).min(cap);
        if version < min.max(ours.min) {
            return Err(CliError::Protocol(format!(
                "{} supports API {} at versions {min}-{max}, this client at {}-{}",
                self.addr,
                R::KEY,
                ours.min,
                ours.max
            )));
        }
        self.exchange(&request, version, correlation, timeout).await
    }

    async fn exchange<Q, P>(
        &mut self,
        request: &Q,
        version: i16,
        correlation: i32,
        timeout: Duration,
    ) -> Result<P, CliError>
    where
        Q: Request<Response = P>,
        P: Decodable + HeaderVersion,
    {
        let header = RequestHeader::default()
            .with_request_api_key(Q::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        let encode = |e: anyhow::Error| CliError::Protocol(format!("cannot encode a request: {e}"));
        header
            .encode(&mut body, Q::header_version(version))
            .map_err(encode)?;
        request.encode(&mut body, version).map_err(encode)?;
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let addr = self.addr.clone();
        let io = async {
            self.stream.write_all(&frame).await?;
            let len = self.stream.read_i32().await?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= RESPONSE_BYTES_MAX)
                .ok_or_else(|| std::io::Error::other(format!("response frame of {len} bytes")))?;
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(timeout, io)
            .await
            .map_err(|_| CliError::Timeout(format!("{addr} did not answer within {timeout:?}")))?
            .map_err(|e| CliError::Unreachable {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let decode = |e: anyhow::Error| CliError::Protocol(format!("bad answer from {addr}: {e}"));
        let header =
            ResponseHeader::decode(&mut buf, P::header_version(version)).map_err(decode)?;
        if header.correlation_id != correlation {
            return Err(CliError::Protocol(format!(
                "answer to request {} where {correlation} was expected",
                header.correlation_id
            )));
        }
        let response = P::decode(&mut buf, version).map_err(decode)?;
        if buf.has_remaining() {
            return Err(CliError::Protocol(format!(
                "{} bytes left over in an answer from {addr}",
                buf.remaining()
            )));
        }
        Ok(response)
    }
}

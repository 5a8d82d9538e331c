//! A hostile client on the inter-broker port: frames that are not a hello, a
//! hello from another cluster or an unknown node, a frame length its bytes do not
//! back, a length below the header. Each connection is closed; the peers'
//! connection keeps answering calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use sluice_replication::transport::{Handler, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLUSTER: &str = "test-cluster";

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32((17 + payload.len()) as u32);
    out.put_u8(kind);
    out.put_u64(0);
    out.put_u64(0);
    out.put_slice(payload);
    out.to_vec()
}

fn hello(cluster: &str, node: u64) -> Vec<u8> {
    let mut out = vec![0u8, cluster.len() as u8];
    out.extend_from_slice(cluster.as_bytes());
    out.extend_from_slice(&node.to_be_bytes());
    frame(0x7f, &out)
}

/// Sends `bytes` and expects the broker to close the connection without answering.
async fn refused(addr: &str, bytes: &[u8], what: &str) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection stayed open"));
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{what}: the broker answered {n} bytes"),
    }
}

fn echo() -> Handler {
    Arc::new(|_, _, _, payload: Bytes| Box::pin(async move { Ok(payload) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inter_broker_connections_are_closed_and_peers_keep_talking() {
    let mut peers = BTreeMap::new();
    let mut listeners = Vec::new();
    for id in [1u64, 2] {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        peers.insert(id, l.local_addr().expect("addr").to_string());
        listeners.push(l);
    }
    let mut transports = Vec::new();
    for (id, listener) in [1u64, 2].into_iter().zip(listeners) {
        let t = Transport::new(id, CLUSTER, peers.clone());
        t.set_handler(echo());
        t.start(listener);
        transports.push(t);
    }
    let (one, _two) = (&transports[0], &transports[1]);
    let call = || one.call(2, 1, 0, Bytes::from_static(b"ping"), Duration::from_secs(5));
    let mut up = false;
    for _ in 0..100 {
        if call().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the peers never connected");

    let target = &peers[&2];
    refused(
        target,
        &frame(1, b"append entries"),
        "a first frame that is not a hello",
    )
    .await;
    refused(
        target,
        &hello("other-cluster", 1),
        "a hello from another cluster",
    )
    .await;
    refused(target, &hello(CLUSTER, 9), "a hello from an unknown node").await;
    refused(
        target,
        &[0, 0, 0, 3, 1, 2, 3],
        "a length below the frame header",
    )
    .await;
    refused(
        target,
        &[0xff, 0xff, 0xff, 0xff],
        "a length above the frame bound",
    )
    .await;
    // 200 MiB claimed, 10 bytes sent, then the sender goes away.
    let mut claimed = BytesMut::new();
    claimed.put_u32(200 << 20);
    claimed.put_slice(&[0x7f; 10]);
    {
        let mut s = TcpStream::connect(target.as_str()).await.expect("connect");
        s.write_all(&claimed).await.expect("write");
    }
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    refused(target, &garbage, "random bytes").await;

    // The real peer's link still answers.
    let answer = call().await.expect("the peers' link still answers");
    assert_eq!(&answer[..], b"ping");
    assert!(one.is_connected(2));
}

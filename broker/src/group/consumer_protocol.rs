//! The parts of the consumer protocol's member metadata the coordinator reads: the
//! subscribed topics (OffsetDelete and offset expiry need them). The layout is the same
//! in every version: `version i16 | topics [string] | ...`.

/// The topics of a consumer subscription, or `None` when it does not decode.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize; // version
    let count = i32::from_be_bytes(metadata.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(metadata.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let len = usize::try_from(len).ok()?;
        let name = std::str::from_utf8(metadata.get(at..at + len)?).ok()?;
        at += len;
        topics.push(name.to_string());
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn reads_topics_of_every_subscription_version() {
        for version in 0i16..=3 {
            let sub = ConsumerProtocolSubscription::default().with_topics(vec![
                StrBytes::from_static_str("orders"),
                StrBytes::from_static_str("payments"),
            ]);
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&version.to_be_bytes());
            sub.encode(&mut buf, version).expect("encodes");
            assert_eq!(
                subscribed_topics(&buf),
                Some(vec!["orders".to_string(), "payments".to_string()]),
                "version {version}"
            );
        }
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0, 9]), None);
    }
}

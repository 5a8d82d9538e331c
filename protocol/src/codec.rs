//! Request decoding and response encoding on top of the `kafka-protocol` crate.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::frame::LENGTH_PREFIX_BYTES;
use crate::CodecError;

/// The versions the broker handles for one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    /// A request we handle, decoded.
    Request(Box<Request>),
    /// ApiVersions at a version above ours (KIP-511): answer with a v0 response that
    /// carries UNSUPPORTED_VERSION and our ranges.
    ApiVersionsTooNew { correlation_id: i32, version: i16 },
    /// Produce v0-v2: advertised so that old clients keep compression on, answered
    /// with UNSUPPORTED_VERSION per partition by [`crate::legacy`].
    LegacyProduce {
        version: i16,
        correlation_id: i32,
        body: Bytes,
    },
}

fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        _ => "request",
    }
}

/// Decodes one frame (without its length prefix) against the supported ranges.
pub fn decode_request(mut frame: Bytes, supported: &[ApiRange]) -> Result<Decoded, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::ShortHeader { size: frame.len() });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let range = ApiKey::try_from(raw_key)
        .ok()
        .and_then(|key| supported.iter().find(|r| r.api_key == key))
        .ok_or(CodecError::UnknownApiKey { api_key: raw_key })?;
    let api_key = range.api_key;
    let api = api_name(api_key);

    if api_key == ApiKey::ApiVersions && version > range.max {
        return Ok(Decoded::ApiVersionsTooNew {
            correlation_id,
            version,
        });
    }
    if version < range.min || version > range.max {
        return Err(CodecError::UnsupportedVersion {
            api,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let crate_range = api_key.valid_versions();
    if version < crate_range.min {
        if api_key == ApiKey::Produce {
            let header = decode_header(&mut frame, api_key, crate_range.min, 1)?;
            return Ok(Decoded::LegacyProduce {
                version,
                correlation_id: header.correlation_id,
                body: frame,
            });
        }
        return Err(CodecError::UnsupportedVersion {
            api,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let header = decode_header(
        &mut frame,
        api_key,
        version,
        api_key.request_header_version(version),
    )?;
    let body =
        RequestKind::decode(api_key, &mut frame, version).map_err(|e| CodecError::Malformed {
            api,
            version,
            reason: e.to_string(),
        })?;
    Ok(Decoded::Request(Box::new(Request {
        api_key,
        version,
        header,
        body,
    })))
}

fn decode_header(
    frame: &mut Bytes,
    api_key: ApiKey,
    version: i16,
    header_version: i16,
) -> Result<RequestHeader, CodecError> {
    RequestHeader::decode(frame, header_version).map_err(|e| CodecError::Malformed {
        api: api_name(api_key),
        version,
        reason: format!("request header: {e}"),
    })
}

/// The response header version for a request; ApiVersions always answers with v0 so
/// that a client that does not yet know our versions can read it.
pub fn response_header_version(api_key: ApiKey, version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    }
}

/// Encodes a response into one frame, length prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, CodecError> {
    let header_version = response_header_version(api_key, version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encode_err = |reason: String| CodecError::Encode {
        api: api_name(api_key),
        version,
        reason,
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_err(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| encode_err(e.to_string()))?;
    let size = (buf.len() - LENGTH_PREFIX_BYTES) as i32;
    buf[..LENGTH_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    const SUPPORTED: &[ApiRange] = &[
        ApiRange {
            api_key: ApiKey::ApiVersions,
            min: 0,
            max: 4,
        },
        ApiRange {
            api_key: ApiKey::Produce,
            min: 0,
            max: 12,
        },
        ApiRange {
            api_key: ApiKey::Metadata,
            min: 0,
            max: 12,
        },
    ];

    fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut buf, key.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    #[test]
    fn decodes_a_supported_request() {
        let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        match decode_request(f, SUPPORTED).expect("decodes") {
            Decoded::Request(r) => {
                assert_eq!(r.api_key, ApiKey::Metadata);
                assert_eq!(r.header.correlation_id, 77);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn api_versions_above_ours_falls_back() {
        let mut f =
            BytesMut::from(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())[..]);
        f[2..4].copy_from_slice(&9i16.to_be_bytes());
        match decode_request(f.freeze(), SUPPORTED).expect("decodes") {
            Decoded::ApiVersionsTooNew {
                correlation_id,
                version,
            } => assert_eq!((correlation_id, version), (77, 9)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_key_and_unsupported_version_are_errors() {
        let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        let mut bad = BytesMut::from(&f[..]);
        bad[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode_request(bad.freeze(), SUPPORTED),
            Err(CodecError::UnknownApiKey { api_key: 999 })
        ));
        let mut bad = BytesMut::from(&f[..]);
        bad[2..4].copy_from_slice(&13i16.to_be_bytes());
        assert!(matches!(
            decode_request(bad.freeze(), SUPPORTED),
            Err(CodecError::UnsupportedVersion { version: 13, .. })
        ));
    }

    #[test]
    fn api_versions_response_header_is_v0() {
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
        assert_eq!(response_header_version(ApiKey::Metadata, 12), 1);
    }
}

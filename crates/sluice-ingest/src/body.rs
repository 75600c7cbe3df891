//! Reading a request body within bounds: the compressed size is bounded by the server, the
//! decompressed size here, so a small gzip bomb cannot inflate into unbounded memory.

use bytes::Bytes;
use flate2::read::GzDecoder;
use std::io::Read;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than the limit (after decompression).
    #[error("request body is larger than the limit of {limit} bytes ({setting}){}", if *.compressed { " after decompression" } else { "" })]
    TooLarge {
        limit: usize,
        setting: &'static str,
        compressed: bool,
    },
    /// Not valid gzip.
    #[error("Content-Encoding is gzip but the body is not valid gzip: {0}")]
    BadGzip(String),
    /// An encoding other than identity or gzip.
    #[error("unsupported Content-Encoding {0:?}: send the body uncompressed or gzip-compressed")]
    UnsupportedEncoding(String),
}

/// The body's content encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Uncompressed.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, BodyError> {
        match value.map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase()) {
            None => Ok(Encoding::Identity),
            Some(v) if v.is_empty() || v == "identity" => Ok(Encoding::Identity),
            Some(v) if v == "gzip" || v == "x-gzip" => Ok(Encoding::Gzip),
            Some(other) => Err(BodyError::UnsupportedEncoding(other)),
        }
    }
}

/// Decodes `raw` and checks it holds at most `limit` bytes (`setting` names the limit).
pub fn decode(
    raw: Bytes,
    encoding: Encoding,
    limit: usize,
    setting: &'static str,
) -> Result<Bytes, BodyError> {
    match encoding {
        Encoding::Identity if raw.len() > limit => Err(BodyError::TooLarge {
            limit,
            setting,
            compressed: false,
        }),
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity((raw.len() * 4).min(limit + 1));
            GzDecoder::new(raw.as_ref())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|error| BodyError::BadGzip(error.to_string()))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge {
                    limit,
                    setting,
                    compressed: true,
                });
            }
            Ok(Bytes::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn gzip_round_trips_and_bombs_are_stopped_at_the_limit() {
        let data = br#"{"batch":[]}"#;
        assert_eq!(
            decode(gzip(data), Encoding::Gzip, 100, "x")
                .unwrap()
                .as_ref(),
            data
        );
        let bomb = gzip(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 50_000, "{} bytes", bomb.len());
        let error = decode(bomb, Encoding::Gzip, 1000, "limits.max-batch-bytes").unwrap_err();
        assert_eq!(
            error.to_string(),
            "request body is larger than the limit of 1000 bytes (limits.max-batch-bytes) after decompression"
        );
        assert!(matches!(
            decode(Bytes::from_static(b"nope"), Encoding::Gzip, 100, "x"),
            Err(BodyError::BadGzip(_))
        ));
    }

    #[test]
    fn identity_bodies_are_bounded_and_encodings_parsed() {
        assert!(decode(Bytes::from_static(b"12345"), Encoding::Identity, 5, "x").is_ok());
        assert!(decode(Bytes::from_static(b"123456"), Encoding::Identity, 5, "x").is_err());
        assert_eq!(Encoding::from_header(Some(b"GZIP")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header(None), Ok(Encoding::Identity));
        assert!(matches!(
            Encoding::from_header(Some(b"br")),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }
}

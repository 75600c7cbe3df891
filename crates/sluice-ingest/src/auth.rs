//! Finding the write key of a request. Segment clients send it as the HTTP Basic username
//! (`Authorization: Basic base64("KEY:")`); browser and server snippets may put it in the body
//! as `writeKey`. The header wins when both are present.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why the write key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key anywhere.
    #[error(
        "missing write key: send it as the HTTP Basic username (Authorization: Basic base64(\"KEY:\")) or as \"writeKey\" in the body"
    )]
    Missing,
    /// The Authorization header is not HTTP Basic with base64 credentials.
    #[error(
        "malformed Authorization header: expected \"Basic \" followed by base64 of \"WRITE_KEY:\""
    )]
    Malformed,
    /// The key names no tenant.
    #[error("unknown write key: check the key (keys are per tenant; read keys cannot write)")]
    Unknown,
}

/// The write key from an `Authorization` header value, if it is HTTP Basic.
pub fn key_from_authorization(value: &[u8]) -> Result<String, KeyError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| KeyError::Malformed)?
        .trim();
    let (scheme, credentials) = text.split_once(' ').ok_or(KeyError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(KeyError::Malformed);
    }
    let decoded = STANDARD
        .decode(credentials.trim())
        .map_err(|_| KeyError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| KeyError::Malformed)?;
    let user = decoded
        .split_once(':')
        .map_or(decoded.as_str(), |(user, _password)| user);
    if user.is_empty() {
        Err(KeyError::Missing)
    } else {
        Ok(user.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_username_is_the_key() {
        let header = format!("Basic {}", STANDARD.encode("wk_secret:"));
        assert_eq!(
            key_from_authorization(header.as_bytes()),
            Ok("wk_secret".into())
        );
        let header = format!("basic {}", STANDARD.encode("wk_secret:ignored-password"));
        assert_eq!(
            key_from_authorization(header.as_bytes()),
            Ok("wk_secret".into())
        );
        let header = format!("Basic {}", STANDARD.encode("wk_no_colon"));
        assert_eq!(
            key_from_authorization(header.as_bytes()),
            Ok("wk_no_colon".into())
        );
    }

    #[test]
    fn other_schemes_and_garbage_are_malformed() {
        assert_eq!(
            key_from_authorization(b"Bearer abc"),
            Err(KeyError::Malformed)
        );
        assert_eq!(
            key_from_authorization(b"Basic !!!"),
            Err(KeyError::Malformed)
        );
        assert_eq!(key_from_authorization(b"Basic"), Err(KeyError::Malformed));
        let empty = format!("Basic {}", STANDARD.encode(":"));
        assert_eq!(
            key_from_authorization(empty.as_bytes()),
            Err(KeyError::Missing)
        );
    }
}

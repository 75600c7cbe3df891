//! A small HTTP/1.1 client over one keep-alive connection, for `sluice send` and the load
//! generators: hyper's connection API directly, so a benchmark measures sluice rather than a
//! client's pooling and retries.

use crate::config::{Config, ConfigArgs};
use crate::{UserError, first_start};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Where to send requests: `http://host:port[/base]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path prefix (empty or starting with `/`, no trailing `/`).
    pub base: String,
}

impl Target {
    /// Parses and resolves an `http://` URL.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").with_context(|| {
            format!("{url:?} is not an http:// URL (https is not supported by the built-in client; put sluice behind your TLS proxy)")
        })?;
        let (authority, base) = rest.split_once('/').map_or((rest, ""), |(a, b)| (a, b));
        if authority.is_empty() {
            bail!("{url:?} has no host");
        }
        let with_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        let base = base.trim_end_matches('/');
        Ok(Self {
            addr,
            host: authority.to_owned(),
            base: if base.is_empty() {
                String::new()
            } else {
                format!("/{base}")
            },
        })
    }
}

/// The flags of tools that send events to a running sluice.
#[derive(Debug, Clone, Args)]
pub struct WriteTarget {
    /// sluice's base URL (default: http:// + the configured `server.listen`).
    #[arg(long)]
    pub url: Option<String>,
    /// Write key (default: $SLUICE_WRITE_KEY, else the configured or generated tenant's key).
    #[arg(long, env = "SLUICE_WRITE_KEY", hide_env_values = true)]
    pub write_key: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The configuration and where to reach sluice: `--url`, else the configured listen address.
pub(crate) fn locate(config: &ConfigArgs, url: Option<&str>) -> anyhow::Result<(Config, Target)> {
    let config = config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    let url = url.map_or_else(|| config.local_url(), str::to_owned);
    let target = Target::parse(&url).map_err(|error| UserError(format!("--url: {error}")))?;
    Ok((config, target))
}

impl WriteTarget {
    /// The configuration, where to send, and with which write key.
    pub fn resolve(&self) -> anyhow::Result<(Config, Target, String)> {
        let (config, target) = locate(&self.config, self.url.as_deref())?;
        let key = match &self.write_key {
            Some(key) => key.clone(),
            None => first_start::default_write_key(&config.tenants, &config.data_dir)?.ok_or_else(
                || UserError("no write key: pass --write-key KEY or set SLUICE_WRITE_KEY".into()),
            )?,
        };
        Ok((config, target, key))
    }
}

/// The flags of tools that read from a running sluice's query API.
#[derive(Debug, Clone, Args)]
pub struct ReadTarget {
    /// sluice's base URL (default: http:// + the configured `server.listen`).
    #[arg(long)]
    pub url: Option<String>,
    /// Read key (default: $SLUICE_READ_KEY, else the configured or generated tenant's key).
    #[arg(long, env = "SLUICE_READ_KEY", hide_env_values = true)]
    pub read_key: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl ReadTarget {
    /// Where to read, and with which read key.
    pub fn resolve(&self) -> anyhow::Result<(Target, String)> {
        let (config, target) = locate(&self.config, self.url.as_deref())?;
        let key = match &self.read_key {
            Some(key) => key.clone(),
            None => first_start::default_read_key(&config.tenants, &config.data_dir)?.ok_or_else(
                || UserError("no read key: pass --read-key KEY or set SLUICE_READ_KEY".into()),
            )?,
        };
        Ok((target, key))
    }
}

/// One request with `key` as bearer, on a runtime of its own (for the CLI's tools): the
/// answer's JSON (`null` for an empty answer), or its error message — refused requests (bad parameter, key, name) are the
/// user's to fix (exit 2); a server at capacity (429, 503) or failing is not.
pub fn call_json(
    target: &Target,
    method: Method,
    path: &str,
    key: &str,
    body: Bytes,
) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = runtime.block_on(async {
        let mut connection = Connection::open(target).await?;
        let auth = format!("Bearer {key}");
        connection
            .send(
                method,
                path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
    })?;
    let answer: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
    if !reply.status.is_success() {
        let error = match answer.as_ref().and_then(|a| a["error"]["message"].as_str()) {
            Some(message) => format!("{}: {message}", reply.status),
            None => format!(
                "{}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ),
        };
        return Err(
            if reply.status.is_client_error() && reply.status != StatusCode::TOO_MANY_REQUESTS {
                UserError(error).into()
            } else {
                anyhow::anyhow!(error)
            },
        );
    }
    if reply.body.is_empty() {
        // 204: nothing to say.
        return Ok(serde_json::Value::Null);
    }
    answer.with_context(|| {
        format!(
            "the server answered {} with a body that is not JSON",
            reply.status
        )
    })
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Connection {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Connects to `target`.
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr).await.with_context(|| {
            format!(
                "cannot connect to {} ({}); is sluice running?",
                target.host, target.addr
            )
        })?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            target: target.clone(),
            sender,
        })
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.target.base))
            .header("host", &self.target.host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Whether the connection can take another request (false once the server closed it).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// The `Authorization` header value for a write key (HTTP Basic, key as username).
pub fn basic_auth(write_key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_host_port_and_base_path() {
        let target = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (
                target.addr.port(),
                target.host.as_str(),
                target.base.as_str()
            ),
            (8080, "127.0.0.1:8080", "")
        );
        let target = Target::parse("http://127.0.0.1:9/sluice/").unwrap();
        assert_eq!(target.base, "/sluice");
        assert_eq!(Target::parse("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(
            Target::parse("https://x")
                .unwrap_err()
                .to_string()
                .contains("not an http:// URL")
        );
    }
}

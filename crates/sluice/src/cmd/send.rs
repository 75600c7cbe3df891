//! `sluice send FILE`: posts Segment messages from NDJSON or a JSON array to a running sluice in
//! batches, retrying what the server asks to retry, and reports what was accepted and what was
//! rejected (with the input line or array index of each rejection).
//!
//! Messages without a `messageId` get one before the first attempt, so a retried batch can never
//! be stored twice.

use crate::UserError;
use crate::client::{Connection, Target, WriteTarget, basic_auth};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// NDJSON (one message per line) or a JSON array of Segment messages; `-` reads stdin.
    file: PathBuf,
    /// Messages per batch request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Do not draw a progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    target: WriteTarget,
}

/// One input message and where it came from.
struct Message {
    origin: String,
    json: Vec<u8>,
}

#[derive(Debug, Deserialize)]
struct BatchReply {
    #[serde(default)]
    accepted: usize,
    #[serde(default)]
    duplicates: usize,
    #[serde(default)]
    rejected: Vec<ReplyRejection>,
    /// Events of erased users, dropped.
    #[serde(default)]
    suppressed: usize,
}

#[derive(Debug, Deserialize)]
struct ReplyRejection {
    index: Option<usize>,
    message: String,
}

pub fn run(args: SendArgs) -> anyhow::Result<()> {
    let (config, target, key) = args.target.resolve()?;
    let messages = read_messages(&args.file)?;
    let max_batch_bytes = config
        .limits
        .max_batch_bytes
        .as_usize()
        .saturating_sub(1024);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let totals = runtime.block_on(send_all(
        &target,
        &key,
        messages,
        args.batch as usize,
        max_batch_bytes,
        args.quiet,
    ))?;
    println!(
        "sent {} events: {} accepted, {} duplicates, {} rejected",
        totals.sent,
        totals.accepted,
        totals.duplicates,
        totals.rejected.len()
    );
    if totals.suppressed > 0 {
        println!(
            "  {} of them were dropped: events of erased users (sluice users erased)",
            totals.suppressed
        );
    }
    for (origin, message) in totals.rejected.iter().take(20) {
        println!("  {origin}: {message}");
    }
    if totals.rejected.len() > 20 {
        println!(
            "  … and {} more (all are in the dead-letter topic)",
            totals.rejected.len() - 20
        );
    }
    if totals.rejected.is_empty() {
        Ok(())
    } else {
        Err(UserError(format!(
            "{} events were rejected; fix them and send them again",
            totals.rejected.len()
        ))
        .into())
    }
}

fn read_messages(path: &PathBuf) -> anyhow::Result<Vec<Message>> {
    let mut reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|error| UserError(format!("cannot read {}: {error}", path.display())))?;
        Box::new(BufReader::new(file))
    };
    let first = loop {
        let buffer = reader.fill_buf()?;
        match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(position) => break Some(buffer[position]),
            None if buffer.is_empty() => break None,
            None => {
                let len = buffer.len();
                reader.consume(len);
            }
        }
    };
    let mut messages = Vec::new();
    if first == Some(b'[') {
        let mut text = Vec::new();
        reader.read_to_end(&mut text)?;
        let items: Vec<Box<RawValue>> = serde_json::from_slice(&text).map_err(|error| {
            UserError(format!(
                "{} is not a JSON array of messages: {error}",
                path.display()
            ))
        })?;
        for (index, item) in items.into_iter().enumerate() {
            messages.push(with_message_id(
                format!("[{index}]"),
                item.get().as_bytes(),
            )?);
        }
    } else {
        for (number, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if !line.trim().is_empty() {
                messages.push(with_message_id(
                    format!("line {}", number + 1),
                    line.as_bytes(),
                )?);
            }
        }
    }
    Ok(messages)
}

/// Adds a `messageId` when the message has none, so retries are deduplicated by the server.
/// Input that is not a JSON object is sent as is: the server reports exactly what is wrong.
fn with_message_id(origin: String, json: &[u8]) -> anyhow::Result<Message> {
    let mut object =
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(object) => object,
            Err(_) => {
                return Ok(Message {
                    origin,
                    json: json.to_vec(),
                });
            }
        };
    if object
        .get("messageId")
        .is_none_or(|id| id.is_null() || id == "")
    {
        object.insert(
            "messageId".into(),
            sluice_core::id::generate_message_id().into(),
        );
        return Ok(Message {
            origin,
            json: serde_json::to_vec(&object)?,
        });
    }
    Ok(Message {
        origin,
        json: json.to_vec(),
    })
}

#[derive(Debug, Default)]
struct Totals {
    sent: usize,
    accepted: usize,
    duplicates: usize,
    suppressed: usize,
    rejected: Vec<(String, String)>,
}

async fn send_all(
    target: &Target,
    key: &str,
    messages: Vec<Message>,
    batch: usize,
    max_bytes: usize,
    quiet: bool,
) -> anyhow::Result<Totals> {
    let progress = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(messages.len() as u64)
    };
    progress.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} events {per_sec} eta {eta}",
    )?);
    let auth = basic_auth(key);
    let mut connection = Connection::open(target).await?;
    let mut totals = Totals::default();
    let mut start = 0;
    while start < messages.len() {
        let mut end = start;
        let mut bytes = 32;
        while end < messages.len()
            && end - start < batch
            && (end == start || bytes + messages[end].json.len() < max_bytes)
        {
            bytes += messages[end].json.len() + 1;
            end += 1;
        }
        let chunk = &messages[start..end];
        let mut body = Vec::with_capacity(bytes);
        body.extend_from_slice(b"{\"batch\":[");
        for (index, message) in chunk.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&message.json);
        }
        body.extend_from_slice(b"]}");
        let reply = post_with_retries(&mut connection, target, &auth, Bytes::from(body)).await?;
        totals.sent += chunk.len();
        totals.accepted += reply.accepted;
        totals.duplicates += reply.duplicates;
        totals.suppressed += reply.suppressed;
        for rejection in reply.rejected {
            let origin = rejection
                .index
                .and_then(|i| chunk.get(i))
                .map_or("?".to_owned(), |m| m.origin.clone());
            totals.rejected.push((origin, rejection.message));
        }
        progress.inc(chunk.len() as u64);
        start = end;
    }
    progress.finish_and_clear();
    Ok(totals)
}

async fn post_with_retries(
    connection: &mut Connection,
    target: &Target,
    auth: &str,
    body: Bytes,
) -> anyhow::Result<BatchReply> {
    let headers = [
        ("authorization", auth),
        ("content-type", "application/json"),
    ];
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = if connection.is_open() {
            connection
                .send(Method::POST, "/v1/batch", &headers, body.clone())
                .await
        } else {
            match Connection::open(target).await {
                Ok(fresh) => {
                    *connection = fresh;
                    continue;
                }
                Err(error) => Err(error),
            }
        };
        let wait = match outcome {
            Ok(reply)
                if reply.status == StatusCode::OK || reply.status == StatusCode::BAD_REQUEST =>
            {
                if let Ok(parsed) = serde_json::from_slice::<BatchReply>(&reply.body) {
                    return Ok(parsed);
                }
                bail!(
                    "sluice answered {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
            }
            Ok(reply)
                if reply.status == StatusCode::TOO_MANY_REQUESTS
                    || reply.status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                let seconds = reply
                    .headers
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                Duration::from_secs(seconds)
            }
            Ok(reply) => {
                return Err(UserError(format!(
                    "sluice answered {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ))
                .into());
            }
            Err(error) if attempt < 8 => {
                tracing::warn!(%error, attempt, "send failed; retrying");
                if let Ok(fresh) = Connection::open(target).await {
                    *connection = fresh;
                }
                Duration::from_millis(100 << attempt.min(6))
            }
            Err(error) => return Err(error),
        };
        if attempt >= 30 {
            bail!(
                "sluice kept refusing the batch (429/503) for {attempt} attempts; it may be overloaded"
            );
        }
        tokio::time::sleep(wait).await;
    }
}

//! Where the archive's files go: a directory, each file written durably (see [`Layout`]), or
//! an S3 bucket under a key prefix, each object put in one request, or as a multipart upload
//! when it is larger than [`MULTIPART_BYTES`]. S3 holds an object durably once its request (or
//! its upload's completion) succeeded, and reads after a write see it, so the crate's protocol
//! is the same on both. Names are the layout's, relative to the root or the prefix.
//!
//! On S3, endpoint, region and credentials come from the usual AWS environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for S3-compatible stores, web identity and
//! container credentials), read by `object_store`.

use crate::config::Location;
use crate::format::{self, Rows};
use crate::layout::{Layout, parse_date_dir};
use crate::sink::ArchiveError;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload, RetryConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::time::Millis;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::time::Duration;

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_BYTES: usize = 16 << 20;

/// The size of an upload's parts (S3's least is 5 MiB, but for the last).
const PART_BYTES: usize = 8 << 20;

/// Files of one batch encoded and written (or uploaded) at once: the files of a batch are
/// independent until its commit, so they use the cores and overlap their fsyncs or uploads.
const WRITES: usize = 4;

/// Parts of one multipart upload sent at once.
const PARTS_AT_ONCE: usize = 4;

/// How long one request to S3 is retried (on timeouts and 5xx answers) before it fails; the
/// archiver then starts over from its last committed batch.
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the archive's files go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A directory.
    Dir(Layout),
    /// An S3 bucket (and prefix).
    S3(Bucket),
}

/// An S3 bucket under a prefix.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    location: String,
    multipart_bytes: usize,
    part_bytes: usize,
}

impl Target {
    /// The archive at `location`. On S3 nothing is sent yet: [`Target::check_writable`] does.
    pub fn open(location: &Location) -> Result<Target, ArchiveError> {
        match location {
            Location::Dir(root) => Ok(Target::Dir(Layout::new(root.clone()))),
            Location::S3 { .. } => Self::open_s3(location, AmazonS3Builder::from_env()),
        }
    }

    /// The S3 archive at `location` (an S3 one), its client configured by `builder`.
    pub fn open_s3(location: &Location, builder: AmazonS3Builder) -> Result<Target, ArchiveError> {
        let Location::S3 { bucket, prefix } = location else {
            unreachable!("{location} is no S3 location")
        };
        let mut builder = builder.with_bucket_name(bucket).with_retry(RetryConfig {
            max_retries: 5,
            retry_timeout: RETRY_TIMEOUT,
            ..RetryConfig::default()
        });
        // An endpoint given as http:// (a local S3-compatible store) is meant to be spoken to
        // over HTTP.
        if builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|endpoint| endpoint.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        let s3 = builder.build().map_err(|source| ArchiveError::S3 {
            location: location.to_string(),
            source,
        })?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, ObjectPath::from(prefix.as_str())))
        };
        Ok(Target::S3(Bucket {
            store,
            location: location.to_string(),
            multipart_bytes: MULTIPART_BYTES,
            part_bytes: PART_BYTES,
        }))
    }

    /// The part of this archive under `prefix` (`""`: all of it; else relative, ending with
    /// `/`), as an archive of its own: a derived stream's (`streams/<name>/`).
    pub fn under(&self, prefix: &str) -> Target {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return self.clone();
        }
        match self {
            Target::Dir(layout) => Target::Dir(Layout::new(layout.root().join(prefix))),
            Target::S3(bucket) => Target::S3(Bucket {
                store: Arc::new(PrefixStore::new(
                    Arc::clone(&bucket.store),
                    ObjectPath::from(prefix),
                )),
                location: format!("{}/{prefix}", bucket.location.trim_end_matches('/')),
                ..bucket.clone()
            }),
        }
    }

    /// Where the archive is, for messages.
    pub fn location(&self) -> String {
        match self {
            Target::Dir(layout) => layout.root().display().to_string(),
            Target::S3(bucket) => bucket.location.clone(),
        }
    }

    /// Uploads objects larger than `threshold` in parts of `part` bytes (tests use small
    /// ones). S3 only.
    #[cfg(test)]
    pub fn with_multipart_bytes(mut self, threshold: usize, part: usize) -> Self {
        if let Target::S3(bucket) = &mut self {
            bucket.multipart_bytes = threshold;
            bucket.part_bytes = part;
        }
        self
    }

    /// Writes, moves (as publishing does), reads back and deletes a probe, so a missing
    /// bucket, wrong credentials or an unwritable directory stop the start with a clear error.
    pub async fn check_writable(&self) -> Result<(), ArchiveError> {
        const STAGED: &str = "_sluice/probe-staged.json";
        const PROBE: &str = "_sluice/probe.json";
        let probe = crate::publish::Note {
            epoch: 0,
            files: vec!["probe".to_owned()],
            delete: Vec::new(),
        };
        let checked = async {
            self.write_record(STAGED, &probe).await?;
            self.move_file(STAGED, PROBE).await?;
            let read = self.read_record::<crate::publish::Note>(PROBE).await?;
            if read.as_ref() != Some(&probe) {
                return Err(self.io(io::Error::other(format!(
                    "the probe {PROBE} read back as {read:?}, not as written"
                ))));
            }
            self.remove(PROBE).await.map(drop)
        };
        match (checked.await, self) {
            (Err(ArchiveError::S3 { location, source }), Target::S3(_)) => {
                Err(ArchiveError::S3Access {
                    location,
                    reason: s3_answer(&source),
                })
            }
            (result, _) => result,
        }
    }

    /// The record (a JSON file under `_sluice/`) `name`, if there is one.
    pub async fn read_record<T: DeserializeOwned + Send + 'static>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ArchiveError> {
        let Some(bytes) = self.read_if_there(name).await? else {
            return Ok(None);
        };
        Layout::parse_record(&bytes, &format!("{}/{name}", self.location()))
            .map(Some)
            .map_err(|error| self.io(error))
    }

    /// Writes the record `name`, durably.
    pub async fn write_record<T: Serialize>(
        &self,
        name: &str,
        record: &T,
    ) -> Result<(), ArchiveError> {
        let bytes = serde_json::to_vec(record).map_err(|error| self.io(error.into()))?;
        self.replace(name, bytes).await
    }

    /// Writes each (name, rows) as a Parquet file, durably; returns their bytes in all.
    pub async fn write_files(&self, files: Vec<(String, Rows)>) -> Result<u64, ArchiveError> {
        let sizes: Vec<u64> = futures::stream::iter(files)
            .map(|(name, rows)| self.write_file(name, rows))
            .buffer_unordered(WRITES)
            .try_collect()
            .await?;
        Ok(sizes.into_iter().sum())
    }

    /// Encodes `rows` and writes them as the file `name`, durably; returns its size.
    async fn write_file(&self, name: String, rows: Rows) -> Result<u64, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let layout = layout.clone();
                self.blocking(move || {
                    layout.write_file(&name, |file| {
                        let out =
                            format::write(rows, BufWriter::new(file)).map_err(io::Error::other)?;
                        out.into_inner()
                            .map_err(|error| error.into_error())?
                            .flush()
                    })
                })
                .await
            }
            Target::S3(bucket) => {
                let encoded = self
                    .blocking(move || format::write(rows, Vec::new()).map_err(io::Error::other))
                    .await?;
                let size = encoded.len() as u64;
                bucket
                    .upload(&name, Bytes::from(encoded))
                    .await
                    .map_err(|source| self.s3(source))?;
                Ok(size)
            }
        }
    }

    /// An archive in `bucket` of a test S3 server (`scripts/s3.sh` starts them; eval its
    /// output): the one that checks signatures when `checking`, else the data server. Under a
    /// prefix of its own named after `test`, signed with `secret` (the right one when `None`).
    #[cfg(test)]
    pub fn test_s3(
        checking: bool,
        bucket: &str,
        test: &str,
        secret: Option<&str>,
    ) -> Result<Target, ArchiveError> {
        let variable = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: the archive's S3 tests need the S3 server scripts/s3.sh starts: run eval \"$(scripts/s3.sh)\" first (scripts/test.sh does)")
            })
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let location = Location::S3 {
            bucket: bucket.to_owned(),
            prefix: format!("unit/{test}-{nanos}"),
        };
        let builder = AmazonS3Builder::new()
            .with_endpoint(variable(if checking {
                "SLUICE_TEST_S3_AUTH_ENDPOINT"
            } else {
                "SLUICE_TEST_S3_ENDPOINT"
            }))
            .with_region("us-east-1")
            .with_access_key_id(variable("SLUICE_TEST_S3_ACCESS_KEY_ID"))
            .with_secret_access_key(secret.map_or_else(
                || variable("SLUICE_TEST_S3_SECRET_ACCESS_KEY"),
                str::to_owned,
            ));
        Self::open_s3(&location, builder)
    }

    /// An archive in `dir`/archive (tests).
    #[cfg(test)]
    pub fn test_dir(dir: &std::path::Path) -> Target {
        Target::Dir(Layout::new(dir.join("archive")))
    }

    /// An archive in the test bucket of the S3 data server, under a prefix of its own named
    /// after `test` (see [`Target::test_s3`]).
    #[cfg(test)]
    pub fn test_bucket(test: &str) -> Target {
        let bucket = std::env::var("SLUICE_TEST_S3_BUCKET").unwrap_or_default();
        Self::test_s3(false, &bucket, test, None).unwrap()
    }

    /// Every record batch of the Parquet files under `under`, with its file's name, by name.
    #[cfg(test)]
    pub async fn read_batches(&self, under: &str) -> Vec<(String, arrow_array::RecordBatch)> {
        let mut found = Vec::new();
        for (name, bytes) in self.read_all(under).await {
            if !name.ends_with(".parquet") {
                continue;
            }
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap();
            found.extend(reader.map(|batch| (name.clone(), batch.unwrap())));
        }
        found
    }

    /// Every file under `under` (relative to the root), by name, with its bytes.
    #[cfg(test)]
    pub async fn read_all(&self, under: &str) -> Vec<(String, Bytes)> {
        match self {
            Target::Dir(layout) => {
                let mut found = Vec::new();
                let mut dirs = vec![layout.root().join(under)];
                while let Some(dir) = dirs.pop() {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for entry in entries {
                        let path = entry.unwrap().path();
                        if path.is_dir() {
                            dirs.push(path);
                        } else {
                            let name = path.strip_prefix(layout.root()).unwrap();
                            let bytes = Bytes::from(std::fs::read(&path).unwrap());
                            found.push((name.display().to_string(), bytes));
                        }
                    }
                }
                found.sort();
                found
            }
            Target::S3(bucket) => {
                let listed: Vec<_> = bucket
                    .store
                    .list(Some(&ObjectPath::from(under)))
                    .try_collect()
                    .await
                    .unwrap();
                let mut found = Vec::new();
                for meta in listed {
                    let got = bucket.store.get(&meta.location).await.unwrap();
                    found.push((meta.location.to_string(), got.bytes().await.unwrap()));
                }
                found.sort();
                found
            }
        }
    }

    /// The names (relative to the root) of the files under `under` whose names end with
    /// `suffix`, sorted; files being written (`.name.tmp`) are not listed.
    pub async fn list(&self, under: &str, suffix: &str) -> Result<Vec<String>, ArchiveError> {
        let listed = self.list_sized(under, suffix).await?;
        Ok(listed.into_iter().map(|(name, _)| name).collect())
    }

    /// [`Target::list`] with each file's size.
    pub async fn list_sized(
        &self,
        under: &str,
        suffix: &str,
    ) -> Result<Vec<(String, u64)>, ArchiveError> {
        let is_file = |name: &str| {
            name.ends_with(suffix) && !name.rsplit('/').next().unwrap_or("").starts_with('.')
        };
        let mut names: Vec<(String, u64)> = match self {
            Target::Dir(layout) => {
                let (root, start) = (layout.root().to_owned(), layout.root().join(under));
                self.blocking(move || {
                    let mut found = Vec::new();
                    let mut dirs = vec![start];
                    while let Some(dir) = dirs.pop() {
                        let entries = match std::fs::read_dir(&dir) {
                            Ok(entries) => entries,
                            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                            Err(error) => return Err(error),
                        };
                        for entry in entries {
                            let entry = entry?;
                            let path = entry.path();
                            let metadata = match entry.metadata() {
                                Ok(metadata) => metadata,
                                // Deleted meanwhile (by a retention sweep or a compaction).
                                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                                Err(error) => return Err(error),
                            };
                            if metadata.is_dir() {
                                dirs.push(path);
                            } else if let Ok(name) = path.strip_prefix(&root) {
                                found.push((name.to_string_lossy().into_owned(), metadata.len()));
                            }
                        }
                    }
                    Ok(found)
                })
                .await?
            }
            Target::S3(bucket) => bucket
                .store
                .list(Some(&ObjectPath::from(under)))
                .map_ok(|meta| (meta.location.to_string(), meta.size))
                .try_collect()
                .await
                .map_err(|source| self.s3(source))?,
        };
        names.retain(|(name, _)| is_file(name));
        names.sort();
        Ok(names)
    }

    /// The names of the directories (key prefixes in S3) right under `under` (relative to
    /// the root, ending with `/`), sorted.
    pub async fn list_dirs(&self, under: &str) -> Result<Vec<String>, ArchiveError> {
        let mut names = match self {
            Target::Dir(layout) => {
                let dir = layout.root().join(under);
                self.blocking(move || {
                    let entries = match std::fs::read_dir(&dir) {
                        Ok(entries) => entries,
                        Err(error) if error.kind() == io::ErrorKind::NotFound => {
                            return Ok(Vec::new());
                        }
                        Err(error) => return Err(error),
                    };
                    let mut names = Vec::new();
                    for entry in entries {
                        let entry = entry?;
                        if entry.file_type()?.is_dir() {
                            names.push(entry.file_name().to_string_lossy().into_owned());
                        }
                    }
                    Ok(names)
                })
                .await?
            }
            Target::S3(bucket) => bucket
                .store
                .list_with_delimiter(Some(&ObjectPath::from(under)))
                .await
                .map_err(|source| self.s3(source))?
                .common_prefixes
                .into_iter()
                .filter_map(|prefix| prefix.filename().map(str::to_owned))
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// Every date directory of the archive: the tenant, the directory's prefix
    /// (`events/tenant=T/date=D/`) and the start of its day. One listing per tenant.
    pub async fn dates(&self) -> Result<Vec<(String, String, Millis)>, ArchiveError> {
        let mut dates = Vec::new();
        for tenant_dir in self.list_dirs("events/").await? {
            let Some(tenant) = tenant_dir.strip_prefix("tenant=") else {
                continue;
            };
            let tenant_prefix = format!("events/{tenant_dir}/");
            for date_dir in self.list_dirs(&tenant_prefix).await? {
                if let Some(day) = parse_date_dir(&date_dir) {
                    dates.push((
                        tenant.to_owned(),
                        format!("{tenant_prefix}{date_dir}/"),
                        day,
                    ));
                }
            }
        }
        Ok(dates)
    }

    /// Deletes every file under `under` (relative to the root, ending with `/`), and in a
    /// directory the emptied directories too; returns how many files.
    pub async fn remove_all(&self, under: &str) -> Result<usize, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let (root, dir) = (layout.root().to_owned(), layout.root().join(under));
                self.blocking(move || {
                    let removed = remove_tree(&dir)?;
                    if let Some(parent) = dir.parent().filter(|parent| parent.starts_with(&root)) {
                        File::open(parent)?.sync_all()?;
                    }
                    Ok(removed)
                })
                .await
            }
            Target::S3(bucket) => {
                let listed: Vec<ObjectPath> = bucket
                    .store
                    .list(Some(&ObjectPath::from(under)))
                    .map_ok(|meta| meta.location)
                    .try_collect()
                    .await
                    .map_err(|source| self.s3(source))?;
                let count = listed.len();
                let paths = futures::stream::iter(listed.into_iter().map(Ok)).boxed();
                bucket
                    .store
                    .delete_stream(paths)
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|source| self.s3(source))?;
                Ok(count)
            }
        }
    }

    /// Whether the file `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let path = layout.root().join(name);
                self.blocking(move || path.try_exists()).await
            }
            Target::S3(bucket) => match bucket.store.head(&ObjectPath::from(name)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(source) => Err(self.s3(source)),
            },
        }
    }

    /// The bytes of the file `name`.
    pub async fn read(&self, name: &str) -> Result<Bytes, ArchiveError> {
        self.read_if_there(name).await?.ok_or_else(|| {
            self.io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} is not there (deleted meanwhile?)"),
            ))
        })
    }

    /// The bytes `range` of the file `name`, if it exists.
    pub async fn read_range(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Bytes>, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let path = layout.root().join(name);
                self.blocking(move || {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut file = match File::open(path) {
                        Ok(file) => file,
                        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                        Err(error) => return Err(error),
                    };
                    file.seek(SeekFrom::Start(range.start))?;
                    let mut bytes = vec![0; (range.end - range.start) as usize];
                    file.read_exact(&mut bytes)?;
                    Ok(Some(Bytes::from(bytes)))
                })
                .await
            }
            Target::S3(bucket) => {
                match bucket.store.get_range(&ObjectPath::from(name), range).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(self.s3(source)),
                }
            }
        }
    }

    /// The bytes of the file `name`, if it exists.
    pub(crate) async fn read_if_there(&self, name: &str) -> Result<Option<Bytes>, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let path = layout.root().join(name);
                self.blocking(move || match std::fs::read(path) {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(error),
                })
                .await
            }
            Target::S3(bucket) => {
                let got = match bucket.store.get(&ObjectPath::from(name)).await {
                    Ok(got) => got.bytes().await,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(error) => Err(error),
                };
                got.map(Some).map_err(|source| self.s3(source))
            }
        }
    }

    /// Replaces the file `name` with `bytes`, durably: readers see the old file or the new one.
    pub async fn replace(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let (layout, name) = (layout.clone(), name.to_owned());
                self.blocking(move || {
                    layout
                        .write_file(&name, |file| file.write_all(&bytes))
                        .map(drop)
                })
                .await
            }
            Target::S3(bucket) => bucket
                .upload(name, Bytes::from(bytes))
                .await
                .map_err(|source| self.s3(source)),
        }
    }

    /// Moves the file `from` to `to` (replacing a file there), durably; whether `from` was
    /// there. In S3 a server-side copy, then a delete of `from`.
    pub async fn move_file(&self, from: &str, to: &str) -> Result<bool, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let (layout, from, to) = (layout.clone(), from.to_owned(), to.to_owned());
                self.blocking(move || layout.move_file(&from, &to)).await
            }
            Target::S3(bucket) => {
                let from = ObjectPath::from(from);
                match bucket.store.copy(&from, &ObjectPath::from(to)).await {
                    Ok(()) => {}
                    Err(object_store::Error::NotFound { .. }) => return Ok(false),
                    Err(source) => return Err(self.s3(source)),
                }
                match bucket.store.delete(&from).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                    Err(source) => Err(self.s3(source)),
                }
            }
        }
    }

    /// Deletes the file `name`, durably; whether it was there.
    pub async fn remove(&self, name: &str) -> Result<bool, ArchiveError> {
        match self {
            Target::Dir(layout) => {
                let (layout, name) = (layout.clone(), name.to_owned());
                self.blocking(move || layout.remove_file(&name)).await
            }
            // S3 answers a DELETE of a missing key as of one that was there: a HEAD tells.
            Target::S3(bucket) => {
                if !self.exists(name).await? {
                    return Ok(false);
                }
                match bucket.store.delete(&ObjectPath::from(name)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                    Err(source) => Err(self.s3(source)),
                }
            }
        }
    }

    /// Runs file work on the blocking pool; its failure is the archive's.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(io::Error::other)
            .and_then(|result| result)
            .map_err(|source| self.io(source))
    }

    fn io(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Io {
            location: self.location(),
            source,
        }
    }

    fn s3(&self, source: object_store::Error) -> ArchiveError {
        ArchiveError::S3 {
            location: self.location(),
            source,
        }
    }
}

/// What S3 answered, shortly: `403 Forbidden: SignatureDoesNotMatch (The request signature
/// …)` from the error's XML body; the whole error when it has none (a connection that failed).
fn s3_answer(error: &object_store::Error) -> String {
    let text = error.to_string();
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = start + text[start..].find(close)?;
        Some(text[start..end].to_owned())
    };
    match (
        between("status code: ", ":"),
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(status), Some(code), Some(message)) => {
            format!("S3 answered {status}: {code} ({message})")
        }
        (None, Some(code), Some(message)) => format!("S3 answered {code} ({message})"),
        _ => text,
    }
}

/// Deletes the files and directories under `dir` and `dir` itself; how many files. A directory
/// another writer just put a file in stays, with that file.
fn remove_tree(dir: &std::path::Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            removed += remove_tree(&entry.path())?;
        } else {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    match File::open(dir).and_then(|opened| opened.sync_all()) {
        // Another sweep deleted it meanwhile.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(removed),
        result => result?,
    }
    match std::fs::remove_dir(dir) {
        Err(error)
            if !matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Err(error)
        }
        _ => Ok(removed),
    }
}

impl Bucket {
    /// Puts `bytes` as the object `name`: in one request, or in parts when it is large.
    async fn upload(&self, name: &str, bytes: Bytes) -> object_store::Result<()> {
        let path = ObjectPath::from(name);
        if bytes.len() <= self.multipart_bytes {
            return self
                .store
                .put(&path, PutPayload::from(bytes))
                .await
                .map(drop);
        }
        let mut upload = self.store.put_multipart(&path).await?;
        let parts: Vec<_> = (0..bytes.len())
            .step_by(self.part_bytes)
            .map(|start| {
                let part = bytes.slice(start..(start + self.part_bytes).min(bytes.len()));
                upload.put_part(PutPayload::from(part))
            })
            .collect();
        let uploaded = match futures::stream::iter(parts)
            .buffered(PARTS_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await
        {
            Ok(_) => upload.complete().await.map(drop),
            Err(error) => Err(error),
        };
        if uploaded.is_err() {
            // No parts are left behind (and billed) by a failed upload.
            if let Err(error) = upload.abort().await {
                tracing::warn!(object = name, %error, "could not abort a failed multipart upload; a bucket lifecycle rule for incomplete uploads removes its parts");
            }
        }
        uploaded
    }
}

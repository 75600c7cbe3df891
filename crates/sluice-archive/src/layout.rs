//! Where the archive's files go (the layout in the crate docs), and writing them durably:
//! a temporary file beside the final name, fsynced, renamed, and the directory fsynced.

use serde::de::DeserializeOwned;
use sluice_core::time::Millis;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// One hour of event time in milliseconds.
pub const HOUR: Millis = 3_600_000;

/// One day.
pub const DAY: Millis = 24 * HOUR;

/// The archive's root directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// The start of the hour holding `time` (UTC).
pub fn hour_of(time: Millis) -> Millis {
    time.div_euclid(HOUR) * HOUR
}

impl Layout {
    /// The archive rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file (relative to the root) of `tenant`'s events of the hour starting at `hour`
    /// from the batch of `partition` starting at `first_offset`.
    pub fn file(tenant: &str, hour: Millis, partition: u32, first_offset: u64) -> String {
        let (date, hour) = date_and_hour(hour);
        format!(
            "events/tenant={tenant}/date={date}/hour={hour:02}/part-{partition}-{first_offset:020}.parquet"
        )
    }

    /// The record (one of sluice's JSON files under `_sluice/`) `bytes` read from `name`.
    pub fn parse_record<T: DeserializeOwned>(bytes: &[u8], name: &str) -> io::Result<T> {
        serde_json::from_slice(bytes).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{name} is not a record of sluice's ({error}); only sluice writes it: delete it if it is not sluice's, and check the archive's files of that partition"
                ),
            )
        })
    }

    /// Deletes the file `relative` (to the root) and fsyncs its directory; whether it was
    /// there.
    pub fn remove_file(&self, relative: &str) -> io::Result<bool> {
        let path = self.root.join(relative);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        }
        match path.parent() {
            Some(dir) => sync_dir(dir).map(|()| true),
            None => Ok(true),
        }
    }

    /// Moves the file `from` to `to` (relative to the root; replacing a file there), making
    /// `to`'s directories on the way, and fsyncs both directories; whether `from` was there.
    pub fn move_file(&self, from: &str, to: &str) -> io::Result<bool> {
        let (from, to) = (self.root.join(from), self.root.join(to));
        let dir = to
            .parent()
            .ok_or_else(|| io::Error::other(format!("{} has no directory", to.display())))?;
        create_dirs(dir)?;
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        }
        sync_dir(dir)?;
        match from.parent() {
            Some(from_dir) => sync_dir(from_dir).map(|()| true),
            None => Ok(true),
        }
    }

    /// Writes the file `relative` (to the root) durably with `write`; returns its size.
    pub fn write_file(
        &self,
        relative: &str,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<u64> {
        let path = self.root.join(relative);
        write_durably(&path, write)?;
        Ok(fs::metadata(&path)?.len())
    }
}

/// The partition, first offset and last batch's first offset of an archive file's name:
/// `part-P-F.parquet` (one batch's: the last is the first) or `part-P-F-L.parquet` (a
/// compaction's, of the batches from `F` to `L`).
pub fn parse_part(file: &str) -> Option<(u32, u64, u64)> {
    let rest = file.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut parts = rest.split('-');
    let partition = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (None, _) => Some((partition, first, first)),
        (Some(last), None) => Some((partition, first, last.parse().ok()?)),
        _ => None,
    }
}

/// The start of the UTC day a `date=YYYY-MM-DD` directory holds, in epoch milliseconds.
pub fn parse_date_dir(name: &str) -> Option<Millis> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(name.strip_prefix("date=")?, &format).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// How far into its day an `hour=HH` directory's hour starts, in milliseconds.
pub fn parse_hour_dir(name: &str) -> Option<Millis> {
    let hour: Millis = name.strip_prefix("hour=")?.parse().ok()?;
    (0..24).contains(&hour).then_some(hour * HOUR)
}

/// `YYYY-MM-DD` and the hour of the day of `time` (UTC).
fn date_and_hour(time: Millis) -> (String, u8) {
    let datetime = time::OffsetDateTime::from_unix_timestamp(time.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = datetime.date();
    (
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        datetime.hour(),
    )
}

/// Makes `dir` and any missing parents, fsyncing each new directory's parent so the new
/// entries survive a crash.
fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => return Err(error),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temporary file `path` is written through: `.name.tmp` beside it.
fn temporary_path(path: &Path) -> Option<PathBuf> {
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(path.file_name()?);
    temporary_name.push(".tmp");
    Some(path.with_file_name(temporary_name))
}

/// Writes `path` through a temporary `.name.tmp` beside it: written, fsynced, renamed over
/// `path`, and the directory fsynced.
fn write_durably(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", path.display())))?;
    create_dirs(dir)?;
    let temporary = temporary_path(path)
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let mut file = File::create(&temporary)?;
    write(&mut file)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_follow_the_hive_layout_by_event_hour_in_utc() {
        // 2026-12-07T13:45:00Z
        let time = 1_796_651_100_000;
        assert_eq!(
            Layout::file("shop", hour_of(time), 3, 1234),
            "events/tenant=shop/date=2026-12-07/hour=13/part-3-00000000000000001234.parquet"
        );
        assert_eq!(hour_of(time), 1_796_648_400_000);
        assert_eq!(
            Layout::file("shop", hour_of(-1), 0, 0),
            "events/tenant=shop/date=1969-12-31/hour=23/part-0-00000000000000000000.parquet"
        );
    }

    #[test]
    fn a_move_makes_the_directories_and_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("archive"));
        let file = Layout::file("shop", 0, 2, 10);
        let staged = format!("_sluice/staged/2/5/{file}");
        layout
            .write_file(&staged, |out| out.write_all(b"x"))
            .unwrap();
        assert!(layout.move_file(&staged, &file).unwrap());
        assert!(!layout.move_file(&staged, &file).unwrap(), "moved before");
        layout
            .write_file(&staged, |out| out.write_all(b"y"))
            .unwrap();
        assert!(layout.move_file(&staged, &file).unwrap());
        let files: Vec<PathBuf> = walk(layout.root());
        assert_eq!(files, [layout.root().join(&file)], "no temporary file left");
        assert_eq!(fs::read(layout.root().join(&file)).unwrap(), b"y");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }
}

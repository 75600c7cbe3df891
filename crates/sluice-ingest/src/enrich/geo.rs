//! IP address → place, from a MaxMind-format database in the GeoIP2 layout (GeoLite2 /
//! GeoIP2 City or Country, DB-IP's lite `.mmdb` files; a file of another layout gives no
//! place), and what is left of an address after truncation.

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The configured database file and what was last read from it: providers publish new
/// editions weekly (`geoipupdate` replaces the file in place), and [`GeoSource::reload`]
/// takes a new one without a restart.
#[derive(Debug)]
pub struct GeoSource {
    path: PathBuf,
    current: RwLock<Arc<GeoDatabase>>,
    /// The file's modification time and length when it was read.
    read: Mutex<Option<(SystemTime, u64)>>,
}

impl GeoSource {
    /// Opens `path`; the error says what is wrong with the file.
    pub fn open(path: &Path) -> Result<GeoSource, String> {
        let stamp = stamp(path);
        let database = GeoDatabase::open(path)?;
        Ok(GeoSource {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(database)),
            read: Mutex::new(stamp),
        })
    }

    /// The database in use.
    pub fn current(&self) -> Arc<GeoDatabase> {
        Arc::clone(&self.current.read())
    }

    /// Reads the file again if it changed since it was read (modification time or length):
    /// `Ok(true)` when a new edition is now in use, `Ok(false)` when nothing changed, and an
    /// error (the database in use stays) when the changed file cannot be read.
    pub fn reload(&self) -> Result<bool, String> {
        let stamp = stamp(&self.path);
        if stamp.is_none() || *self.read.lock() == stamp {
            return Ok(false);
        }
        let database = GeoDatabase::open(&self.path)?;
        *self.current.write() = Arc::new(database);
        *self.read.lock() = stamp;
        Ok(true)
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// An opened database, read whole into memory (a City database is ~60 MB).
pub struct GeoDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
    description: String,
}

impl std::fmt::Debug for GeoDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl GeoDatabase {
    /// Opens and checks `path`; the error says what is wrong with the file.
    pub fn open(path: &Path) -> Result<GeoDatabase, String> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|error| {
            format!(
                "{} is not a readable MaxMind-format database (.mmdb): {error}",
                path.display()
            )
        })?;
        let metadata = reader.metadata();
        let description = format!(
            "{} ({}, built {})",
            path.display(),
            metadata.database_type,
            metadata.build_epoch
        );
        Ok(GeoDatabase {
            reader,
            description,
        })
    }

    /// What the database says of the file (path, type, build time), for the start-up log.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// `context.geo` for `ip`: `country` (ISO 3166-1 alpha-2), `country_name`, `region`
    /// (the largest subdivision's ISO 3166-2 code), `city`, `continent` (two-letter code),
    /// `latitude`, `longitude`, `time_zone` — those the database has; English names. `None`
    /// for an address the database does not cover (private ranges, for instance).
    pub fn lookup(&self, ip: IpAddr) -> Option<Map<String, Value>> {
        let found = self.reader.lookup(ip).ok()?;
        let city: maxminddb::geoip2::City<'_> = found.decode().ok()??;
        let mut geo = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                geo.insert(key.into(), value);
            }
        };
        put("country", city.country.iso_code.map(Value::from));
        put("country_name", city.country.names.english.map(Value::from));
        put(
            "region",
            city.subdivisions
                .first()
                .and_then(|subdivision| subdivision.iso_code)
                .map(Value::from),
        );
        put("city", city.city.names.english.map(Value::from));
        put("continent", city.continent.code.map(Value::from));
        put("latitude", city.location.latitude.map(Value::from));
        put("longitude", city.location.longitude.map(Value::from));
        put("time_zone", city.location.time_zone.map(Value::from));
        (!geo.is_empty()).then_some(geo)
    }
}

/// `ip` with its host part zeroed: an IPv4 address to its /24, an IPv6 one to its /48 (what
/// Google Analytics and Matomo keep); an IPv4 address written as IPv6 (`::ffff:a.b.c.d`) as
/// IPv4.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_network_only() {
        let t = |ip: &str| truncate(ip.parse().unwrap()).to_string();
        assert_eq!(t("203.0.113.77"), "203.0.113.0");
        assert_eq!(t("2001:db8:85a3:8d3:1319:8a2e:370:7348"), "2001:db8:85a3::");
        assert_eq!(t("::ffff:198.51.100.9"), "198.51.100.0");
    }

    #[test]
    fn a_new_edition_of_the_file_is_taken_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.mmdb");
        crate::enrich::tests::write_test_database(&path);
        let source = GeoSource::open(&path).unwrap();
        let country = |source: &GeoSource| {
            source
                .current()
                .lookup("203.0.113.5".parse().unwrap())
                .unwrap()["country"]
                .clone()
        };
        assert_eq!(country(&source), "DE");
        assert_eq!(source.reload(), Ok(false), "unchanged");
        // A half-written file: the edition in use stays, and the error names the file.
        std::fs::write(&path, b"partial").unwrap();
        let error = source.reload().unwrap_err();
        assert!(error.contains("city.mmdb"), "{error}");
        assert_eq!(country(&source), "DE");
        // The new edition moves the network to France.
        crate::enrich::tests::write_database(&path, &[("203.0.113.0/24", "FR")]);
        assert_eq!(source.reload(), Ok(true));
        assert_eq!(country(&source), "FR");
        // A file that went away leaves the edition in use.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(source.reload(), Ok(false));
        assert_eq!(country(&source), "FR");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        std::fs::write(&path, b"not a database").unwrap();
        let error = GeoDatabase::open(&path).unwrap_err();
        assert!(error.contains("geo.mmdb"), "{error}");
        assert!(error.contains("not a readable MaxMind-format database"));
        let missing = GeoDatabase::open(&dir.path().join("missing.mmdb")).unwrap_err();
        assert!(missing.contains("missing.mmdb"), "{missing}");
    }
}

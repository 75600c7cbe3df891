//! IP address → place, from a MaxMind-format database (GeoLite2 / GeoIP2 City or Country,
//! DB-IP's and IPinfo's `.mmdb` files), and what is left of an address after truncation.

use serde_json::{Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

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

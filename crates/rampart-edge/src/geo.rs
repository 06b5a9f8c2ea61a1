//! Country and autonomous system of a client address, from MaxMind-format databases
//! (`[geo]`), read once when a generation is built.
//!
//! Country databases may follow GeoLite2-Country (`country.iso_code`) or the free
//! ip-location-db layout (`country_code`); ASN databases GeoLite2-ASN
//! (`autonomous_system_number`). Several files are asked in order until one knows the
//! address (ip-location-db ships IPv4 and IPv6 in separate files). A file that cannot be
//! read or is not a MaxMind database is a located configuration error.

use std::net::IpAddr;

use maxminddb::{PathElement, Reader};
use rampart_core::config::{Diagnostics, GeoSettings, SourceFile};

/// The loaded databases.
#[derive(Default)]
pub struct Geo {
    country: Vec<Reader<Vec<u8>>>,
    asn: Vec<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("country", &self.country.len())
            .field("asn", &self.asn.len())
            .finish()
    }
}

impl Geo {
    /// Reads every database of `settings` (paths relative to the configuration file).
    pub fn load(src: &SourceFile, settings: &GeoSettings) -> Result<Geo, Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut open = |list: &[rampart_core::config::policy::Located], what: &str| {
            let mut out = Vec::new();
            for p in list {
                let path = crate::tls::resolve(src, &p.text);
                match Reader::open_readfile(&path) {
                    Ok(r) => out.push(r),
                    Err(e) => diags.push(src.diagnostic(
                        p.span,
                        format!("cannot use the {what} database `{}`: {e}", path.display()),
                        Some("a MaxMind DB (.mmdb) file".into()),
                        Some("`scripts/geo.sh` installs free databases".into()),
                    )),
                }
            }
            out
        };
        let country = open(&settings.country, "country");
        let asn = open(&settings.asn, "ASN");
        if diags.is_empty() {
            Ok(Geo { country, asn })
        } else {
            Err(diags)
        }
    }

    /// Whether any database is loaded.
    pub fn is_empty(&self) -> bool {
        self.country.is_empty() && self.asn.is_empty()
    }

    /// The ISO 3166-1 alpha-2 code of `ip`'s country, upper case.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        const GEOLITE: [PathElement<'static>; 2] =
            [PathElement::Key("country"), PathElement::Key("iso_code")];
        const FLAT: [PathElement<'static>; 1] = [PathElement::Key("country_code")];
        self.country.iter().find_map(|r| {
            let found = r.lookup(ip).ok()?;
            let code: Option<&str> = found
                .decode_path(&GEOLITE)
                .ok()
                .flatten()
                .or_else(|| found.decode_path(&FLAT).ok().flatten());
            match code?.as_bytes() {
                [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                    Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
                }
                _ => None,
            }
        })
    }

    /// The autonomous system number of `ip` (0 when unknown).
    pub fn asn(&self, ip: IpAddr) -> u32 {
        const PATH: [PathElement<'static>; 1] = [PathElement::Key("autonomous_system_number")];
        self.asn
            .iter()
            .find_map(|r| r.lookup(ip).ok()?.decode_path::<u32>(&PATH).ok().flatten())
            .unwrap_or(0)
    }
}

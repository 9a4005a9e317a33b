//! A release's name, `snp-release-<YYYY-MM-DD>`: formed by `release/`,
//! read by `host/` (the name a signature vouches for, and the date an
//! install orders releases by). One place, so both sides agree.

/// What every release name starts with.
pub const PREFIX: &str = "snp-release-";
/// The tarball beside the directory: `<name>.tar.gz`.
pub const TARBALL_SUFFIX: &str = ".tar.gz";

/// The name of the release of `date` (`YYYY-MM-DD`).
pub fn of(date: &str) -> String {
    format!("{PREFIX}{date}")
}

/// `YYYY-MM-DD`, a real calendar date.
pub fn is_date(date: &str) -> bool {
    let shaped = date.len() == 10
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    shaped && jiff::civil::Date::strptime("%Y-%m-%d", date).is_ok()
}

/// The date a release name carries (`snp-release-2026-11-29`, or a name
/// someone gave it with a suffix, `snp-release-2026-11-29-rc1`); `None`
/// when the name does not start with a prefix and a date.
pub fn date_of(name: &str) -> Option<&str> {
    let date = name.strip_prefix(PREFIX)?.get(..10)?;
    is_date(date).then_some(date)
}

/// The release name a tarball's file name gives (`<name>.tar.gz`); the
/// whole file name when it does not end so.
pub fn of_tarball(file_name: &str) -> &str {
    file_name.strip_suffix(TARBALL_SUFFIX).unwrap_or(file_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_date() {
        assert_eq!(of("2026-11-29"), "snp-release-2026-11-29");
        assert_eq!(date_of("snp-release-2026-11-29"), Some("2026-11-29"));
        assert_eq!(date_of("snp-release-2026-11-29-rc1"), Some("2026-11-29"));
        assert_eq!(
            date_of("snp-release-2026-13-01"),
            None,
            "not a calendar date"
        );
        assert_eq!(date_of("snp-release-nightly"), None);
        assert_eq!(date_of("release-2026-11-29"), None);
        assert_eq!(
            of_tarball("snp-release-2026-11-29.tar.gz"),
            "snp-release-2026-11-29"
        );
        assert_eq!(
            of_tarball("snp-release-2026-11-29.tgz"),
            "snp-release-2026-11-29.tgz"
        );
    }
}

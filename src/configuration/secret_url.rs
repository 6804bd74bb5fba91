//! Connection URLs whose passwords never reach logs, errors or metrics.

use std::fmt;

pub(super) const AMQP_SCHEMES: &[&str] = &["amqp", "amqps"];
pub(super) const GATEWAY_SCHEMES: &[&str] = &["http", "https"];
pub(super) const DATABASE_SCHEMES: &[&str] = &["postgres", "postgresql"];

/// A connection URL whose password never leaves this type unless asked for.
///
/// A PostgreSQL URL may name several hosts, as libpq's do
/// (`postgres://db-1:5432,db-2:5432/paywait?target_session_attrs=read-write`);
/// the first is kept in the parsed URL, the others beside it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: url::Url,
    more_hosts: Vec<String>,
}

impl SecretUrl {
    /// Parses a URL of one of `schemes` that names a host. The error never
    /// repeats the URL, which may hold a password.
    pub(super) fn parse(text: &str, schemes: &[&str]) -> Result<Self, String> {
        let (first, more_hosts) = match text.split_once("://") {
            Some((scheme, _)) if scheme.starts_with("postgres") => split_hosts(text),
            _ => (text.to_owned(), Vec::new()),
        };
        let url = url::Url::parse(&first).map_err(|error| format!("not a URL ({error})"))?;
        if !schemes.contains(&url.scheme()) {
            return Err(format!(
                "scheme {:?} is not one of {}",
                url.scheme(),
                schemes.join(", ")
            ));
        }
        if url.host_str().is_none_or(str::is_empty) || more_hosts.iter().any(String::is_empty) {
            return Err("the URL names no host".into());
        }
        Ok(Self { url, more_hosts })
    }

    /// The full URL, password included: for connecting, never for printing.
    pub fn expose(&self) -> String {
        self.render(&self.url)
    }

    /// The URL of the first host.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The same URL (every host kept), changed by `edit`.
    pub fn edited(&self, edit: impl FnOnce(&mut url::Url)) -> Self {
        let mut url = self.url.clone();
        edit(&mut url);
        Self {
            url,
            more_hosts: self.more_hosts.clone(),
        }
    }

    /// `url` with the other hosts after its own.
    fn render(&self, url: &url::Url) -> String {
        let text = url.as_str();
        if self.more_hosts.is_empty() {
            return text.to_owned();
        }
        let end = authority_end(text);
        format!(
            "{},{}{}",
            &text[..end],
            self.more_hosts.join(","),
            &text[end..]
        )
    }

    /// The user name, percent-decoded (`guest` when the URL names none).
    pub fn username(&self) -> String {
        match self.url.username() {
            "" => "guest".to_owned(),
            user => percent_decode(user),
        }
    }

    /// `host:port`, every host's, for messages about what could not be reached.
    pub fn address(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let first = match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        std::iter::once(first)
            .chain(self.more_hosts.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The same URL with another password (percent-encoded as needed).
    pub(super) fn with_password(&self, password: &str) -> Result<Self, ()> {
        let mut url = self.url.clone();
        url.set_password(Some(password))?;
        Ok(Self {
            url,
            more_hosts: self.more_hosts.clone(),
        })
    }

    /// The same URL with another path (another database or vhost).
    pub fn with_path(&self, path: &str) -> Self {
        self.edited(|url| url.set_path(path))
    }
}

/// Where the authority (user, password, hosts) of a URL ends.
pub(super) fn authority_end(text: &str) -> usize {
    let start = text.find("://").map_or(0, |at| at + 3);
    text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |at| start + at)
}

/// `text` with only the first of its comma-separated hosts, and the others.
pub(super) fn split_hosts(text: &str) -> (String, Vec<String>) {
    let end = authority_end(text);
    let hosts_start = text[..end]
        .rfind('@')
        .map_or_else(|| text.find("://").map_or(0, |at| at + 3), |at| at + 1);
    let mut hosts = text[hosts_start..end].split(',');
    let first = hosts.next().unwrap_or_default();
    let more: Vec<String> = hosts.map(str::to_owned).collect();
    (
        format!("{}{first}{}", &text[..hosts_start], &text[end..]),
        more,
    )
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(&self.render(&shown))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// Percent-decodes a URL component.
pub(super) fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

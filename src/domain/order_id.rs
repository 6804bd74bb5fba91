use std::fmt;

use serde::Serialize;

/// The identifier of an order: 1 to 64 characters of `A-Za-z0-9._:-`.
///
/// A value of this type is valid by construction, so it is safe to put into
/// routing keys, message ids (`<order_id>/<event>`) and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrderId(String);

/// Why a string is not an [`OrderId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrderId {
    #[error("order_id is empty")]
    Empty,
    #[error("order_id is {0} characters long, at most 64 are allowed")]
    TooLong(usize),
    #[error("order_id contains {0:?}; only A-Z, a-z, 0-9 and . _ : - are allowed")]
    BadCharacter(char),
}

impl OrderId {
    pub const MAX_LEN: usize = 64;

    /// Validates `value` and wraps it.
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidOrderId> {
        let value = value.into();
        if value.is_empty() {
            return Err(InvalidOrderId::Empty);
        }
        if let Some(bad) = value.chars().find(|c| !Self::allowed(*c)) {
            return Err(InvalidOrderId::BadCharacter(bad));
        }
        // All allowed characters are ASCII, so bytes == characters here.
        if value.len() > Self::MAX_LEN {
            return Err(InvalidOrderId::TooLong(value.len()));
        }
        Ok(Self(value))
    }

    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OrderId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for OrderId {
    type Err = InvalidOrderId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["A-1001", "a", "x.y_z:1-2", &"9".repeat(64)] {
            let id = OrderId::parse(ok).unwrap();
            assert_eq!(id.as_str(), ok);
            assert_eq!(id.as_ref(), ok);
            assert_eq!(id.to_string(), ok);
            assert_eq!(ok.parse::<OrderId>().unwrap(), id);
        }
    }

    #[test]
    fn refuses_empty_long_and_foreign_characters() {
        assert_eq!(OrderId::parse(""), Err(InvalidOrderId::Empty));
        assert_eq!(
            OrderId::parse("9".repeat(65)),
            Err(InvalidOrderId::TooLong(65))
        );
        assert_eq!(
            OrderId::parse("A 1"),
            Err(InvalidOrderId::BadCharacter(' '))
        );
        assert_eq!(
            OrderId::parse("A/1"),
            Err(InvalidOrderId::BadCharacter('/'))
        );
        assert_eq!(
            OrderId::parse("订单"),
            Err(InvalidOrderId::BadCharacter('订'))
        );
    }
}

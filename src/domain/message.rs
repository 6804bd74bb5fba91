//! Inbound messages: parsing and validation, without I/O.
//!
//! Every way a message can be unusable is a [`Rejection`]; the worker parks
//! such a message in the dead queue with the rejection's text.

use std::num::NonZeroU32;

use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Inbound, Inbox, InvalidOrderId, Kind, OrderId, payment::check_publisher};

/// Bodies larger than this are refused unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The AMQP header that carries the number of the check a timer is for.
pub const ATTEMPT_HEADER: &str = "x-attempt";
/// The AMQP header that carries when a timer is due, in milliseconds since
/// the Unix epoch.
pub const DUE_AT_HEADER: &str = "x-due-at";

/// `due_at` as the `x-due-at` header carries it: in whole milliseconds,
/// rounded up, so that a timer is never due before the time it stands for
/// (a deadline has microseconds; a timer due a fraction of a millisecond
/// early would find the order not yet expired).
pub fn due_at_header(due_at: DateTime<Utc>) -> i64 {
    let rounded_down = due_at.timestamp_millis();
    if due_at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        rounded_down
    } else {
        rounded_down + 1
    }
}

/// An integer header of a message, as the transport found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegerHeader {
    Missing,
    /// An integer of any width and sign.
    Integer(i128),
    /// A value of another type, named.
    NotAnInteger(String),
}

/// Why a message cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("body is {size} bytes, more than the {max} allowed", max = MAX_BODY_BYTES)]
    TooLarge { size: usize },
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an object")]
    NotAnObject,
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error(transparent)]
    InvalidOrderId(#[from] InvalidOrderId),
    #[error("field `{field}` is invalid: {why}")]
    InvalidField { field: &'static str, why: String },
    #[error("header `x-attempt` is unusable: {0}")]
    BadAttempt(String),
    #[error("header `x-due-at` is unusable: {0}")]
    BadDueAt(String),
    #[error("order {0} is not known to the database")]
    UnknownOrder(OrderId),
    #[error("{0}")]
    UntrustedPublisher(String),
    #[error("field `{0}` contains a NUL character, which PostgreSQL cannot store")]
    NulCharacter(&'static str),
    #[error(
        "expires_at is less than a microsecond after placed_at, the finest time PostgreSQL keeps"
    )]
    DeadlineTooClose,
    #[error("`{field}` is {time}, outside the times PostgreSQL can store")]
    TimeOutOfRange {
        field: &'static str,
        time: DateTime<Utc>,
    },
    #[error("PostgreSQL refused the message's data: {0}")]
    RefusedByDatabase(String),
}

impl Rejection {
    /// Every [`Rejection::reason`].
    pub const REASONS: [&'static str; 15] = [
        "too_large",
        "not_utf8",
        "not_json",
        "missing_field",
        "wrong_type",
        "invalid_order_id",
        "invalid_field",
        "bad_attempt",
        "bad_due_at",
        "unknown_order",
        "untrusted_publisher",
        "nul_character",
        "deadline_too_close",
        "time_out_of_range",
        "refused_by_database",
    ];

    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::NotUtf8 => "not_utf8",
            Self::NotJson(_) | Self::NotAnObject => "not_json",
            Self::MissingField(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::InvalidOrderId(_) => "invalid_order_id",
            Self::InvalidField { .. } => "invalid_field",
            Self::BadAttempt(_) => "bad_attempt",
            Self::BadDueAt(_) => "bad_due_at",
            Self::UnknownOrder(_) => "unknown_order",
            Self::UntrustedPublisher(_) => "untrusted_publisher",
            Self::NulCharacter(_) => "nul_character",
            Self::DeadlineTooClose => "deadline_too_close",
            Self::TimeOutOfRange { .. } => "time_out_of_range",
            Self::RefusedByDatabase(_) => "refused_by_database",
        }
    }
}

/// `order.placed`: an order service placed an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub amount_cents: Option<i64>,
    pub currency: Option<Currency>,
    /// When the order was placed; `None` means "when paywait received it".
    pub placed_at: Option<DateTime<Utc>>,
    /// The order's own deadline; `None` means "after the whole schedule".
    pub expires_at: Option<DateTime<Utc>>,
}

/// `payment.succeeded`: a payment service took the customer's money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSucceeded {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub amount_cents: Option<i64>,
    /// `None` means "in the order's currency".
    pub currency: Option<Currency>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// `order.cancelled`: the customer cancelled an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    /// Why, as the order service put it.
    pub reason: Option<String>,
}

/// `order.deadline_changed`: the order service moved an order's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineChanged {
    pub order_id: OrderId,
    /// The new deadline, to the microsecond.
    pub expires_at: DateTime<Utc>,
}

/// A reminder's timer: `order.expiring` for `order_id`, `before` its
/// deadline `expires_at` (see `domain::reminder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderDue {
    pub order_id: OrderId,
    pub expires_at: DateTime<Utc>,
    pub before: std::time::Duration,
}

impl ReminderDue {
    /// When it is due; an offset reaching before the earliest time there is
    /// (a crafted body, a setting of millennia) is due at that time, not a
    /// panic.
    pub fn due_at(&self) -> DateTime<Utc> {
        self.expires_at
            .checked_sub_signed(super::time_delta(self.before))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The offset as `checks.remind_before` writes it, e.g. `15m`.
    pub fn label(&self) -> String {
        super::format_duration(self.before)
    }

    /// The timer's JSON body: what tells it from a check's.
    pub fn to_body(&self) -> Vec<u8> {
        Body::with_order(&self.order_id)
            .time("expires_at", Some(self.expires_at))
            .field("remind_before", Some(self.label()))
            .into_bytes()
    }

    pub fn parse(body: &[u8]) -> Result<Self, Rejection> {
        let fields = Fields::parse(body)?;
        let order_id = fields.order_id()?;
        let expires_at = fields
            .optional_time("expires_at")?
            .ok_or(Rejection::MissingField("expires_at"))?;
        let label = fields.required_str("remind_before")?;
        let before = super::parse_duration(label)
            .ok()
            .filter(|before| !before.is_zero())
            .ok_or_else(|| Rejection::InvalidField {
                field: "remind_before",
                why: format!("{label:?} is not a positive duration such as 15m"),
            })?;
        Ok(Self {
            order_id,
            expires_at,
            before,
        })
    }

    /// Whether a timer's body is a reminder's rather than a check's.
    fn is_in(body: &[u8]) -> bool {
        Fields::parse(body).is_ok_and(|fields| fields.get("remind_before").is_some())
    }
}

/// A timer that fired: check order `order_id` for the `attempt`-th time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDue {
    pub order_id: OrderId,
    /// The number of the check, or why its `x-attempt` is unusable: such a
    /// check still checks a pending order (see `check::number_of`).
    pub attempt: Result<Attempt, Rejection>,
    /// When the check is due; `None` for a timer that says not (one armed
    /// before timers carried it), which is due when it arrives.
    pub due_at: Option<DateTime<Utc>>,
}

/// A message paywait consumes, read once where it comes in: the worker
/// acts on this, never on bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Placed(OrderPlaced),
    Payment(PaymentSucceeded),
    Cancelled(OrderCancelled),
    DeadlineChanged(DeadlineChanged),
    Check(CheckDue),
    Reminder(ReminderDue),
}

impl Message {
    /// Reads `inbound` as the kind of message its inbox holds; every way it
    /// can be unusable is a [`Rejection`].
    pub fn parse(inbound: &Inbound) -> Result<Self, Rejection> {
        let body = &inbound.body;
        match inbound.inbox.kind_of(&inbound.routing_key) {
            Some(Kind::OrderPlaced) => OrderPlaced::parse(body).map(Self::Placed),
            Some(Kind::PaymentSucceeded) => PaymentSucceeded::parse(body).map(Self::Payment),
            Some(Kind::OrderCancelled) => OrderCancelled::parse(body).map(Self::Cancelled),
            Some(Kind::DeadlineChanged) => DeadlineChanged::parse(body).map(Self::DeadlineChanged),
            None if ReminderDue::is_in(body) => ReminderDue::parse(body).map(Self::Reminder),
            None => CheckDue::parse(body, &inbound.attempt, &inbound.due_at).map(Self::Check),
        }
    }

    /// Reads `inbound` as [`Message::parse`] does, once its publisher is
    /// known to be allowed to send it: a payment is read only from a user
    /// in `trusted_users` (see `payment::check_publisher`).
    pub fn admit(inbound: &Inbound, trusted_users: &[String]) -> Result<Self, Rejection> {
        if let Some(kind) = inbound.inbox.kind_of(&inbound.routing_key)
            && kind.is_about_money()
        {
            check_publisher(trusted_users, inbound.user_id.as_deref())?;
        }
        Self::parse(inbound)
    }

    /// The kind it is, for a message of the inbound exchange; `None` for
    /// a timer.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Self::Placed(_) => Some(Kind::OrderPlaced),
            Self::Payment(_) => Some(Kind::PaymentSucceeded),
            Self::Cancelled(_) => Some(Kind::OrderCancelled),
            Self::DeadlineChanged(_) => Some(Kind::DeadlineChanged),
            Self::Check(_) | Self::Reminder(_) => None,
        }
    }

    /// The inbox such messages arrive in.
    pub fn inbox(&self) -> Inbox {
        self.kind().map_or(Inbox::Checks, Kind::inbox)
    }

    /// The order it is about.
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Placed(placed) => &placed.order_id,
            Self::Payment(payment) => &payment.order_id,
            Self::Cancelled(cancelled) => &cancelled.order_id,
            Self::DeadlineChanged(changed) => &changed.order_id,
            Self::Check(check) => &check.order_id,
            Self::Reminder(reminder) => &reminder.order_id,
        }
    }

    /// Its JSON body, which [`Message::parse`] reads back as this message
    /// (a check's number and due time travel in its headers).
    pub fn to_body(&self) -> Vec<u8> {
        match self {
            Self::Placed(placed) => placed.to_body(),
            Self::Payment(payment) => payment.to_body(),
            Self::Cancelled(cancelled) => cancelled.to_body(),
            Self::DeadlineChanged(changed) => changed.to_body(),
            Self::Check(check) => check.to_body(),
            Self::Reminder(reminder) => reminder.to_body(),
        }
    }
}

impl OrderPlaced {
    /// The message's JSON body, which [`OrderPlaced::parse`] reads back as
    /// this order.
    pub fn to_body(&self) -> Vec<u8> {
        Body::with_order(&self.order_id)
            .field("amount_cents", self.amount_cents)
            .field("currency", self.currency.as_ref().map(Currency::as_str))
            .time("placed_at", self.placed_at)
            .time("expires_at", self.expires_at)
            .into_bytes()
    }

    pub fn parse(body: &[u8]) -> Result<Self, Rejection> {
        let fields = Fields::parse(body)?;
        let order_id = fields.order_id()?;
        let amount_cents = fields.amount_cents()?;
        let currency = fields.currency()?;
        let placed_at = fields.optional_precise_time("placed_at")?;
        let expires_at = fields.optional_precise_time("expires_at")?;
        // Stored to the microsecond, a shorter window would be no window.
        if let (Some(placed_at), Some(expires_at)) = (placed_at, expires_at) {
            let window = expires_at - placed_at;
            if window > TimeDelta::zero() && window < TimeDelta::microseconds(1) {
                return Err(Rejection::DeadlineTooClose);
            }
        }
        Ok(Self {
            order_id,
            amount_cents,
            currency,
            placed_at: placed_at.map(to_the_microsecond),
            expires_at: expires_at.map(to_the_microsecond),
        })
    }
}

impl PaymentSucceeded {
    /// The message's JSON body, which [`PaymentSucceeded::parse`] reads
    /// back as this payment.
    pub fn to_body(&self) -> Vec<u8> {
        Body::with_order(&self.order_id)
            .field("payment_id", Some(self.payment_id.as_str()))
            .field("amount_cents", self.amount_cents)
            .field("currency", self.currency.as_ref().map(Currency::as_str))
            .time("paid_at", self.paid_at)
            .into_bytes()
    }

    pub fn parse(body: &[u8]) -> Result<Self, Rejection> {
        let fields = Fields::parse(body)?;
        let order_id = fields.order_id()?;
        let payment_id = fields.required_str("payment_id").and_then(|text| {
            PaymentId::parse(text).map_err(|why| Rejection::InvalidField {
                field: "payment_id",
                why,
            })
        })?;
        Ok(Self {
            order_id,
            payment_id,
            amount_cents: fields.amount_cents()?,
            currency: fields.currency()?,
            paid_at: fields.optional_time("paid_at")?,
        })
    }
}

impl OrderCancelled {
    /// The longest reason kept, in characters.
    pub const MAX_REASON: usize = 256;

    /// The message's JSON body, which [`OrderCancelled::parse`] reads back
    /// as this cancellation.
    pub fn to_body(&self) -> Vec<u8> {
        Body::with_order(&self.order_id)
            .field("reason", self.reason.as_deref())
            .into_bytes()
    }

    pub fn parse(body: &[u8]) -> Result<Self, Rejection> {
        let fields = Fields::parse(body)?;
        let order_id = fields.order_id()?;
        let reason = fields.optional_str("reason")?;
        if let Some(reason) = reason
            && reason.chars().count() > Self::MAX_REASON
        {
            return Err(Rejection::InvalidField {
                field: "reason",
                why: format!("it is longer than {} characters", Self::MAX_REASON),
            });
        }
        Ok(Self {
            order_id,
            reason: reason.map(str::to_owned),
        })
    }
}

impl DeadlineChanged {
    /// The message's JSON body, which [`DeadlineChanged::parse`] reads back
    /// as this change.
    pub fn to_body(&self) -> Vec<u8> {
        Body::with_order(&self.order_id)
            .time("expires_at", Some(self.expires_at))
            .into_bytes()
    }

    pub fn parse(body: &[u8]) -> Result<Self, Rejection> {
        let fields = Fields::parse(body)?;
        let order_id = fields.order_id()?;
        let expires_at = fields
            .optional_time("expires_at")?
            .ok_or(Rejection::MissingField("expires_at"))?;
        Ok(Self {
            order_id,
            expires_at,
        })
    }
}

impl CheckDue {
    /// The timer's JSON body; its number and due time travel in the
    /// `x-attempt` and `x-due-at` headers.
    pub fn to_body(&self) -> Vec<u8> {
        Body::with_order(&self.order_id).into_bytes()
    }

    pub fn parse(
        body: &[u8],
        attempt: &IntegerHeader,
        due_at: &IntegerHeader,
    ) -> Result<Self, Rejection> {
        let fields = Fields::parse(body)?;
        let order_id = fields.order_id()?;
        let attempt = Attempt::from_header(attempt);
        let due_at = match due_at {
            IntegerHeader::Missing => None,
            IntegerHeader::NotAnInteger(kind) => {
                return Err(Rejection::BadDueAt(format!(
                    "expected an integer, found {kind}"
                )));
            }
            IntegerHeader::Integer(millis) => Some(storable(
                DUE_AT_HEADER,
                i64::try_from(*millis)
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| {
                        Rejection::BadDueAt(format!("{millis} is not a time in milliseconds"))
                    })?,
            )?),
        };
        Ok(Self {
            order_id,
            attempt,
            due_at,
        })
    }
}

/// The number of a check, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(NonZeroU32);

impl Attempt {
    /// The largest number PostgreSQL's `attempts` column holds; the
    /// configuration refuses a schedule that could count further.
    pub const MAX: u32 = i32::MAX as u32;

    pub const FIRST: Self = Self(NonZeroU32::MIN);

    pub fn new(number: u32) -> Option<Self> {
        if number > Self::MAX {
            return None;
        }
        NonZeroU32::new(number).map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// Reads an `x-attempt` header.
    pub fn from_header(header: &IntegerHeader) -> Result<Self, Rejection> {
        let number = match header {
            IntegerHeader::Missing => {
                return Err(Rejection::BadAttempt("the header is missing".into()));
            }
            IntegerHeader::NotAnInteger(kind) => {
                return Err(Rejection::BadAttempt(format!(
                    "expected an integer, found {kind}"
                )));
            }
            IntegerHeader::Integer(number) => *number,
        };
        u32::try_from(number)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| {
                Rejection::BadAttempt(format!(
                    "{number} is not between 1 and {max}",
                    max = Self::MAX
                ))
            })
    }
}

/// An ISO 4217-style currency code: three capital letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl std::fmt::Debug for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Currency({:?})", self.as_str())
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Currency {
    pub fn parse(text: &str) -> Result<Self, String> {
        match <[u8; 3]>::try_from(text.as_bytes()) {
            Ok(code) if code.iter().all(u8::is_ascii_uppercase) => Ok(Self(code)),
            _ => Err(format!("{text:?} is not three capital letters")),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("three ASCII capitals")
    }
}

/// The payment service's id of a payment: 1 to 128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PaymentId(String);

impl std::fmt::Display for PaymentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PaymentId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl PaymentId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            Err("it is empty".into())
        } else if text.chars().count() > Self::MAX_LEN {
            Err(format!("it is longer than {} characters", Self::MAX_LEN))
        } else if text.chars().any(char::is_control) {
            Err("it contains control characters".into())
        } else {
            Ok(Self(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A JSON object body being written: fields that are `None` are left out,
/// times are RFC 3339 in UTC, with as many decimals as they need.
struct Body(Map<String, Value>);

impl Body {
    fn with_order(order_id: &OrderId) -> Self {
        Self(Map::new()).field("order_id", Some(order_id.as_str()))
    }

    fn field(mut self, name: &str, value: Option<impl Into<Value>>) -> Self {
        if let Some(value) = value {
            self.0.insert(name.to_owned(), value.into());
        }
        self
    }

    fn time(self, name: &str, at: Option<DateTime<Utc>>) -> Self {
        self.field(
            name,
            at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        )
    }

    fn into_bytes(self) -> Vec<u8> {
        Value::Object(self.0).to_string().into_bytes()
    }
}

/// The fields of a JSON object body, read with errors that name the field.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8]) -> Result<Self, Rejection> {
        if body.len() > MAX_BODY_BYTES {
            return Err(Rejection::TooLarge { size: body.len() });
        }
        let text = std::str::from_utf8(body).map_err(|_| Rejection::NotUtf8)?;
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(Rejection::NotAnObject),
            Err(error) => Err(Rejection::NotJson(error.to_string())),
        }
    }

    /// A field that is absent or `null`.
    fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|value| !value.is_null())
    }

    /// A text field; PostgreSQL stores no NUL character in text, so none is
    /// accepted.
    fn optional_str(&self, field: &'static str) -> Result<Option<&str>, Rejection> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let text = value.as_str().ok_or(Rejection::WrongType {
            field,
            expected: "a string",
        })?;
        if text.contains('\0') {
            return Err(Rejection::NulCharacter(field));
        }
        Ok(Some(text))
    }

    fn required_str(&self, field: &'static str) -> Result<&str, Rejection> {
        self.optional_str(field)?
            .ok_or(Rejection::MissingField(field))
    }

    fn order_id(&self) -> Result<OrderId, Rejection> {
        Ok(OrderId::parse(self.required_str("order_id")?)?)
    }

    fn currency(&self) -> Result<Option<Currency>, Rejection> {
        self.optional_str("currency")?
            .map(|text| {
                Currency::parse(text).map_err(|why| Rejection::InvalidField {
                    field: "currency",
                    why,
                })
            })
            .transpose()
    }

    fn amount_cents(&self) -> Result<Option<i64>, Rejection> {
        const FIELD: &str = "amount_cents";
        let Some(value) = self.get(FIELD) else {
            return Ok(None);
        };
        match value.as_i64() {
            Some(cents) if cents >= 0 => Ok(Some(cents)),
            Some(cents) => Err(Rejection::InvalidField {
                field: FIELD,
                why: format!("{cents} is negative"),
            }),
            None if value.is_u64() => Err(Rejection::InvalidField {
                field: FIELD,
                why: format!("{value} is too large"),
            }),
            None => Err(Rejection::WrongType {
                field: FIELD,
                expected: "a non-negative integer",
            }),
        }
    }

    /// A time as stated, to the nanosecond, that PostgreSQL can store (once
    /// cut to the microsecond).
    fn optional_precise_time(
        &self,
        field: &'static str,
    ) -> Result<Option<DateTime<Utc>>, Rejection> {
        self.optional_str(field)?
            .map(|text| {
                let time = DateTime::parse_from_rfc3339(text)
                    .map(|time| time.with_timezone(&Utc))
                    .map_err(|error| Rejection::InvalidField {
                        field,
                        why: format!("{text:?} is not an RFC 3339 time ({error})"),
                    })?;
                storable(field, time)
            })
            .transpose()
    }

    /// A time, cut to the microsecond as PostgreSQL keeps it.
    fn optional_time(&self, field: &'static str) -> Result<Option<DateTime<Utc>>, Rejection> {
        Ok(self.optional_precise_time(field)?.map(to_the_microsecond))
    }
}

/// `time` cut to the microsecond, the finest PostgreSQL keeps: what paywait
/// holds of a time is what the database holds.
pub fn to_the_microsecond(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// The earliest time PostgreSQL stores: 4714-11-24 BC, 00:00 UTC. (Its
/// latest, in the year 294276, is later than any time chrono holds.)
fn postgres_earliest() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(-4713, 11, 24)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .expect("a valid date")
        .and_utc()
}

/// `time`, if PostgreSQL can store it.
fn storable(field: &'static str, time: DateTime<Utc>) -> Result<DateTime<Utc>, Rejection> {
    if time < postgres_earliest() {
        return Err(Rejection::TimeOutOfRange { field, time });
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_reason_is_listed() {
        let one_of_each = [
            Rejection::TooLarge { size: 1 },
            Rejection::NotUtf8,
            Rejection::NotJson(String::new()),
            Rejection::NotAnObject,
            Rejection::MissingField("order_id"),
            Rejection::WrongType {
                field: "order_id",
                expected: "a string",
            },
            Rejection::InvalidOrderId(OrderId::parse("").unwrap_err()),
            Rejection::InvalidField {
                field: "currency",
                why: String::new(),
            },
            Rejection::BadAttempt(String::new()),
            Rejection::BadDueAt(String::new()),
            Rejection::UnknownOrder(OrderId::parse("A-1").unwrap()),
            Rejection::UntrustedPublisher(String::new()),
            Rejection::NulCharacter("reason"),
            Rejection::DeadlineTooClose,
            Rejection::TimeOutOfRange {
                field: "x-due-at",
                time: DateTime::<Utc>::MIN_UTC,
            },
            Rejection::RefusedByDatabase(String::new()),
        ];
        let reasons: std::collections::BTreeSet<&str> =
            one_of_each.iter().map(Rejection::reason).collect();
        let listed: std::collections::BTreeSet<&str> = Rejection::REASONS.into_iter().collect();
        assert_eq!(reasons, listed);
    }

    use super::*;

    #[test]
    fn a_due_time_is_carried_rounded_up_to_the_millisecond() {
        let whole = DateTime::parse_from_rfc3339("2026-11-27T08:00:00.250Z")
            .unwrap()
            .to_utc();
        assert_eq!(due_at_header(whole), whole.timestamp_millis());
        let fraction = DateTime::parse_from_rfc3339("2026-11-27T08:00:00.250001Z")
            .unwrap()
            .to_utc();
        assert_eq!(due_at_header(fraction), whole.timestamp_millis() + 1);
        let carried = DateTime::from_timestamp_millis(due_at_header(fraction)).unwrap();
        assert!(carried >= fraction);
    }

    #[test]
    fn order_placed_with_all_fields() {
        let placed = OrderPlaced::parse(
            br#"{"order_id": "A-1001", "amount_cents": 12900, "currency": "CNY",
                 "placed_at": "2026-11-27T08:00:00Z", "note": "ignored"}"#,
        )
        .unwrap();
        assert_eq!(placed.order_id.as_str(), "A-1001");
        assert_eq!(placed.amount_cents, Some(12900));
        assert_eq!(placed.currency.unwrap().as_str(), "CNY");
        assert_eq!(
            placed.placed_at.unwrap().to_rfc3339(),
            "2026-11-27T08:00:00+00:00"
        );
    }

    #[test]
    fn order_placed_needs_only_the_id() {
        let placed = OrderPlaced::parse(br#"{"order_id":"A-1"}"#).unwrap();
        assert_eq!(placed.amount_cents, None);
        assert_eq!(placed.currency, None);
        assert_eq!(placed.placed_at, None);
    }

    #[test]
    fn placed_at_offsets_are_normalised_to_utc() {
        let placed =
            OrderPlaced::parse(br#"{"order_id":"A-1","placed_at":"2026-11-27T16:00:00+08:00"}"#)
                .unwrap();
        assert_eq!(
            placed.placed_at.unwrap().to_rfc3339(),
            "2026-11-27T08:00:00+00:00"
        );
    }

    #[test]
    fn each_kind_of_bad_body_has_its_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff\xfe", "not_utf8"),
            (b"{not json", "not_json"),
            (b"[1,2]", "not_json"),
            (b"{}", "missing_field"),
            (br#"{"order_id": null}"#, "missing_field"),
            (br#"{"order_id": 7}"#, "wrong_type"),
            (br#"{"order_id": "A 1"}"#, "invalid_order_id"),
            (br#"{"order_id": ""}"#, "invalid_order_id"),
            (br#"{"order_id": "A", "amount_cents": "12"}"#, "wrong_type"),
            (br#"{"order_id": "A", "amount_cents": 1.5}"#, "wrong_type"),
            (br#"{"order_id": "A", "amount_cents": -1}"#, "invalid_field"),
            (
                br#"{"order_id": "A", "amount_cents": 18446744073709551615}"#,
                "invalid_field",
            ),
            (br#"{"order_id": "A", "currency": "cny"}"#, "invalid_field"),
            (
                br#"{"order_id": "A", "placed_at": "yesterday"}"#,
                "invalid_field",
            ),
        ];
        for (body, reason) in cases {
            let rejection = OrderPlaced::parse(body).unwrap_err();
            assert_eq!(
                rejection.reason(),
                *reason,
                "{} gave {rejection}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// A JSON object of exactly `size` bytes: `{"order_id":"A","pad":"xx…"}`.
    fn body_of(size: usize) -> Vec<u8> {
        let mut body = br#"{"order_id":"A","pad":""#.to_vec();
        body.resize(size - 2, b'x');
        body.extend_from_slice(br#""}"#);
        body
    }

    #[test]
    fn bodies_up_to_64_kib_are_read_and_larger_ones_refused_unread() {
        assert_eq!(MAX_BODY_BYTES, 65_536);
        let largest = body_of(MAX_BODY_BYTES);
        assert_eq!(OrderPlaced::parse(&largest).unwrap().order_id.as_str(), "A");
        let too_large = body_of(MAX_BODY_BYTES + 1);
        assert_eq!(
            OrderPlaced::parse(&too_large),
            Err(Rejection::TooLarge {
                size: MAX_BODY_BYTES + 1
            })
        );
        assert_eq!(
            Rejection::TooLarge { size: 70_000 }.to_string(),
            "body is 70000 bytes, more than the 65536 allowed"
        );
    }

    #[test]
    fn payment_ids_are_1_to_128_printable_characters() {
        let longest = "é".repeat(PaymentId::MAX_LEN);
        assert_eq!(PaymentId::parse(&longest).unwrap().as_str(), longest);
        assert!(PaymentId::parse(&"é".repeat(PaymentId::MAX_LEN + 1)).is_err());
        assert!(PaymentId::parse(&"p".repeat(PaymentId::MAX_LEN + 1)).is_err());
        assert!(PaymentId::parse("").is_err());
        assert!(PaymentId::parse("PAY\n1").is_err());
        assert_eq!("PAY-1".parse::<PaymentId>().unwrap().as_str(), "PAY-1");
        assert_eq!("EUR".parse::<Currency>().unwrap().as_str(), "EUR");
        assert!("EURO".parse::<Currency>().is_err());
        assert!("eur".parse::<Currency>().is_err());
    }

    #[test]
    fn a_payment_may_state_its_currency() {
        let payment = PaymentSucceeded::parse(
            br#"{"order_id":"A-1","payment_id":"P","amount_cents":5,"currency":"USD"}"#,
        )
        .unwrap();
        assert_eq!(payment.currency.unwrap().as_str(), "USD");
        let payment = PaymentSucceeded::parse(br#"{"order_id":"A-1","payment_id":"P"}"#).unwrap();
        assert_eq!(payment.currency, None);
        assert_eq!(
            PaymentSucceeded::parse(br#"{"order_id":"A-1","payment_id":"P","currency":"usd"}"#)
                .unwrap_err()
                .reason(),
            "invalid_field"
        );
    }

    #[test]
    fn a_cancellation_names_its_order_and_perhaps_why() {
        let cancelled =
            OrderCancelled::parse(br#"{"order_id":"A-1001","reason":"customer"}"#).unwrap();
        assert_eq!(cancelled.order_id.as_str(), "A-1001");
        assert_eq!(cancelled.reason.as_deref(), Some("customer"));
        let cancelled = OrderCancelled::parse(br#"{"order_id":"A-1001"}"#).unwrap();
        assert_eq!(cancelled.reason, None);
        let longest = format!(
            r#"{{"order_id":"A-1","reason":"{}"}}"#,
            "é".repeat(OrderCancelled::MAX_REASON)
        );
        assert!(OrderCancelled::parse(longest.as_bytes()).is_ok());
        let too_long = format!(
            r#"{{"order_id":"A-1","reason":"{}"}}"#,
            "x".repeat(OrderCancelled::MAX_REASON + 1)
        );
        assert_eq!(
            OrderCancelled::parse(too_long.as_bytes())
                .unwrap_err()
                .reason(),
            "invalid_field"
        );
        for (body, reason) in [
            (&br#"{"reason":"x"}"#[..], "missing_field"),
            (br#"{"order_id":"A-1","reason":7}"#, "wrong_type"),
            (br#"{"order_id":"A 1"}"#, "invalid_order_id"),
        ] {
            assert_eq!(OrderCancelled::parse(body).unwrap_err().reason(), reason);
        }
    }

    #[test]
    fn payment_needs_order_and_payment_ids() {
        let payment = PaymentSucceeded::parse(
            br#"{"order_id":"A-1001","payment_id":"PAY-77","amount_cents":12900,"paid_at":"2026-11-27T08:03:10Z"}"#,
        )
        .unwrap();
        assert_eq!(payment.payment_id.as_str(), "PAY-77");
        assert_eq!(payment.amount_cents, Some(12900));
        assert!(payment.paid_at.is_some());

        assert_eq!(
            PaymentSucceeded::parse(br#"{"order_id":"A-1001"}"#),
            Err(Rejection::MissingField("payment_id"))
        );
        assert_eq!(
            PaymentSucceeded::parse(br#"{"payment_id":"P"}"#),
            Err(Rejection::MissingField("order_id"))
        );
        assert_eq!(
            PaymentSucceeded::parse(br#"{"order_id":"A","payment_id":""}"#)
                .unwrap_err()
                .reason(),
            "invalid_field"
        );
    }

    #[test]
    fn check_reads_the_attempt_from_the_header() {
        for number in [1, 3, i128::from(Attempt::MAX)] {
            let due = CheckDue::parse(
                br#"{"order_id":"A-1"}"#,
                &IntegerHeader::Integer(number),
                &IntegerHeader::Missing,
            )
            .unwrap();
            assert_eq!(i128::from(due.attempt.unwrap().get()), number);
            assert_eq!(due.order_id.as_str(), "A-1");
        }
    }

    #[test]
    fn a_timer_says_when_it_is_due_or_is_due_when_it_arrives() {
        let body = br#"{"order_id":"A-1"}"#;
        let one = IntegerHeader::Integer(1);
        let due = CheckDue::parse(body, &one, &IntegerHeader::Integer(1_795_766_400_123)).unwrap();
        assert_eq!(
            due.due_at,
            Some("2026-11-27T08:00:00.123Z".parse().unwrap())
        );
        assert_eq!(
            CheckDue::parse(body, &one, &IntegerHeader::Missing)
                .unwrap()
                .due_at,
            None
        );
        for (header, says) in [
            (
                IntegerHeader::NotAnInteger("LongString".into()),
                "LongString",
            ),
            (IntegerHeader::Integer(i128::MAX), "is not a time"),
            (
                IntegerHeader::Integer(i128::from(i64::MAX)),
                "is not a time",
            ),
        ] {
            let rejection = CheckDue::parse(body, &one, &header).unwrap_err();
            assert_eq!(rejection.reason(), "bad_due_at");
            assert!(rejection.to_string().contains(says), "{rejection}");
        }
    }

    #[test]
    fn an_order_may_state_its_own_deadline() {
        let placed = OrderPlaced::parse(
            br#"{"order_id":"A-1","placed_at":"2026-11-27T08:00:00Z","expires_at":"2026-11-27T16:45:00+08:00"}"#,
        )
        .unwrap();
        assert_eq!(
            placed.expires_at,
            Some("2026-11-27T08:45:00Z".parse().unwrap())
        );
        assert_eq!(
            OrderPlaced::parse(br#"{"order_id":"A-1","expires_at":"soon"}"#)
                .unwrap_err()
                .reason(),
            "invalid_field"
        );
    }

    #[test]
    fn check_refuses_unusable_attempts() {
        let body = br#"{"order_id":"A-1"}"#;
        let cases = [
            (IntegerHeader::Missing, "the header is missing"),
            (
                IntegerHeader::Integer(0),
                "0 is not between 1 and 2147483647",
            ),
            (
                IntegerHeader::Integer(-2),
                "-2 is not between 1 and 2147483647",
            ),
            (
                IntegerHeader::Integer(i128::from(Attempt::MAX) + 1),
                "2147483648 is not between 1 and 2147483647",
            ),
            (
                IntegerHeader::Integer(i128::from(i64::MAX)),
                "is not between 1 and 2147483647",
            ),
            (
                IntegerHeader::NotAnInteger("LongString".into()),
                "expected an integer, found LongString",
            ),
        ];
        for (header, says) in cases {
            let rejection = CheckDue::parse(body, &header, &IntegerHeader::Missing)
                .unwrap()
                .attempt
                .unwrap_err();
            assert_eq!(rejection.reason(), "bad_attempt", "{header:?}");
            assert!(rejection.to_string().contains(says), "{rejection}");
        }
        // The body is read before the header.
        assert_eq!(
            CheckDue::parse(b"[]", &IntegerHeader::Missing, &IntegerHeader::Missing)
                .unwrap_err()
                .reason(),
            "not_json"
        );
    }

    #[test]
    fn no_text_field_may_hold_a_nul_character() {
        type Parse = fn(&[u8]) -> Result<(), Rejection>;
        let cases: [(&[u8], Parse, &str); 5] = [
            (
                br#"{"order_id":"NOPE-1","reason":"a\u0000b"}"#,
                |body| OrderCancelled::parse(body).map(drop),
                "reason",
            ),
            (
                br#"{"order_id":"A-1","currency":"C\u0000Y"}"#,
                |body| OrderPlaced::parse(body).map(drop),
                "currency",
            ),
            (
                br#"{"order_id":"A\u0000"}"#,
                |body| OrderPlaced::parse(body).map(drop),
                "order_id",
            ),
            (
                br#"{"order_id":"A-1","placed_at":"2026-11-27T08:00:00Z\u0000"}"#,
                |body| OrderPlaced::parse(body).map(drop),
                "placed_at",
            ),
            (
                br#"{"order_id":"A-1","payment_id":"P\u0000"}"#,
                |body| PaymentSucceeded::parse(body).map(drop),
                "payment_id",
            ),
        ];
        for (body, parse, field) in cases {
            let refused = parse(body).unwrap_err();
            assert_eq!(refused, Rejection::NulCharacter(field));
            assert_eq!(refused.reason(), "nul_character");
            assert!(refused.to_string().contains("NUL"), "{refused}");
        }
        // Elsewhere than in a field paywait reads, it is ignored.
        assert!(OrderPlaced::parse(br#"{"order_id":"A-1","note":"\u0000"}"#).is_ok());
    }

    #[test]
    fn times_are_kept_to_the_microsecond_and_a_window_is_at_least_one() {
        let order = |placed_at: &str, expires_at: &str| {
            OrderPlaced::parse(
                format!(
                    r#"{{"order_id":"A-1","placed_at":"{placed_at}","expires_at":"{expires_at}"}}"#
                )
                .as_bytes(),
            )
        };
        for expires_at in [
            "2026-12-07T08:00:00.0000001Z",
            "2026-12-07T08:00:00.000000999Z",
        ] {
            assert_eq!(
                order("2026-12-07T08:00:00Z", expires_at),
                Err(Rejection::DeadlineTooClose)
            );
        }
        assert_eq!(
            order(
                "2026-12-07T08:00:00.0000009Z",
                "2026-12-07T08:00:00.0000015Z"
            ),
            Err(Rejection::DeadlineTooClose)
        );
        let shortest = order(
            "2026-12-07T08:00:00.0000009Z",
            "2026-12-07T08:00:00.0000019Z",
        )
        .unwrap();
        assert_eq!(
            shortest.placed_at,
            Some("2026-12-07T08:00:00Z".parse().unwrap())
        );
        assert_eq!(
            shortest.expires_at,
            Some("2026-12-07T08:00:00.000001Z".parse().unwrap())
        );
        // A deadline before placed_at is another refusal, made with the
        // schedule (see `intake`).
        assert!(order("2026-12-07T08:00:00Z", "2026-12-07T07:00:00Z").is_ok());
        let payment = PaymentSucceeded::parse(
            br#"{"order_id":"A-1","payment_id":"P","paid_at":"2026-12-07T08:00:00.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(
            payment.paid_at,
            Some("2026-12-07T08:00:00.123456Z".parse().unwrap())
        );
    }

    #[test]
    fn a_due_time_postgresql_cannot_store_is_refused() {
        let body = br#"{"order_id":"A-1"}"#;
        let one = IntegerHeader::Integer(1);
        let ancient = DateTime::from_timestamp(-300_000_000_000, 0).unwrap();
        let refused = CheckDue::parse(
            body,
            &one,
            &IntegerHeader::Integer(ancient.timestamp_millis().into()),
        )
        .unwrap_err();
        assert_eq!(refused.reason(), "time_out_of_range");
        assert!(refused.to_string().contains("x-due-at"), "{refused}");
        let earliest = postgres_earliest();
        assert!(
            CheckDue::parse(
                body,
                &one,
                &IntegerHeader::Integer(earliest.timestamp_millis().into())
            )
            .is_ok()
        );
    }

    #[test]
    fn attempts_count_up() {
        assert_eq!(Attempt::FIRST.get(), 1);
        assert_eq!(Attempt::FIRST.next().get(), 2);
        assert_eq!(Attempt::new(0), None);
        assert_eq!(Attempt::new(Attempt::MAX + 1), None);
    }

    mod bodies {
        use proptest::prelude::*;

        use super::*;

        fn order_id() -> impl Strategy<Value = OrderId> {
            "[A-Za-z0-9._:-]{1,64}".prop_map(|text| OrderId::parse(text).unwrap())
        }

        fn currency() -> impl Strategy<Value = Option<Currency>> {
            proptest::option::of("[A-Z]{3}".prop_map(|text| Currency::parse(&text).unwrap()))
        }

        /// A time PostgreSQL keeps as it is: to the microsecond, within
        /// years 1 to 9999.
        fn time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
            proptest::option::of(
                (-62_135_596_800_000_000i64..253_402_300_799_000_000)
                    .prop_map(|micros| DateTime::from_timestamp_micros(micros).unwrap()),
            )
        }

        fn amount() -> impl Strategy<Value = Option<i64>> {
            proptest::option::of(0..=i64::MAX)
        }

        /// `message` as the daemon receives it: its body in its inbox, a
        /// check's number and due time in their headers, read back.
        fn read_back(message: &Message) -> Result<Message, Rejection> {
            let (attempt, due_at) = match message {
                Message::Check(check) => (
                    check
                        .attempt
                        .as_ref()
                        .map_or(IntegerHeader::Missing, |attempt| {
                            IntegerHeader::Integer(attempt.get().into())
                        }),
                    check.due_at.map_or(IntegerHeader::Missing, |due_at| {
                        IntegerHeader::Integer(due_at_header(due_at).into())
                    }),
                ),
                _ => (IntegerHeader::Missing, IntegerHeader::Missing),
            };
            Message::parse(&Inbound {
                inbox: message.inbox(),
                body: message.to_body(),
                attempt,
                due_at,
                routing_key: message
                    .kind()
                    .map_or_else(String::new, |kind| kind.routing_key().to_owned()),
                user_id: None,
                seen_before: false,
                received_at: DateTime::UNIX_EPOCH,
            })
        }

        proptest! {
            #[test]
            fn an_order_placed_reads_back_as_written(
                order_id in order_id(),
                amount_cents in amount(),
                currency in currency(),
                placed_at in time(),
                expires_at in time(),
            ) {
                let placed = Message::Placed(OrderPlaced { order_id, amount_cents, currency, placed_at, expires_at });
                prop_assert_eq!(read_back(&placed), Ok(placed));
            }

            #[test]
            fn a_payment_reads_back_as_written(
                order_id in order_id(),
                payment_id in "[^\\p{Cc}]{1,128}",
                amount_cents in amount(),
                currency in currency(),
                paid_at in time(),
            ) {
                let payment = Message::Payment(PaymentSucceeded {
                    order_id,
                    payment_id: PaymentId::parse(&payment_id).unwrap(),
                    amount_cents,
                    currency,
                    paid_at,
                });
                prop_assert_eq!(read_back(&payment), Ok(payment));
            }

            #[test]
            fn a_cancellation_reads_back_as_written(
                order_id in order_id(),
                reason in proptest::option::of("[^\\x00]{0,256}"),
            ) {
                let cancelled = Message::Cancelled(OrderCancelled { order_id, reason });
                prop_assert_eq!(read_back(&cancelled), Ok(cancelled));
            }

            #[test]
            fn a_check_reads_back_as_written(
                order_id in order_id(),
                attempt in 1..=Attempt::MAX,
                due_at_millis in 0..253_402_300_799_000i64,
            ) {
                let check = Message::Check(CheckDue {
                    order_id,
                    attempt: Ok(Attempt::new(attempt).unwrap()),
                    due_at: DateTime::from_timestamp_millis(due_at_millis),
                });
                prop_assert_eq!(read_back(&check), Ok(check));
            }

            #[test]
            fn a_deadline_change_reads_back_as_written(
                order_id in order_id(),
                expires_at in time(),
            ) {
                let Some(expires_at) = expires_at else { return Ok(()) };
                let changed = Message::DeadlineChanged(DeadlineChanged { order_id, expires_at });
                prop_assert_eq!(read_back(&changed), Ok(changed));
            }

            #[test]
            fn a_reminder_reads_back_as_written_and_not_as_a_check(
                order_id in order_id(),
                expires_at in time(),
                before_millis in 1..=30 * 24 * 3_600_000u64,
            ) {
                let Some(expires_at) = expires_at else { return Ok(()) };
                let reminder = Message::Reminder(ReminderDue {
                    order_id,
                    expires_at,
                    before: std::time::Duration::from_millis(before_millis),
                });
                prop_assert_eq!(read_back(&reminder), Ok(reminder));
            }
        }

        #[test]
        fn a_reminder_reaching_before_all_time_is_due_at_the_earliest() {
            let reminder = ReminderDue {
                order_id: OrderId::parse("A-1").unwrap(),
                expires_at: "2026-12-08T10:00:00Z".parse().unwrap(),
                before: std::time::Duration::from_secs(u64::MAX),
            };
            assert_eq!(reminder.due_at(), DateTime::<Utc>::MIN_UTC);
        }

        #[test]
        fn a_reminders_body_names_its_deadline_and_offset() {
            let body =
                br#"{"order_id":"A-1","expires_at":"2026-12-08T10:00:00Z","remind_before":"15m"}"#;
            let inbound = |body: &[u8]| Inbound {
                inbox: Inbox::Checks,
                body: body.to_vec(),
                attempt: IntegerHeader::Missing,
                due_at: IntegerHeader::Missing,
                routing_key: String::new(),
                user_id: None,
                seen_before: false,
                received_at: DateTime::UNIX_EPOCH,
            };
            match Message::parse(&inbound(body)) {
                Ok(Message::Reminder(reminder)) => {
                    assert_eq!(reminder.label(), "15m");
                    assert_eq!(
                        reminder.due_at(),
                        "2026-12-08T09:45:00Z".parse::<DateTime<Utc>>().unwrap()
                    );
                }
                other => panic!("{other:?}"),
            }
            for (bad, field) in [
                (&br#"{"order_id":"A-1","expires_at":"2026-12-08T10:00:00Z","remind_before":"0s"}"#[..], "remind_before"),
                (br#"{"order_id":"A-1","expires_at":"2026-12-08T10:00:00Z","remind_before":"soon"}"#, "remind_before"),
                (br#"{"order_id":"A-1","remind_before":"15m"}"#, "expires_at"),
            ] {
                let refused = Message::parse(&inbound(bad)).unwrap_err();
                assert!(refused.to_string().contains(field), "{refused}");
            }
        }

        #[test]
        fn a_payment_is_read_only_from_a_trusted_publisher() {
            let trusted = ["payments".to_owned()];
            let inbound = |user_id: Option<&str>, body: &[u8]| Inbound {
                inbox: Inbox::Payments,
                body: body.to_vec(),
                attempt: IntegerHeader::Missing,
                due_at: IntegerHeader::Missing,
                routing_key: "payment.succeeded".into(),
                user_id: user_id.map(str::to_owned),
                seen_before: false,
                received_at: DateTime::UNIX_EPOCH,
            };
            let good = br#"{"order_id":"A-1","payment_id":"P-1"}"#;
            let admitted = Message::admit(&inbound(Some("payments"), good), &trusted).unwrap();
            assert_eq!(admitted.order_id().as_str(), "A-1");
            assert_eq!(admitted.inbox(), Inbox::Payments);
            // An untrusted publisher is refused as such, its body unread.
            for body in [&good[..], b"not json"] {
                let refused = Message::admit(&inbound(Some("mallory"), body), &trusted);
                assert_eq!(refused.unwrap_err().reason(), "untrusted_publisher");
            }
            // A trusted publisher's bad body is refused for what it is.
            let refused = Message::admit(&inbound(Some("payments"), b"not json"), &trusted);
            assert_eq!(refused.unwrap_err().reason(), "not_json");
            // Other messages do not say "paid": anyone may send them.
            let placed = Inbound {
                inbox: Inbox::Placed,
                routing_key: "order.placed".into(),
                ..inbound(Some("mallory"), br#"{"order_id":"A-1"}"#)
            };
            assert!(Message::admit(&placed, &trusted).is_ok());
            // Nor does a deadline change, though it shares the payments
            // queue.
            let changed = Inbound {
                routing_key: "order.deadline_changed".into(),
                ..inbound(
                    Some("mallory"),
                    br#"{"order_id":"A-1","expires_at":"2026-12-08T10:00:00Z"}"#,
                )
            };
            assert!(matches!(
                Message::admit(&changed, &trusted),
                Ok(Message::DeadlineChanged(_))
            ));
            // A payment published to the queue itself is still a payment.
            let direct = Inbound {
                routing_key: "paywait.intake.payments".into(),
                ..inbound(Some("mallory"), good)
            };
            assert_eq!(
                Message::admit(&direct, &trusted).unwrap_err().reason(),
                "untrusted_publisher"
            );
        }
    }
}

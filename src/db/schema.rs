// The tables of migrations/, as diesel sees them.

// `orders` also has `created_at` and `announce_claimed_at`, which only
// hand-written SQL reads: left out here, the table stays within the 16
// columns diesel builds by default. `deadline_changes` is read and written
// by hand-written SQL alone (`deadlines.rs`).
diesel::table! {
    orders (order_id) {
        order_id -> Text,
        status -> Text,
        amount_cents -> Nullable<Int8>,
        currency -> Nullable<Text>,
        placed_at -> Timestamptz,
        expires_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        closed_at -> Nullable<Timestamptz>,
        close_reason -> Nullable<Text>,
        attempts -> Int4,
        gateway_asks -> Int4,
        payment_id -> Nullable<Text>,
        event_published_at -> Nullable<Timestamptz>,
        next_check_at -> Nullable<Timestamptz>,
        adopted_payment_id -> Nullable<Text>,
        deadline_changed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    payments (payment_id) {
        payment_id -> Text,
        order_id -> Text,
        amount_cents -> Nullable<Int8>,
        currency -> Nullable<Text>,
        paid_at -> Nullable<Timestamptz>,
        received_at -> Timestamptz,
        outcome -> Nullable<Text>,
        event_published_at -> Nullable<Timestamptz>,
        decided_attempts -> Nullable<Int4>,
    }
}

diesel::table! {
    cancellations (order_id) {
        order_id -> Text,
        reason -> Nullable<Text>,
        received_at -> Timestamptz,
    }
}

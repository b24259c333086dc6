//! The page's templates (askama, checked at compile time) and what each
//! one is given. Everything shown is built here from the domain's session,
//! so the handlers only decide which step to show.
use askama::Template;
use paybind_shared::{
    model::Presentation,
    money::{format_minor, Money},
};

use super::i18n::{Lang, Texts};

/// What every page has: its language, its heading, and what the script
/// needs (`data-` attributes of `<body>`; never anything secret).
pub struct Frame {
    pub lang: Lang,
    pub t: &'static Texts,
    pub other_lang: &'static str,
    pub heading: String,
    /// The page's own path, for the language switch; empty for none.
    pub self_path: String,
    pub presentation: &'static str,
    /// The merchant's origin the script may `postMessage` to.
    pub parent_origin: String,
    pub session_id: String,
    /// `open`, `code`, `completed`, `failed`, `expired` or `closed`.
    pub state: &'static str,
    /// Seconds before "send a new code" is allowed.
    pub resend_in: i64,
    pub who: Option<Who>,
    pub back: Option<Back>,
}

impl Frame {
    pub fn new(lang: Lang, heading: impl Into<String>) -> Self {
        Self {
            lang,
            t: lang.texts(),
            other_lang: match lang {
                Lang::En => "zh",
                Lang::Zh => "en",
            },
            heading: heading.into(),
            self_path: String::new(),
            presentation: "",
            parent_origin: String::new(),
            session_id: String::new(),
            state: "closed",
            resend_in: 0,
            who: None,
            back: None,
        }
    }
}

/// Step 1: who is asking, and for BindAndPay what is being paid.
pub struct Who {
    pub merchant: String,
    pub purchase: Option<Shown>,
}

pub struct Shown {
    pub amount: String,
    pub description: String,
}

/// The "back to the merchant" button (redirect and popup presentations).
pub struct Back {
    pub action: String,
    pub csrf: String,
    pub label: &'static str,
    pub merchant: String,
}

/// One input of the details form, with the message that says what to fix.
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub value: String,
    pub autocomplete: &'static str,
    pub inputmode: &'static str,
    pub hint: &'static str,
    pub maxlength: u32,
    pub error: Option<String>,
    /// The first field to fix takes the keyboard's focus.
    pub focus: bool,
}

/// Step 2: personal and card information.
#[derive(Template)]
#[template(path = "details.html")]
pub struct DetailsPage {
    pub frame: Frame,
    pub notice: Option<String>,
    pub errors: Vec<String>,
    pub action: String,
    pub csrf: String,
    pub personal: Vec<Field>,
    pub card: Vec<Field>,
    pub attempts_left: u32,
    /// Said once a card has failed: before that it would only worry.
    pub show_attempts: bool,
}

/// Step 3: the one-time code.
#[derive(Template)]
#[template(path = "code.html")]
pub struct CodePage {
    pub frame: Frame,
    pub notice: Option<String>,
    pub masked_phone: String,
    pub tries_left: u32,
    pub expires_at: String,
    pub verify_action: String,
    pub resend_action: String,
    pub csrf: String,
    pub paying: bool,
    /// Development only: a link to the SMS outbox.
    pub outbox: bool,
}

/// Step 4: bound, or paid.
#[derive(Template)]
#[template(path = "result.html")]
pub struct ResultPage {
    pub frame: Frame,
    pub text: &'static str,
    pub card: String,
    pub paid: Option<String>,
    pub closing: bool,
}

/// Expired, failed, unknown, unavailable, refused: a page of its own.
#[derive(Template)]
#[template(path = "closed.html")]
pub struct ClosedPage {
    pub frame: Frame,
    pub text: &'static str,
    pub reload: Option<String>,
}

/// Development only: the codes sent.
#[derive(Template)]
#[template(path = "outbox.html")]
pub struct OutboxPage {
    pub frame: Frame,
    /// (sent at, to, text), newest first.
    pub messages: Vec<(String, String, String)>,
}

pub fn presentation_name(p: Presentation) -> &'static str {
    match p {
        Presentation::Redirect => "redirect",
        Presentation::Embedded => "embedded",
        Presentation::Popup => "popup",
    }
}

pub fn amount(money: Money) -> String {
    format_minor(money.amount_minor(), money.currency())
}

/// `HH:MM` at `ms` in the service's time zone.
pub fn clock_time(ms: i64, utc_offset_minutes: i32) -> String {
    let local = ms.div_euclid(1000) + i64::from(utc_offset_minutes) * 60;
    let minutes_of_day = local.div_euclid(60).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes_of_day / 60, minutes_of_day % 60)
}

/// `YYYY-MM-DD`, the local date at `ms`.
pub fn local_date(ms: i64, utc_offset_minutes: i32) -> String {
    let day = paybind_shared::clock::day_number(ms, utc_offset_minutes);
    // Day 0 is 1970-01-01, Julian day 2_440_588.
    match i32::try_from(day + 2_440_588)
        .ok()
        .and_then(|jd| time::Date::from_julian_day(jd).ok())
    {
        Some(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        None => String::new(),
    }
}

/// `HH:MM UTC+8` at `ms`: the clock time with its zone, for a shopper who
/// may be in another.
pub fn clock_time_with_zone(ms: i64, utc_offset_minutes: i32) -> String {
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let (h, m) = (utc_offset_minutes.abs() / 60, utc_offset_minutes.abs() % 60);
    let zone = if m == 0 {
        format!("UTC{sign}{h}")
    } else {
        format!("UTC{sign}{h}:{m:02}")
    };
    format!("{} {zone}", clock_time(ms, utc_offset_minutes))
}

/// The details form's fields, with what the shopper typed (never the card
/// number, ID number or CVV: those are typed again) and their errors.
pub fn detail_fields(
    t: &'static Texts,
    values: &DetailValues,
    error_of: &dyn Fn(&str) -> Option<String>,
) -> (Vec<Field>, Vec<Field>) {
    let field = |name: &'static str,
                 label: &'static str,
                 kind: &'static str,
                 value: &str,
                 autocomplete: &'static str,
                 inputmode: &'static str,
                 maxlength: u32| Field {
        name,
        label,
        kind,
        value: value.to_owned(),
        autocomplete,
        inputmode,
        hint: "",
        maxlength,
        error: error_of(name),
        focus: false,
    };
    let personal = vec![
        field(
            "full_name",
            t.full_name,
            "text",
            &values.full_name,
            "name",
            "",
            100,
        ),
        field("id_number", t.id_number, "text", "", "off", "", 18),
        field(
            "phone",
            t.phone,
            "tel",
            &values.phone,
            "tel-national",
            "tel",
            20,
        ),
    ];
    let mut expiry = field(
        "expiry",
        t.expiry,
        "text",
        &values.expiry,
        "cc-exp",
        "numeric",
        7,
    );
    expiry.hint = "MM/YY";
    let card = vec![
        field(
            "card_number",
            t.card_number,
            "text",
            "",
            "cc-number",
            "numeric",
            23,
        ),
        expiry,
        field("cvv", t.cvv, "password", "", "cc-csc", "numeric", 4),
    ];
    (personal, card)
}

/// What the details form shows again after an error.
#[derive(Default)]
pub struct DetailValues {
    pub full_name: String,
    pub phone: String,
    pub expiry: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_time_is_local() {
        // 2026-01-01T00:00:00Z is 08:00 in UTC+8.
        assert_eq!(clock_time(1_767_225_600_000, 480), "08:00");
        assert_eq!(clock_time(1_767_225_600_000 + 59_999, 0), "00:00");
        assert_eq!(clock_time(1_767_225_600_000, -60), "23:00");
        assert_eq!(clock_time_with_zone(1_767_225_600_000, 480), "08:00 UTC+8");
        assert_eq!(
            clock_time_with_zone(1_767_225_600_000, -330),
            "18:30 UTC-5:30"
        );
    }
}

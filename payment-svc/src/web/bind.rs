//! The binding page: `GET /bind/{id}` shows the session's current step;
//! each form posts to its own path and answers with a `303` back to the
//! page (post/redirect/get), so a reload shows the step again and never
//! sends anything twice. Only a form that must be corrected is answered
//! with the form itself.
use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::{
    clock::now_ms,
    ids::SessionId,
    model::{Presentation, SessionStatus},
};
use serde::Deserialize;

use super::{
    csrf::{CsrfTokens, FormToken},
    i18n::{Lang, Texts},
    page_response,
    views::{
        amount, clock_time_with_zone, detail_fields, presentation_name, Back, ClosedPage, CodePage,
        DetailValues, DetailsPage, Frame, ResultPage, Shown, Who,
    },
    PageState,
};
use crate::domain::{
    error::DomainError,
    merchants::Merchant,
    model::{AttemptError, SessionState},
    sessions::{RawSubmission, SessionView},
};

#[derive(Deserialize, Default)]
pub struct PageQuery {
    lang: Option<String>,
    notice: Option<String>,
}

/// Every field any of the page's forms sends; each form uses its own.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageForm {
    csrf: Option<String>,
    lang: Option<String>,
    full_name: String,
    id_number: String,
    phone: String,
    card_number: String,
    expiry: String,
    cvv: String,
    code: String,
}

/// A form's outcome other than "shown again with what to fix".
enum Next {
    /// Back to the page, which shows the step the session is at now.
    Page,
    /// Back to the page, which shows the step again with a message.
    Again(Notice),
}

/// A passing trouble, said on the step the shopper is at. It travels in
/// the page's URL as a word (never anything the shopper typed), so that a
/// form's answer is always a redirect and the browser's history holds no
/// form to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    WrongCode,
    CodeExpired,
    ResendThrottled,
    RateLimited,
    InProgress,
    Unavailable,
}

impl Notice {
    const ALL: [Notice; 6] = [
        Notice::WrongCode,
        Notice::CodeExpired,
        Notice::ResendThrottled,
        Notice::RateLimited,
        Notice::InProgress,
        Notice::Unavailable,
    ];

    fn key(self) -> &'static str {
        match self {
            Notice::WrongCode => "wrong-code",
            Notice::CodeExpired => "code-expired",
            Notice::ResendThrottled => "resend-throttled",
            Notice::RateLimited => "rate-limited",
            Notice::InProgress => "in-progress",
            Notice::Unavailable => "unavailable",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.key() == key)
    }

    pub fn text(self, t: &Texts) -> &'static str {
        match self {
            Notice::WrongCode => t.wrong_code,
            Notice::CodeExpired => t.code_expired,
            Notice::ResendThrottled => t.resend_throttled,
            Notice::RateLimited => t.rate_limited,
            Notice::InProgress => t.in_progress,
            Notice::Unavailable => t.unavailable,
        }
    }
}

pub async fn show(
    State(state): State<Arc<PageState>>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::choose(query.lang.as_deref(), &headers);
    let Ok(id) = SessionId::parse(&id) else {
        return state.closed(lang, StatusCode::NOT_FOUND, &DomainError::SessionNotFound);
    };
    let notice = query.notice.as_deref().and_then(Notice::from_key);
    match state.services.page_session(&id).await {
        Ok((merchant, view)) => state.step(lang, &merchant, &view, notice),
        Err(e) => state.closed(lang, StatusCode::NOT_FOUND, &e),
    }
}

pub async fn details(
    State(state): State<Arc<PageState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .post(&id, &headers, &body, |state, merchant, view, form, lang| {
            Box::pin(async move { state.submit_details(merchant, view, form, lang).await })
        })
        .await
}

pub async fn code(
    State(state): State<Arc<PageState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .post(&id, &headers, &body, |state, merchant, view, form, lang| {
            Box::pin(async move {
                let result = state
                    .services
                    .verify_code(merchant, &view.session.id, form.code.trim())
                    .await;
                state.see_page(lang, &view.session.id, state.next_after(result))
            })
        })
        .await
}

pub async fn resend(
    State(state): State<Arc<PageState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .post(
            &id,
            &headers,
            &body,
            |state, merchant, view, _form, lang| {
                Box::pin(async move {
                    let result = state.services.resend_code(merchant, &view.session.id).await;
                    state.see_page(lang, &view.session.id, state.next_after(result))
                })
            },
        )
        .await
}

/// Back to the merchant: a `303` to the session's return URL with the
/// session id, and nothing the merchant could take for the outcome (it
/// asks payment-svc, server to server).
pub async fn back_to_merchant(
    State(state): State<Arc<PageState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Leaving needs no current form: a stale one (the back button) may.
    let (lang, _, _, view, _) = match state.checked_form(&id, &headers, &body).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let id = &view.session.id;
    match url::Url::parse(&view.session.return_url) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("session_id", id.as_str());
            tracing::info!(session_id = %id, status = ?view.status, "shopper sent back to the merchant");
            Redirect::to(url.as_str()).into_response()
        }
        Err(e) => {
            tracing::error!(session_id = %id, error = %e, "stored return URL does not parse");
            state.closed(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                &DomainError::Internal(e.into()),
            )
        }
    }
}

type Handler<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + 'a>>;

/// The language, and the form's fields, from a posted body.
fn parse_form(body: &[u8], headers: &HeaderMap) -> (Lang, PageForm) {
    let form: PageForm = serde_urlencoded::from_bytes(body).unwrap_or_default();
    (Lang::choose(form.lang.as_deref(), headers), form)
}

/// "MM/YY", "MM/YYYY", "MMYY" or "MM YY" as (month, year); anything else
/// as (0, 0), which the domain refuses with the expiry's own message.
fn parse_expiry_field(raw: &str) -> (i32, i32) {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let split = if raw.contains(['/', ' ', '-']) {
        let mut parts = raw.split(['/', ' ', '-']).filter(|p| !p.trim().is_empty());
        match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(y), None) => Some((m.trim().to_owned(), y.trim().to_owned())),
            _ => None,
        }
    } else if digits.len() == 4 || digits.len() == 6 {
        Some((digits[..2].to_owned(), digits[2..].to_owned()))
    } else {
        None
    };
    let Some((month, year)) = split else {
        return (0, 0);
    };
    match (month.parse::<i32>(), year.parse::<i32>()) {
        (Ok(m), Ok(y)) if year.len() == 2 => (m, 2000 + y),
        (Ok(m), Ok(y)) if year.len() == 4 => (m, y),
        _ => (0, 0),
    }
}

/// The page's field name for a rejected request field.
fn page_field(api_field: &str) -> &'static str {
    match api_field {
        "shopper.full_name" => "full_name",
        "shopper.id_number" => "id_number",
        "shopper.phone" => "phone",
        "card.number" => "card_number",
        "card.expiry_month" | "card.expiry_year" => "expiry",
        "card.cvv" => "cvv",
        _ => "",
    }
}

impl PageState {
    /// The common part of every form: the origin, the session, the token.
    async fn post<F>(&self, id: &str, headers: &HeaderMap, body: &[u8], then: F) -> Response
    where
        F: for<'a> FnOnce(
            &'a Self,
            &'a Merchant,
            &'a SessionView,
            &'a PageForm,
            Lang,
        ) -> Handler<'a>,
    {
        let (lang, form, merchant, view, current) = match self.checked_form(id, headers, body).await
        {
            Ok(checked) => checked,
            Err(refused) => return refused,
        };
        if current {
            then(self, &merchant, &view, &form, lang).await
        } else {
            // Sent already (or from an older page): show where it is now.
            self.see_page(lang, &view.session.id, Next::Page)
        }
    }

    /// What every form goes through: from this site, for a session that
    /// exists, with a token minted for it (a forged or missing one is
    /// refused here); last, whether the token is the current version's.
    async fn checked_form(
        &self,
        id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Lang, PageForm, Arc<Merchant>, SessionView, bool), Response> {
        let (lang, form) = parse_form(body, headers);
        if let Some(refused) = self.refuse_foreign_origin(lang, headers) {
            return Err(refused);
        }
        let Ok(id) = SessionId::parse(id) else {
            return Err(self.closed(lang, StatusCode::NOT_FOUND, &DomainError::SessionNotFound));
        };
        let (merchant, view) = self
            .services
            .page_session(&id)
            .await
            .map_err(|e| self.closed(lang, StatusCode::NOT_FOUND, &e))?;
        let tokens = CsrfTokens::new(&self.services.otp_hasher);
        match tokens.check(&id, view.session.version, form.csrf.as_deref()) {
            FormToken::Forged => {
                tracing::warn!(session_id = %id, "page form refused: no valid CSRF token");
                Err(self.forbidden(lang, &id))
            }
            token => Ok((lang, form, merchant, view, token == FormToken::Current)),
        }
    }

    async fn submit_details(
        &self,
        merchant: &Merchant,
        view: &SessionView,
        form: &PageForm,
        lang: Lang,
    ) -> Response {
        let (expiry_month, expiry_year) = parse_expiry_field(&form.expiry);
        let raw = RawSubmission {
            full_name: &form.full_name,
            id_number: &form.id_number,
            phone: &form.phone,
            card_number: &form.card_number,
            expiry_month,
            expiry_year,
            cvv: &form.cvv,
        };
        let values = DetailValues {
            full_name: form.full_name.clone(),
            phone: form.phone.clone(),
            expiry: form.expiry.clone(),
        };
        let submission = match self.services.parse_submission(&raw) {
            Ok(s) => s,
            Err(DomainError::Invalid(rejected)) => {
                let errors: Vec<(&'static str, String)> = rejected
                    .violations()
                    .iter()
                    .map(|v| (page_field(v.field), lang.field_message(v.field, &v.message)))
                    .collect();
                return self.details_page(
                    lang,
                    merchant,
                    view,
                    None,
                    &values,
                    &errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                );
            }
            Err(e) => return self.see_page(lang, &view.session.id, self.after_error(e)),
        };
        let result = self
            .services
            .submit(merchant, &view.session.id, submission)
            .await;
        self.see_page(lang, &view.session.id, self.next_after(result))
    }

    /// What a refusal means for the page: most are shown by the step the
    /// session is at now (a card not verified, a decline, a session that
    /// failed or expired); a passing trouble is said on the same step.
    fn after_error(&self, e: DomainError) -> Next {
        match e {
            DomainError::WrongCode { .. } => Next::Again(Notice::WrongCode),
            DomainError::CodeExpired => Next::Again(Notice::CodeExpired),
            DomainError::ResendThrottled { .. } => Next::Again(Notice::ResendThrottled),
            DomainError::CardNotVerified { .. }
            | DomainError::CardDeclined { .. }
            | DomainError::SessionExpired
            | DomainError::SessionFailed
            | DomainError::SessionState { .. }
            | DomainError::SessionNotFound => Next::Page,
            DomainError::RateLimited { .. } => Next::Again(Notice::RateLimited),
            DomainError::RequestInProgress => Next::Again(Notice::InProgress),
            other => {
                tracing::warn!(error = %other, "binding page step failed");
                Next::Again(Notice::Unavailable)
            }
        }
    }

    /// Where a step's outcome sends the shopper.
    fn next_after<T>(&self, result: Result<T, DomainError>) -> Next {
        match result {
            Ok(_) => Next::Page,
            Err(e) => self.after_error(e),
        }
    }

    /// After a form: a `303` to the page, with the notice it should say.
    fn see_page(&self, lang: Lang, id: &SessionId, next: Next) -> Response {
        let notice = match next {
            Next::Page => String::new(),
            Next::Again(notice) => format!("&notice={}", notice.key()),
        };
        Redirect::to(&format!("/bind/{id}?lang={}{notice}", lang.code())).into_response()
    }

    /// A POST from a page of another origin is refused outright. Browsers
    /// say where a form came from in `Sec-Fetch-Site`; `Origin` is `null`
    /// on our own posts, because the page's referrer policy is
    /// `no-referrer`, so it counts only when it names another origin. A
    /// request with neither goes on to the token check, which refuses a
    /// form that did not come from the page all the same.
    pub(super) fn refuse_foreign_origin(
        &self,
        lang: Lang,
        headers: &HeaderMap,
    ) -> Option<Response> {
        let header_value = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
        let site = header_value("sec-fetch-site");
        let origin = header_value(header::ORIGIN.as_str());
        let foreign_site = site.is_some_and(|s| s != "same-origin" && s != "none");
        let foreign_origin = origin.is_some_and(|o| o != "null" && o != self.public_origin);
        if !foreign_site && !foreign_origin {
            return None;
        }
        tracing::warn!(
            site = site.unwrap_or("-"),
            origin = origin.unwrap_or("-"),
            "page form refused: posted from another site"
        );
        let t = lang.texts();
        Some(page_response(
            StatusCode::FORBIDDEN,
            ClosedPage {
                frame: Frame::new(lang, t.forbidden_title),
                text: t.forbidden_text,
                reload: None,
            },
            None,
        ))
    }

    fn forbidden(&self, lang: Lang, id: &SessionId) -> Response {
        let t = lang.texts();
        page_response(
            StatusCode::FORBIDDEN,
            ClosedPage {
                frame: Frame::new(lang, t.forbidden_title),
                text: t.forbidden_text,
                reload: Some(format!("/bind/{id}?lang={}", lang.code())),
            },
            None,
        )
    }

    /// A page for a session that cannot be shown (unknown, or its
    /// merchant disabled) or an internal failure.
    fn closed(&self, lang: Lang, status: StatusCode, e: &DomainError) -> Response {
        let t = lang.texts();
        let (heading, text, status) = match e {
            DomainError::SessionNotFound => (t.unknown_title, t.unknown_text, status),
            DomainError::MerchantDisabled => {
                (t.disabled_title, t.disabled_text, StatusCode::FORBIDDEN)
            }
            other => {
                tracing::error!(error = %other, "binding page failed");
                (
                    t.disabled_title,
                    t.unavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                )
            }
        };
        page_response(
            status,
            ClosedPage {
                frame: Frame::new(lang, heading),
                text,
                reload: None,
            },
            None,
        )
    }

    /// The frame of a session's page: step 1 (who is asking), the data
    /// the script needs, the way back.
    fn frame(
        &self,
        lang: Lang,
        merchant: &Merchant,
        view: &SessionView,
        heading: &str,
        state: &'static str,
    ) -> Frame {
        let session = &view.session;
        let t = lang.texts();
        let mut frame = Frame::new(lang, heading);
        frame.self_path = format!("/bind/{}", session.id);
        frame.presentation = presentation_name(session.presentation);
        frame.parent_origin = merchant
            .page_origin(&session.return_url)
            .unwrap_or_default()
            .to_owned();
        frame.session_id = session.id.to_string();
        frame.state = state;
        frame.who = Some(Who {
            merchant: merchant.display_name.clone(),
            purchase: session.purchase.as_ref().map(|p| Shown {
                amount: amount(p.amount),
                description: p.description.clone(),
            }),
        });
        // Framed, the merchant's page around it is the way back.
        if session.presentation != Presentation::Embedded {
            let finished = matches!(state, "completed" | "failed" | "expired");
            frame.back = Some(Back {
                action: format!("/bind/{}/return", session.id),
                csrf: CsrfTokens::new(&self.services.otp_hasher).mint(&session.id, session.version),
                label: if finished { t.back_to } else { t.cancel_to },
                merchant: merchant.display_name.clone(),
            });
        }
        frame
    }

    /// The step the session is at now.
    pub(super) fn step(
        &self,
        lang: Lang,
        merchant: &Merchant,
        view: &SessionView,
        notice: Option<Notice>,
    ) -> Response {
        let t = lang.texts();
        let session = &view.session;
        let headers = Some((merchant, view));
        match view.status {
            SessionStatus::Open => {
                let notice =
                    notice
                        .map(|n| n.text(t).to_owned())
                        .or_else(|| match session.last_error {
                            Some(AttemptError::CardNotVerified) => Some(t.not_verified.to_owned()),
                            Some(AttemptError::CardDeclined) => Some(t.declined.to_owned()),
                            _ => None,
                        });
                let values = DetailValues {
                    full_name: session
                        .prefill_name
                        .as_ref()
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    phone: session
                        .prefill_phone
                        .as_ref()
                        .map(|p| p.e164().trim_start_matches("+86").to_owned())
                        .unwrap_or_default(),
                    expiry: String::new(),
                };
                self.details_page(lang, merchant, view, notice, &values, &[], StatusCode::OK)
            }
            SessionStatus::AwaitingVerification => match &session.state {
                SessionState::AwaitingVerification { code, .. } => {
                    let mut frame = self.frame(lang, merchant, view, t.code_title, "code");
                    let wait = code.sent_ms + self.services.policy.resend_interval_ms - now_ms();
                    frame.resend_in = (wait.max(0) + 999) / 1000;
                    let csrf = CsrfTokens::new(&self.services.otp_hasher)
                        .mint(&session.id, session.version);
                    page_response(
                        StatusCode::OK,
                        CodePage {
                            frame,
                            notice: notice.map(|n| match n {
                                Notice::WrongCode => {
                                    format!("{} {} {}", t.wrong_code, code.tries_left, t.tries_left)
                                }
                                other => other.text(t).to_owned(),
                            }),
                            masked_phone: view.code_sent_to().unwrap_or_default(),
                            tries_left: code.tries_left,
                            expires_at: clock_time_with_zone(
                                code.expires_ms,
                                self.services.policy.utc_offset_minutes,
                            ),
                            verify_action: format!("/bind/{}/code", session.id),
                            resend_action: format!("/bind/{}/resend", session.id),
                            csrf,
                            paying: session.purchase.is_some(),
                            outbox: self.outbox.is_some(),
                        },
                        headers,
                    )
                }
                // Charging: the code was right and the charge is being
                // settled (by this request's twin, or the recovery worker).
                _ => {
                    let mut frame = self.frame(lang, merchant, view, t.code_title, "code");
                    frame.back = None;
                    page_response(
                        StatusCode::OK,
                        ClosedPage {
                            frame,
                            text: t.in_progress,
                            reload: Some(format!("/bind/{}?lang={}", session.id, lang.code())),
                        },
                        headers,
                    )
                }
            },
            SessionStatus::Completed => {
                let paid = view.payment.as_ref().map(|p| amount(p.amount));
                let (heading, text) = if paid.is_some() {
                    (t.paid_title, t.paid_text)
                } else {
                    (t.bound_title, t.bound_text)
                };
                let card = view
                    .binding
                    .as_ref()
                    .map(|b| format!("{:?} •••• {}", b.binding.card.brand, b.binding.card.last4))
                    .unwrap_or_default();
                page_response(
                    StatusCode::OK,
                    ResultPage {
                        frame: self.frame(lang, merchant, view, heading, "completed"),
                        text,
                        card,
                        paid,
                        closing: session.presentation == Presentation::Popup,
                    },
                    headers,
                )
            }
            SessionStatus::Failed | SessionStatus::Expired => {
                let (heading, text, state) = if view.status == SessionStatus::Failed {
                    (t.failed_title, t.failed_text, "failed")
                } else {
                    (t.expired_title, t.expired_text, "expired")
                };
                page_response(
                    StatusCode::OK,
                    ClosedPage {
                        frame: self.frame(lang, merchant, view, heading, state),
                        text,
                        reload: None,
                    },
                    headers,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn details_page(
        &self,
        lang: Lang,
        merchant: &Merchant,
        view: &SessionView,
        notice: Option<String>,
        values: &DetailValues,
        errors: &[(&'static str, String)],
        status: StatusCode,
    ) -> Response {
        let t = lang.texts();
        let session = &view.session;
        let error_of = |name: &str| {
            let found: Vec<&str> = errors
                .iter()
                .filter(|(f, _)| *f == name)
                .map(|(_, m)| m.as_str())
                .collect();
            (!found.is_empty()).then(|| found.join(" "))
        };
        let (personal, card) = detail_fields(t, values, &error_of);
        let heading = if session.purchase.is_some() {
            t.pay_title
        } else {
            t.title
        };
        page_response(
            status,
            DetailsPage {
                frame: self.frame(lang, merchant, view, heading, "open"),
                notice,
                errors: errors.iter().map(|(_, m)| m.clone()).collect(),
                action: format!("/bind/{}/details", session.id),
                csrf: CsrfTokens::new(&self.services.otp_hasher).mint(&session.id, session.version),
                personal,
                card,
                attempts_left: session.attempts_left,
                show_attempts: session.last_error.is_some(),
            },
            Some((merchant, view)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_field_takes_the_usual_spellings() {
        assert_eq!(parse_expiry_field("12/30"), (12, 2030));
        assert_eq!(parse_expiry_field(" 1 / 2032 "), (1, 2032));
        assert_eq!(parse_expiry_field("0631"), (6, 2031));
        assert_eq!(parse_expiry_field("06-31"), (6, 2031));
        assert_eq!(parse_expiry_field("12/3"), (0, 0));
        assert_eq!(parse_expiry_field("ab/cd"), (0, 0));
        assert_eq!(parse_expiry_field(""), (0, 0));
        assert_eq!(parse_expiry_field("1/2/3"), (0, 0));
    }
}

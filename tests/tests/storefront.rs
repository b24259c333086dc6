//! The shop as a shopper uses it, in a real browser, on both databases and
//! in each presentation of the binding page: sign up, bind a card on the
//! payment institution's page, then buy with no page and no code; buy
//! without a card (BindAndPay); a declined card, then one that works; a
//! wrong code, then the right one, and five wrong codes.
use std::time::Duration;

use paybind_tests::{
    browser::{Browser, DESKTOP, PHONE},
    Backend, Stack,
};

const ZHANG_SAN_ID: &str = "11010519491231002X";
const ZHANG_SAN_PHONE: &str = "+8613800138000";
const VISA: &str = "4242 4242 4242 4242";
/// Verified at binding, declined at every charge (INSUFFICIENT_FUNDS).
const DECLINING: &str = "4000 0000 0000 9995";
/// Refused by its issuer at binding (recorded DO_NOT_HONOR).
const REFUSED: &str = "4000 0000 0000 0002";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presentation {
    Redirect,
    Embedded,
    Popup,
}

impl Presentation {
    fn value(self) -> &'static str {
        match self {
            Self::Redirect => "redirect",
            Self::Embedded => "embedded",
            Self::Popup => "popup",
        }
    }
}

/// One shopper's browser on a running stack.
struct Shopper<'a> {
    b: Browser,
    stack: &'a Stack,
    shop: String,
    presentation: Presentation,
    /// The storefront's window (the popup is another).
    main_window: Option<fantoccini::wd::WindowHandle>,
}

impl<'a> Shopper<'a> {
    async fn new(
        stack: &'a Stack,
        test: &str,
        presentation: Presentation,
    ) -> anyhow::Result<Option<Self>> {
        Self::in_window(stack, test, presentation, DESKTOP).await
    }

    async fn in_window(
        stack: &'a Stack,
        test: &str,
        presentation: Presentation,
        size: (u32, u32),
    ) -> anyhow::Result<Option<Self>> {
        let Some(b) = Browser::open(test, size).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            b,
            shop: stack.storefront()?,
            stack,
            presentation,
            main_window: None,
        }))
    }

    /// Signs up and picks the presentation on the account page.
    async fn sign_up(&self, username: &str) -> anyhow::Result<()> {
        let b = &self.b;
        b.goto(&format!("{}/signup", self.shop)).await?;
        b.fill("#username", username).await?;
        b.fill("#password", "correct horse battery").await?;
        b.fill("#name", "Zhang San").await?;
        b.fill("#phone", "13800138000").await?;
        b.submit("#signup-form button[type=submit]").await?;
        b.goto(&format!("{}/account", self.shop)).await?;
        b.click(&format!("#presentation-{}", self.presentation.value()))
            .await?;
        b.submit("#presentation-form button[type=submit]").await?;
        b.wait_for("#presentation-form").await?;
        Ok(())
    }

    /// After the shop sent the browser to the binding page: reaches the
    /// page itself (the frame, the popup, or this window).
    async fn enter_page(&mut self) -> anyhow::Result<()> {
        let b = &self.b;
        match self.presentation {
            Presentation::Redirect => {}
            Presentation::Embedded => {
                b.wait_for("#payment-frame").await?;
                b.client.enter_frame(0).await?;
            }
            Presentation::Popup => {
                let before = b.client.windows().await?;
                self.main_window = Some(b.client.window().await?);
                b.click("#open-popup").await?;
                let before = &before;
                b.until("the popup opens", || async move {
                    Ok(b.client.windows().await?.len() > before.len())
                })
                .await?;
                let popup = b
                    .client
                    .windows()
                    .await?
                    .into_iter()
                    .find(|w| !before.contains(w))
                    .ok_or_else(|| anyhow::anyhow!("no popup"))?;
                b.client.switch_to_window(popup).await?;
            }
        }
        b.wait_for("#details-form, #code-form").await?;
        assert!(
            b.document_url().await?.starts_with(&self.stack.pages()),
            "the card is entered on payment-svc's page"
        );
        Ok(())
    }

    /// Fills the details form as Zhang San with `card`, and sends it.
    async fn enter_card(&self, card: &str) -> anyhow::Result<()> {
        self.b.fill_details_as_zhang_san(card).await?;
        self.b.submit("#submit-details").await
    }

    fn last_code(&self) -> anyhow::Result<String> {
        self.stack
            .outbox()
            .last_code_to(ZHANG_SAN_PHONE)
            .ok_or_else(|| anyhow::anyhow!("no code sent"))
    }

    /// The page's result step, where it stays long enough to be read: an
    /// embedded page hands back to the shop at once (its frame is gone by
    /// the time one could look), a popup after a moment.
    async fn see_result(&self, css: &str) -> anyhow::Result<Option<String>> {
        if self.presentation == Presentation::Embedded {
            return Ok(None);
        }
        Ok(Some(self.b.text(css).await?))
    }

    async fn enter_code(&self, code: &str) -> anyhow::Result<()> {
        self.b.fill("#code", code).await?;
        self.b.submit("#submit-code").await
    }

    /// The page's last step: back to the shop (by the button, or on its
    /// own by postMessage), then waits for the shop's page `css`.
    async fn back_to_shop(&mut self, css: &str) -> anyhow::Result<()> {
        let b = &self.b;
        match self.presentation {
            Presentation::Redirect => {
                b.submit("#back-to-merchant").await?;
            }
            Presentation::Embedded => {
                b.client.enter_parent_frame().await?;
            }
            Presentation::Popup => {
                // The popup tells its opener and closes itself.
                let main = self
                    .main_window
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("no main window"))?;
                b.until("the popup closes itself", || async {
                    Ok(b.client.windows().await?.len() == 1)
                })
                .await?;
                b.client.switch_to_window(main).await?;
            }
        }
        b.wait_for(css).await?;
        assert!(
            b.current_url().await?.starts_with(&self.shop),
            "back at the shop"
        );
        Ok(())
    }

    /// Binds `card` from the account page, through the whole page.
    async fn bind_from_account(&mut self, card: &str) -> anyhow::Result<()> {
        self.b.goto(&format!("{}/account", self.shop)).await?;
        self.b
            .submit(&format!(
                "#bind-card button[value={}]",
                self.presentation.value()
            ))
            .await?;
        self.enter_page().await?;
        self.enter_card(card).await?;
        self.b.wait_for("#code").await?;
        self.enter_code(&self.last_code()?).await?;
        self.see_result("#result").await?;
        self.back_to_shop("#card-on-file").await
    }

    async fn buy(&self, item: &str) -> anyhow::Result<()> {
        self.b.goto(&format!("{}/", self.shop)).await?;
        self.b
            .submit(&format!("button[data-item=\"{item}\"]"))
            .await
    }

    /// No card number, ID number or CVV in any URL this browser loaded.
    async fn no_secret_in_urls(&self) -> anyhow::Result<()> {
        let windows = self.b.client.windows().await?;
        for w in windows {
            self.b.client.switch_to_window(w).await?;
            for url in self.b.visited_urls().await? {
                let squashed = url.replace(['+', ' ', '%'], "").replace("20", "");
                for secret in ["4242424242424242", "4000000000009995", ZHANG_SAN_ID] {
                    anyhow::ensure!(
                        !squashed.contains(secret),
                        "a secret in a visited URL: {url}"
                    );
                }
            }
        }
        Ok(())
    }
}

/// 1. Sign up, bind a card on the page, then buy: paid with no page and no code.
async fn bind_then_buy_with_no_authentication(
    stack: &Stack,
    p: Presentation,
) -> anyhow::Result<()> {
    let Some(mut s) = Shopper::new(stack, &format!("shop-{}-bind-then-buy", p.value()), p).await?
    else {
        return Ok(());
    };
    s.sign_up("zhang").await?;
    s.b.shot("signed-up").await?;
    s.bind_from_account(VISA).await?;
    let card = s.b.text("#card-on-file").await?;
    assert!(card.contains("4242"), "{card}");
    s.b.shot("card-on-file").await?;
    let codes = stack.outbox().messages().len();
    s.buy("jasmine-sampler").await?;
    let status = s.b.text("#order-status").await?;
    assert!(status.contains("Paid"), "{status}");
    assert!(
        s.b.exists("#paid-with-card-on-file").await?,
        "paid with the card on file"
    );
    assert_eq!(
        stack.outbox().messages().len(),
        codes,
        "no code for a payment with the card on file"
    );
    s.b.shot("paid-with-card-on-file").await?;
    assert_eq!(stack.acquirer.net_charged(), 1_999);
    // The demo's refund button: the whole order back, once.
    s.b.submit(".refund-button").await?;
    let refunded = s.b.text("#order-refunded").await?;
    assert!(refunded.contains("19.99"), "{refunded}");
    assert_eq!(
        stack.acquirer.net_charged(),
        0,
        "refunded at the card network"
    );
    s.b.client.refresh().await?;
    s.b.wait_for("#order-refunded").await?;
    assert!(
        !s.b.exists(".refund-button").await?,
        "nothing left to refund"
    );
    s.b.shot("refunded").await?;
    s.no_secret_in_urls().await?;
    s.b.close().await
}

/// 2. A new shopper buys without a binding: BindAndPay on the page.
async fn buy_without_a_card_binds_and_pays(stack: &Stack, p: Presentation) -> anyhow::Result<()> {
    let Some(mut s) = Shopper::new(stack, &format!("shop-{}-bind-and-pay", p.value()), p).await?
    else {
        return Ok(());
    };
    s.sign_up("li").await?;
    s.buy("tieguanyin").await?;
    s.enter_page().await?;
    let who = s.b.text(".who").await?;
    assert!(
        who.contains("Tea House") && who.contains("CNY"),
        "the page says who and how much: {who}"
    );
    s.b.shot("bind-and-pay-page").await?;
    s.enter_card(VISA).await?;
    s.b.wait_for("#code").await?;
    s.enter_code(&s.last_code()?).await?;
    if let Some(paid) = s.see_result("#paid-amount").await? {
        assert!(paid.contains("128.00 CNY"), "{paid}");
        s.b.shot("paid-on-the-page").await?;
    }
    s.back_to_shop("#order-status").await?;
    let status = s.b.text("#order-status").await?;
    assert!(status.contains("Paid"), "{status}");
    assert!(s.b.exists("#paid-with-new-card").await?);
    s.b.shot("order-paid").await?;
    s.b.goto(&format!("{}/account", s.shop)).await?;
    assert!(
        s.b.text("#card-on-file").await?.contains("4242"),
        "the card is on file"
    );
    s.no_secret_in_urls().await?;
    s.b.close().await
}

/// 3. A declined card: a clear message, no binding, no charge; then a card that works.
async fn a_declined_card_then_one_that_works(stack: &Stack, p: Presentation) -> anyhow::Result<()> {
    let Some(mut s) = Shopper::new(stack, &format!("shop-{}-declined", p.value()), p).await? else {
        return Ok(());
    };
    s.sign_up("wang").await?;
    s.buy("tieguanyin").await?;
    s.enter_page().await?;
    // Refused by its issuer at once.
    s.enter_card(REFUSED).await?;
    let notice = s.b.text("#notice").await?;
    assert!(notice.contains("could not verify"), "{notice}");
    s.b.shot("card-not-verified").await?;
    // Verified, then declined at the charge.
    s.enter_card(DECLINING).await?;
    s.b.wait_for("#code").await?;
    s.enter_code(&s.last_code()?).await?;
    let notice = s.b.text("#notice").await?;
    assert!(notice.contains("declined"), "{notice}");
    s.b.shot("card-declined").await?;
    assert_eq!(stack.acquirer.approved_charges(), 0, "nothing charged");
    // The last attempt: a card that works.
    s.enter_card(VISA).await?;
    s.b.wait_for("#code").await?;
    s.enter_code(&s.last_code()?).await?;
    s.see_result("#paid-amount").await?;
    s.back_to_shop("#order-status").await?;
    let status = s.b.text("#order-status").await?;
    assert!(status.contains("Paid"), "{status}");
    s.b.close().await
}

/// 4. A wrong code, then the right one; five wrong codes end the session.
async fn wrong_codes(stack: &Stack, p: Presentation) -> anyhow::Result<()> {
    let Some(mut s) = Shopper::new(stack, &format!("shop-{}-wrong-codes", p.value()), p).await?
    else {
        return Ok(());
    };
    s.sign_up("zhao").await?;
    s.b.goto(&format!("{}/account", s.shop)).await?;
    s.b.submit(&format!("#bind-card button[value={}]", p.value()))
        .await?;
    s.enter_page().await?;
    s.enter_card(VISA).await?;
    s.b.wait_for("#code").await?;
    let right = s.last_code()?;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    s.enter_code(wrong).await?;
    let notice = s.b.text("#notice").await?;
    assert!(
        notice.contains("not right") && notice.contains('4'),
        "{notice}"
    );
    s.b.shot("wrong-code").await?;
    s.enter_code(&right).await?;
    s.see_result("#result").await?;
    s.back_to_shop("#card-on-file").await?;

    // Another shopper's five wrong codes.
    s.b.submit("#remove-card").await?;
    s.b.submit(&format!("#bind-card button[value={}]", p.value()))
        .await?;
    s.enter_page().await?;
    s.enter_card(VISA).await?;
    s.b.wait_for("#code").await?;
    let right = s.last_code()?;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        s.enter_code(wrong).await?;
        s.b.wait_for("#notice").await?;
    }
    s.enter_code(wrong).await?;
    match p {
        // The page says so, and offers the way back.
        Presentation::Redirect => {
            let title = s.b.text("#closed-title").await?;
            assert!(title.contains("ended"), "{title}");
            s.b.shot("five-wrong-codes").await?;
            s.back_to_shop("#flash").await?;
        }
        // The page says so and tells the shop, which shows it.
        Presentation::Embedded | Presentation::Popup => {
            if let Some(title) = s.see_result("#closed-title").await? {
                assert!(title.contains("ended"), "{title}");
            }
            s.back_to_shop("#flash").await?;
        }
    }
    let flash = s.b.text("#flash").await?;
    assert!(
        !flash.is_empty(),
        "the shop says the binding did not happen"
    );
    s.b.shot("shop-after-five-wrong-codes").await?;
    s.b.goto(&format!("{}/account", s.shop)).await?;
    assert!(!s.b.exists("#card-on-file").await?, "no card on file");
    s.b.close().await
}

/// A message from a window that is not the payment page changes nothing.
async fn a_forged_message_changes_nothing(stack: &Stack, _p: Presentation) -> anyhow::Result<()> {
    let Some(s) = Shopper::new(stack, "shop-forged-message", Presentation::Embedded).await? else {
        return Ok(());
    };
    s.sign_up("sun").await?;
    s.buy("tieguanyin").await?;
    let frame = s.b.wait_for("#payment-frame").await?;
    let src = frame.attr("src").await?.unwrap_or_default();
    let session_id = src.rsplit('/').next().unwrap_or_default().to_owned();
    let here = s.b.current_url().await?;
    // From the shop's own window (not the page's origin, not its frame).
    s.b.client
        .execute(
            "window.postMessage({source: 'paybind', type: 'done', session_id: arguments[0], status: 'completed'}, '*');",
            vec![serde_json::json!(session_id)],
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(s.b.current_url().await?, here, "the shop did not act on it");
    s.b.close().await
}

/// A blocked popup falls back to the redirect.
async fn a_blocked_popup_falls_back_to_the_redirect(
    stack: &Stack,
    _p: Presentation,
) -> anyhow::Result<()> {
    let Some(s) = Shopper::new(stack, "shop-popup-blocked", Presentation::Popup).await? else {
        return Ok(());
    };
    s.sign_up("qian").await?;
    s.buy("tieguanyin").await?;
    s.b.wait_for("#open-popup").await?;
    // What a popup blocker does: window.open gives no window.
    s.b.client
        .execute("window.open = function () { return null; };", vec![])
        .await?;
    s.b.submit("#open-popup").await?;
    s.b.wait_for("#details-form").await?;
    assert!(
        s.b.current_url().await?.starts_with(&stack.pages()),
        "the page, in this window"
    );
    s.enter_card(VISA).await?;
    s.b.wait_for("#code").await?;
    s.enter_code(&s.last_code()?).await?;
    s.b.wait_for("#result").await?;
    // No opener to tell: the way back is the redirect's.
    s.b.submit("#back-to-merchant").await?;
    assert!(s.b.text("#order-status").await?.contains("Paid"));
    s.b.close().await
}

/// The shop and the page on a 360 px phone, for the README's pictures.
async fn on_a_phone(stack: &Stack, _p: Presentation) -> anyhow::Result<()> {
    let Some(s) = Shopper::in_window(stack, "shop-phone", Presentation::Redirect, PHONE).await?
    else {
        return Ok(());
    };
    s.sign_up("zhou").await?;
    s.buy("tieguanyin").await?;
    s.b.wait_for("#details-form").await?;
    let overflow =
        s.b.client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await?;
    assert_eq!(
        overflow,
        serde_json::json!(true),
        "nothing wider than the phone"
    );
    s.b.shot("phone-page").await?;
    let page = s.b.current_url().await?;
    let page = page.split('?').next().unwrap_or_default();
    s.b.goto(&format!("{page}?lang=zh")).await?;
    assert!(
        s.b.text("h1").await?.contains("付款"),
        "the page in Chinese"
    );
    s.b.shot("phone-page-zh").await?;
    s.b.goto(&format!("{}/", s.shop)).await?;
    s.b.shot("phone-shop").await?;
    s.b.close().await
}

/// A scenario in one presentation, on a running stack.
type Scenario = for<'a> fn(
    &'a Stack,
    Presentation,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>,
>;

async fn run(backend: Backend, p: Presentation, scenario: Scenario) -> anyhow::Result<()> {
    let Some(stack) = Stack::start_with_storefront(backend, |_| {}).await? else {
        return Ok(());
    };
    let result = scenario(&stack, p).await;
    stack.stop().await?;
    result
}

macro_rules! storefront_tests {
    ($($name:ident: $scenario:ident, $p:ident;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    run(Backend::Sqlite, Presentation::$p, |s, p| Box::pin($scenario(s, p))).await
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    run(Backend::Postgres, Presentation::$p, |s, p| Box::pin($scenario(s, p))).await
                }
            )*
        }
    };
}

storefront_tests! {
    redirect_bind_then_buy: bind_then_buy_with_no_authentication, Redirect;
    embedded_bind_then_buy: bind_then_buy_with_no_authentication, Embedded;
    popup_bind_then_buy: bind_then_buy_with_no_authentication, Popup;
    redirect_bind_and_pay: buy_without_a_card_binds_and_pays, Redirect;
    embedded_bind_and_pay: buy_without_a_card_binds_and_pays, Embedded;
    popup_bind_and_pay: buy_without_a_card_binds_and_pays, Popup;
    redirect_declined: a_declined_card_then_one_that_works, Redirect;
    embedded_declined: a_declined_card_then_one_that_works, Embedded;
    popup_declined: a_declined_card_then_one_that_works, Popup;
    redirect_wrong_codes: wrong_codes, Redirect;
    embedded_wrong_codes: wrong_codes, Embedded;
    popup_wrong_codes: wrong_codes, Popup;
    forged_message: a_forged_message_changes_nothing, Embedded;
    blocked_popup: a_blocked_popup_falls_back_to_the_redirect, Popup;
    phone: on_a_phone, Redirect;
}

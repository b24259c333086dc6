//! The page's two languages: English and Chinese, chosen by the `lang`
//! parameter (the switch on every page) or else by `Accept-Language`.
use axum::http::{header::ACCEPT_LANGUAGE, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `lang` as given (`en`, `zh`), else the best of `Accept-Language`.
    pub fn choose(param: Option<&str>, headers: &HeaderMap) -> Self {
        if let Some(lang) = param.and_then(Self::from_tag) {
            return lang;
        }
        let accept = headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Self::from_accept_language(accept)
    }

    fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Self::Zh),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The supported language with the highest weight; English when none.
    pub fn from_accept_language(accept: &str) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Self::from_tag(tag) {
                if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Self::En, |(_, lang)| lang)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh",
        }
    }

    /// The `lang` attribute of the page.
    pub fn html_lang(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh-CN",
        }
    }

    /// The shopper's own page (`/my-bindings`).
    pub fn my_texts(self) -> &'static MyTexts {
        match self {
            Self::En => &MY_EN,
            Self::Zh => &MY_ZH,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Self::En => &EN,
            Self::Zh => &ZH,
        }
    }

    /// What to tell the shopper about one rejected field, by its request
    /// path and the API's reason (English keeps the API's own message).
    pub fn field_message(self, field: &str, api_message: &str) -> String {
        match self {
            // The API's message, as a sentence.
            Self::En => {
                let mut chars = api_message.chars();
                let mut sentence: String = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                if !sentence.ends_with('.') {
                    sentence.push('.');
                }
                sentence
            }
            Self::Zh => match field {
                "shopper.full_name" => "请填写银行预留的姓名（最多 100 个字符）。",
                "shopper.id_number" => {
                    "身份证号无效：请填写 18 位居民身份证号码，最后一位可以是 X。"
                }
                "shopper.phone" => "手机号无效：请填写 11 位中国大陆手机号。",
                "card.number" => "卡号无效：请检查银行卡号（12 至 19 位数字）。",
                "card.expiry" | "card.expiry_month" | "card.expiry_year" => {
                    "有效期无效：请按 MM/YY 填写，且卡片未过期。"
                }
                "card.cvv" => "安全码无效：请填写卡背面的 3 位数字（美国运通卡为 4 位）。",
                _ => "请检查此项。",
            }
            .to_owned(),
        }
    }
}

/// Every sentence of the page in one language.
pub struct Texts {
    pub title: &'static str,
    pub pay_title: &'static str,
    pub switch_to: &'static str,
    pub secure_note: &'static str,
    pub asking: &'static str,
    pub bind_purpose: &'static str,
    pub pay_purpose: &'static str,
    pub amount: &'static str,
    pub description: &'static str,
    pub personal: &'static str,
    pub full_name: &'static str,
    pub id_number: &'static str,
    pub phone: &'static str,
    pub card: &'static str,
    pub card_number: &'static str,
    pub expiry: &'static str,
    pub cvv: &'static str,
    pub continue_button: &'static str,
    pub attempts_left: &'static str,
    pub fix_fields: &'static str,
    pub code_title: &'static str,
    pub code_sent_to: &'static str,
    pub code: &'static str,
    pub code_expires_at: &'static str,
    pub tries_left: &'static str,
    pub verify_button: &'static str,
    pub pay_button: &'static str,
    pub resend_button: &'static str,
    pub resend_wait: &'static str,
    pub outbox_link: &'static str,
    pub bound_title: &'static str,
    pub bound_text: &'static str,
    pub paid_title: &'static str,
    pub paid_text: &'static str,
    pub back_to: &'static str,
    pub cancel_to: &'static str,
    pub closing: &'static str,
    pub not_verified: &'static str,
    pub declined: &'static str,
    pub wrong_code: &'static str,
    pub code_expired: &'static str,
    pub resend_throttled: &'static str,
    pub rate_limited: &'static str,
    pub unavailable: &'static str,
    pub in_progress: &'static str,
    pub expired_title: &'static str,
    pub expired_text: &'static str,
    pub failed_title: &'static str,
    pub failed_text: &'static str,
    pub unknown_title: &'static str,
    pub unknown_text: &'static str,
    pub disabled_title: &'static str,
    pub disabled_text: &'static str,
    pub forbidden_title: &'static str,
    pub forbidden_text: &'static str,
    pub reload: &'static str,
    pub outbox_title: &'static str,
    pub outbox_empty: &'static str,
}

pub static EN: Texts = Texts {
    title: "Bind your card",
    pay_title: "Pay with your card",
    switch_to: "中文",
    secure_note: "You are on the payment institution's secure page. The merchant never sees your card details.",
    asking: "Asked by",
    bind_purpose: "wants to keep your card on file, so that you pay there without entering it again.",
    pay_purpose: "asks you to pay with your card, and to keep it on file for next time.",
    amount: "Amount",
    description: "For",
    personal: "Your details, as your bank has them",
    full_name: "Full name",
    id_number: "ID card number",
    phone: "Mobile number",
    card: "Your card",
    card_number: "Card number",
    expiry: "Expiry (MM/YY)",
    cvv: "Security code (CVV)",
    continue_button: "Continue",
    attempts_left: "Cards you can still try:",
    fix_fields: "Please correct the fields marked below.",
    code_title: "Enter your code",
    code_sent_to: "We sent a 6-digit code by SMS to the phone your bank has on file:",
    code: "6-digit code",
    code_expires_at: "The code is valid until",
    tries_left: "tries left",
    verify_button: "Verify and bind my card",
    pay_button: "Verify and pay",
    resend_button: "Send a new code",
    resend_wait: "You can ask for a new code in",
    outbox_link: "Development: see the codes sent (SMS outbox)",
    bound_title: "Your card is bound",
    bound_text: "From now on you can pay at this merchant without entering your card or a code again.",
    paid_title: "Paid",
    paid_text: "Your payment succeeded, and your card is on file at this merchant.",
    back_to: "Back to",
    cancel_to: "Cancel and go back to",
    closing: "This window closes itself.",
    not_verified: "Your bank could not verify this card with these details. Check the card, and the name, ID number and mobile number your bank has, or use another card.",
    declined: "Your card was declined. Use another card.",
    wrong_code: "That code is not right.",
    code_expired: "The code has expired. Ask for a new one.",
    resend_throttled: "A code was sent a moment ago. Wait a little before asking for another.",
    rate_limited: "Too many attempts. Wait a little and try again.",
    unavailable: "The bank or the SMS service did not answer. Try again in a moment.",
    in_progress: "This step is already being processed. Reload the page in a moment.",
    expired_title: "This page has expired",
    expired_text: "For your security a binding page is valid for a limited time. Go back to the merchant and start again.",
    failed_title: "This binding has ended",
    failed_text: "There were too many unsuccessful attempts, so this binding was stopped. Nothing was charged. Go back to the merchant to start again.",
    unknown_title: "Page not found",
    unknown_text: "There is no binding page at this address. Go back to the merchant and start again.",
    disabled_title: "Not available",
    disabled_text: "This merchant cannot take card bindings at the moment.",
    forbidden_title: "This form can no longer be sent",
    forbidden_text: "The form did not come from this page, or it has been sent already. Reload the page to continue where you are.",
    reload: "Reload the page",
    outbox_title: "SMS outbox (development only)",
    outbox_empty: "No message sent yet.",
};

pub static ZH: Texts = Texts {
    title: "绑定银行卡",
    pay_title: "银行卡付款",
    switch_to: "English",
    secure_note: "这是支付机构的安全页面，商户不会看到您的银行卡信息。",
    asking: "发起方",
    bind_purpose: "希望绑定您的银行卡，之后在该商户支付无需再次输入。",
    pay_purpose: "请您用银行卡付款，并绑定此卡以便下次支付。",
    amount: "金额",
    description: "用途",
    personal: "您的个人信息（须与银行预留一致）",
    full_name: "姓名",
    id_number: "身份证号",
    phone: "手机号",
    card: "银行卡",
    card_number: "卡号",
    expiry: "有效期（MM/YY）",
    cvv: "安全码（CVV）",
    continue_button: "下一步",
    attempts_left: "还可尝试的银行卡次数：",
    fix_fields: "请更正下面标出的内容。",
    code_title: "输入验证码",
    code_sent_to: "我们已向银行预留手机号发送 6 位短信验证码：",
    code: "6 位验证码",
    code_expires_at: "验证码有效期至",
    tries_left: "次输入机会",
    verify_button: "验证并绑卡",
    pay_button: "验证并付款",
    resend_button: "重新发送验证码",
    resend_wait: "可重新发送验证码的剩余时间：",
    outbox_link: "开发环境：查看已发送的验证码（短信发件箱）",
    bound_title: "绑卡成功",
    bound_text: "今后在该商户付款无需再次输入银行卡或验证码。",
    paid_title: "付款成功",
    paid_text: "付款已完成，此卡已绑定到该商户。",
    back_to: "返回",
    cancel_to: "取消并返回",
    closing: "此窗口将自动关闭。",
    not_verified:
        "银行无法用这些信息验证此卡。请检查卡片以及银行预留的姓名、身份证号和手机号，或换一张卡。",
    declined: "银行卡被拒绝，请换一张卡。",
    wrong_code: "验证码不正确。",
    code_expired: "验证码已过期，请重新获取。",
    resend_throttled: "验证码刚刚发送，请稍候再重新获取。",
    rate_limited: "尝试次数过多，请稍后再试。",
    unavailable: "银行或短信服务暂时没有响应，请稍后再试。",
    in_progress: "此步骤正在处理中，请稍后刷新页面。",
    expired_title: "页面已过期",
    expired_text: "为了您的安全，绑卡页面仅在一段时间内有效。请返回商户重新开始。",
    failed_title: "本次绑卡已结束",
    failed_text: "失败次数过多，本次绑卡已终止，未扣任何款项。请返回商户重新开始。",
    unknown_title: "页面不存在",
    unknown_text: "此地址没有绑卡页面。请返回商户重新开始。",
    disabled_title: "暂不可用",
    disabled_text: "该商户目前无法绑定银行卡。",
    forbidden_title: "此表单无法提交",
    forbidden_text: "表单不是来自本页面，或已经提交过。请刷新页面继续。",
    reload: "刷新页面",
    outbox_title: "短信发件箱（仅开发环境）",
    outbox_empty: "尚未发送任何短信。",
};

/// The shopper's own page, in one language.
pub struct MyTexts {
    pub title: &'static str,
    pub intro: &'static str,
    pub phone: &'static str,
    pub send_code: &'static str,
    pub bad_phone: &'static str,
    pub code_title: &'static str,
    pub other_number: &'static str,
    pub list_title: &'static str,
    pub signed_in_as: &'static str,
    pub list_intro: &'static str,
    pub none: &'static str,
    pub expires: &'static str,
    pub limits: &'static str,
    pub per_payment: &'static str,
    pub per_day: &'static str,
    pub since: &'static str,
    pub end_button: &'static str,
    pub sign_out: &'static str,
    pub wrong_code: &'static str,
    pub code_expired: &'static str,
    pub ended: &'static str,
    pub not_yours: &'static str,
    pub signed_out: &'static str,
    pub too_many: &'static str,
    pub sms_unavailable: &'static str,
    pub unavailable: &'static str,
}

pub static MY_EN: MyTexts = MyTexts {
    title: "Your bound cards",
    intro: "See the shops that can charge your card without a code, and end any of them. We send a one-time code to your phone to make sure it is you.",
    phone: "Mobile phone number",
    send_code: "Send me a code",
    bad_phone: "Enter a mainland China mobile number: 11 digits starting with 1 (for example 13800138000).",
    code_title: "Enter the code",
    other_number: "Use another number",
    list_title: "Your bound cards",
    signed_in_as: "Cards bound under",
    list_intro: "These shops can charge your card without a code, within the limits shown. Ending a binding stops that at once; the shop is told.",
    none: "No shop has a card bound under this number.",
    expires: "Expires",
    limits: "Without a code",
    per_payment: "per payment",
    per_day: "per day",
    since: "Bound since",
    end_button: "End the binding with",
    sign_out: "Sign out",
    wrong_code: "That code is not right. Check the SMS and try again.",
    code_expired: "That code has expired or was tried too often. Ask for a new one.",
    ended: "The binding has ended: that shop can no longer charge this card, and it has been told.",
    not_yours: "That binding is not one of yours, or it has ended already.",
    signed_out: "You are signed out.",
    too_many: "Too many codes for this number lately. Wait a while and try again.",
    sms_unavailable: "We could not send the SMS just now. Try again in a minute.",
    unavailable: "This page is not available just now. Try again in a minute.",
};

pub static MY_ZH: MyTexts = MyTexts {
    title: "我的绑定卡",
    intro:
        "查看可以免验证码扣款的商户，并可随时解除绑定。我们会向您的手机发送验证码以确认是您本人。",
    phone: "手机号码",
    send_code: "发送验证码",
    bad_phone: "请输入中国大陆手机号码：以 1 开头的 11 位数字（例如 13800138000）。",
    code_title: "输入验证码",
    other_number: "使用其他号码",
    list_title: "我的绑定卡",
    signed_in_as: "以下号码下的绑定：",
    list_intro: "这些商户可以在所示限额内免验证码扣款。解除绑定后立即生效，并会通知商户。",
    none: "此号码下没有任何商户绑定的卡。",
    expires: "有效期至",
    limits: "免验证码限额",
    per_payment: "每笔",
    per_day: "每日",
    since: "绑定日期",
    end_button: "解除绑定：",
    sign_out: "退出",
    wrong_code: "验证码不正确，请核对短信后重试。",
    code_expired: "验证码已过期或尝试次数过多，请重新获取。",
    ended: "已解除绑定：该商户不能再从此卡扣款，并已收到通知。",
    not_yours: "该绑定不属于您，或已经解除。",
    signed_out: "您已退出。",
    too_many: "此号码近期获取验证码次数过多，请稍后再试。",
    sms_unavailable: "短信暂时无法发送，请一分钟后再试。",
    unavailable: "页面暂时不可用，请一分钟后再试。",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_heaviest_supported_language() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(Lang::from_accept_language("en-US,zh;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr,zh-TW;q=0.3"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("de"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0,en;q=0.1"), Lang::En);
    }

    #[test]
    fn the_switch_wins_over_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_LANGUAGE, "en".parse().expect("header"));
        assert_eq!(Lang::choose(Some("zh"), &headers), Lang::Zh);
        assert_eq!(Lang::choose(Some("xx"), &headers), Lang::En);
        assert_eq!(Lang::choose(None, &headers), Lang::En);
    }

    #[test]
    fn field_messages_read_as_sentences() {
        assert_eq!(
            Lang::En.field_message("card.number", "card number is not valid"),
            "Card number is not valid."
        );
        assert!(Lang::Zh.field_message("card.number", "x").contains("卡号"));
    }
}

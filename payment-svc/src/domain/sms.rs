//! Sending one-time codes to the shopper's phone.
//!
//! Production needs a real SMS gateway behind [`SmsSender`]. Development uses
//! [`DevOutbox`]: messages are kept in memory and appended as JSON lines to a
//! file (`dev-data/sms-outbox.jsonl` in the dev stack), so a developer can
//! read the code with `tail -1`. A production config refuses the dev outbox.
use std::{io::Write, path::PathBuf, sync::Mutex};

use async_trait::async_trait;
use serde::Serialize;

use paybind_shared::{clock::now_ms, person::Phone};

#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send(&self, to: &Phone, text: &str) -> anyhow::Result<()>;
}

/// One message in the development outbox.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxMessage {
    pub to: String,
    pub text: String,
    pub sent_at_ms: i64,
}

#[derive(Default)]
pub struct DevOutbox {
    messages: Mutex<Vec<OutboxMessage>>,
    file: Option<PathBuf>,
}

impl DevOutbox {
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            messages: Mutex::default(),
            file,
        }
    }

    pub fn messages(&self) -> Vec<OutboxMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The code in the newest message to `phone` (E.164, e.g. "+8613800138000").
    pub fn last_code_to(&self, phone: &str) -> Option<String> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m.to == phone)
            .and_then(|m| extract_code(&m.text))
    }
}

/// The first run of exactly six digits in a message.
pub fn extract_code(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

#[async_trait]
impl SmsSender for DevOutbox {
    async fn send(&self, to: &Phone, text: &str) -> anyhow::Result<()> {
        let message = OutboxMessage {
            to: to.e164().to_owned(),
            text: text.to_owned(),
            sent_at_ms: now_ms(),
        };
        if let Some(path) = &self.file {
            let mut line = serde_json::to_vec(&message)?;
            line.push(b'\n');
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
                .write_all(&line)?;
        }
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        Ok(())
    }
}

/// No SMS gateway configured: every send fails, so no binding can be
/// verified. The honest default until a gateway is integrated.
pub struct NoGateway;

#[async_trait]
impl SmsSender for NoGateway {
    async fn send(&self, _to: &Phone, _text: &str) -> anyhow::Result<()> {
        anyhow::bail!("no SMS gateway is configured")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_keeps_messages_and_writes_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("outbox.jsonl");
        let outbox = DevOutbox::new(Some(file.clone()));
        let phone = Phone::parse("13800138000").expect("phone");
        outbox
            .send(&phone, "paybind code 123456, valid 5 minutes")
            .await
            .expect("send");
        outbox
            .send(&phone, "paybind code 654321, valid 5 minutes")
            .await
            .expect("send");
        assert_eq!(
            outbox.last_code_to("+8613800138000").as_deref(),
            Some("654321")
        );
        assert_eq!(outbox.last_code_to("+8613900139000"), None);
        let text = std::fs::read_to_string(file).expect("file");
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("654321"));
    }
}

//! Binding tokens as a merchant sends them: any bytes must be refused or
//! name the binding whose token they exactly are.
#![no_main]

use base64::{engine::general_purpose::STANDARD, Engine};
use libfuzzer_sys::fuzz_target;
use paybind_shared::ids::{BindingToken, MerchantId, MerchantUserId};
use payment_svc::domain::{token::TokenCodec, vault::KeyedHasher};
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let codec = TokenCodec::new(
        KeyedHasher::new("fuzz", &SecretString::from(STANDARD.encode([7u8; 32])))
            .expect("a 32-byte key"),
    );
    let merchant = MerchantId::from_stored("m1".into());
    let user = MerchantUserId::from_stored("u1".into());
    let token = BindingToken::from_trusted(text.clone());
    if let Some(binding) = codec.binding_id_of(&token, &merchant, &user) {
        let again = codec
            .token_for(&merchant, &user, &binding)
            .expect("an id from a token makes a token");
        assert_eq!(again.expose(), text, "only the exact token is accepted");
    }
});

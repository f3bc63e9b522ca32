//! Standard Webhooks signatures: `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`.
//! rotor signs and never verifies, so no constant-time comparison is needed here.

use base64::{engine::general_purpose::STANDARD, Engine};
use ring::hmac;

use super::config::WebhookSecret;

/// The headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the message id, the same on every redelivery.
    pub id: String,
    /// `webhook-timestamp`: the attempt's time, in Unix seconds.
    pub timestamp: String,
    /// `webhook-signature`: one `v1,<base64>` per secret, space-separated.
    pub signature: String,
}

/// The `v1` signature of `body` under one secret.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.key());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The headers for one attempt: a signature per secret (several during rotation).
pub fn headers(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &str) -> SignedHeaders {
    SignedHeaders {
        id: id.to_owned(),
        timestamp: timestamp.to_string(),
        signature: secrets
            .iter()
            .map(|s| sign(s, id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and of its reference
    /// libraries' tests.
    #[test]
    fn the_specification_example_verifies() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let a = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = WebhookSecret::parse("whsec_c2Vjb25kLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ==").unwrap();
        let h = headers(&[a.clone(), b.clone()], "msg_1", 10, "{}");
        let parts: Vec<&str> = h.signature.split(' ').collect();
        assert_eq!(
            parts,
            [sign(&a, "msg_1", 10, "{}"), sign(&b, "msg_1", 10, "{}")]
        );
        assert_ne!(parts[0], parts[1]);
        assert_eq!(h.timestamp, "10");
    }
}

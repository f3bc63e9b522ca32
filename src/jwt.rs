//! Access tokens: signing, verification and the key ring behind them.
//!
//! With `HS256|HS384|HS512` (the default, as the original) tokens are signed with the
//! bytes of `SECRET_KEY` itself, so services that verified the original's tokens keep
//! working. With `EdDSA` or `ES256` rotor keeps a key ring in the database: private
//! keys sealed with AES-256-GCM under a key derived from `KEY_ENCRYPTION_KEY` (or
//! `SECRET_KEY`); the newest active key signs and puts its `kid` in the header, and
//! every key not yet pruned verifies and is published at
//! `/.well-known/jwks.json`.
//!
//! Verification accepts only the configured algorithm (so `none` and HS/asymmetric
//! confusion are rejected before any key is used) and checks every time claim against
//! rotor's clock rather than the system clock.

use std::{collections::HashMap, sync::RwLock};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::{
    aead, hkdf, hmac,
    rand::{SecureRandom, SystemRandom},
    signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    config::JwtAlgorithm,
    domain::claims::{AccessClaims, ACCESS_TYPE},
    storage::{Store, StoreError, StoredKey},
};

/// Why a presented access token was not accepted. Never shown to clients in detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenRejected {
    /// Not three base64url parts of JSON, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// An `alg` other than the configured one (`none` and HMAC/asymmetric confusion
    /// included).
    #[error("algorithm not accepted")]
    Algorithm,
    /// A `kid` the key ring does not hold.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// Before `nbf`/`iat`.
    #[error("not yet valid")]
    NotYetValid,
    /// The `type` claim is not `access`.
    #[error("wrong token type")]
    WrongType,
    /// `iss` differs from the required issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` differs from the configured audience.
    #[error("wrong audience")]
    Audience,
}

/// Why the key ring could not load, create or use a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the ring failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A stored key does not decrypt or parse (wrong `KEY_ENCRYPTION_KEY`?).
    #[error("key material: {0}")]
    Material(String),
    /// The ring holds no active key for the algorithm.
    #[error("no active signing key for {0}")]
    NoSigningKey(&'static str),
    /// The signer failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
}

struct Ring {
    /// `(kid, key)` of the key that signs; `kid` is `None` for HMAC secrets.
    signing: Option<(Option<String>, EncodingKey)>,
    /// HMAC algorithms: the secret's key schedule, computed once, which signs and
    /// verifies (jsonwebtoken recomputes it for every token), and the encoded header
    /// every token starts with.
    hmac: Option<Hmac>,
    /// Keyed by `kid`; the HMAC key is under `""`.
    verifying: HashMap<String, Verifier>,
    jwks: Value,
}

struct Hmac {
    key: hmac::Key,
    /// `base64url(JSON header)`, exactly as jsonwebtoken writes it.
    header: String,
}

impl Hmac {
    fn new(alg: Algorithm, secret: &[u8]) -> Self {
        let algorithm = match alg {
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        };
        let header = serde_json::to_vec(&Header::new(alg)).expect("BUG: a JWT header serializes");
        Self {
            key: hmac::Key::new(algorithm, secret),
            header: URL_SAFE_NO_PAD.encode(header),
        }
    }

    /// `header.claims.signature`: the bytes `jsonwebtoken::encode` writes.
    fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let json = serde_json::to_vec(claims).map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut token = String::with_capacity(self.header.len() + json.len() * 4 / 3 + 96);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        Ok(token)
    }
}

/// The claims of a presented token as they are checked: [`AccessClaims`] and `nbf`,
/// which, when present, must be an integer (`null` included, anything else is
/// malformed, as it always was).
#[derive(Deserialize)]
struct Presented {
    sub: String,
    #[serde(rename = "type")]
    token_type: String,
    token_version: i64,
    iat: i64,
    exp: i64,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<String>,
    #[serde(default, deserialize_with = "present_integer")]
    nbf: Option<i64>,
}

fn present_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    i64::deserialize(d).map(Some)
}

/// Issues and verifies access tokens.
pub struct AccessTokens {
    algorithm: JwtAlgorithm,
    jwt_alg: Algorithm,
    lifetime: Duration,
    issuer: Option<String>,
    require_issuer: bool,
    audience: Option<String>,
    sealing_key: aead::LessSafeKey,
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("algorithm", &self.algorithm)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn jwt_algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// Options for [`AccessTokens::new`].
#[derive(Debug, Clone)]
pub struct TokenOptions<'a> {
    /// The signing algorithm.
    pub algorithm: JwtAlgorithm,
    /// `SECRET_KEY`: the HMAC key, and the default key-sealing key.
    pub secret: &'a [u8],
    /// Seals private keys; defaults to `secret` when `None`.
    pub key_encryption_key: Option<&'a [u8]>,
    /// Access-token lifetime.
    pub lifetime: Duration,
    /// The `iss` stamped on tokens.
    pub issuer: Option<String>,
    /// Refuse tokens whose `iss` is not `issuer` (rotor: only when `JWT_ISSUER` is
    /// set; an issuer derived from `PUBLIC_URL` is stamped but not required, so the
    /// original's tokens, which have none, keep working).
    pub require_issuer: bool,
    /// The `aud` stamped on tokens and required on presented ones.
    pub audience: Option<String>,
}

impl AccessTokens {
    /// For HMAC algorithms the ring is ready at once; for asymmetric ones call
    /// [`AccessTokens::load`] (after `ensure_signing_key`) before issuing.
    pub fn new(opts: TokenOptions<'_>) -> Self {
        let jwt_alg = jwt_algorithm(opts.algorithm);
        let kek_salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"rotor key-encryption v1");
        let prk = kek_salt.extract(opts.key_encryption_key.unwrap_or(opts.secret));
        let mut kek = [0u8; 32];
        prk.expand(&[b"signing-key sealing"], &aead::AES_256_GCM)
            .and_then(|okm| okm.fill(&mut kek))
            .expect("BUG: HKDF output length matches AES-256");
        let sealing_key = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &kek).expect("BUG: 32-byte AES key"),
        );
        let ring = if opts.algorithm.is_symmetric() {
            let mut verifying = HashMap::new();
            verifying.insert(
                String::new(),
                Verifier {
                    algorithm: jwt_alg,
                    key: DecodingKey::from_secret(opts.secret),
                },
            );
            Ring {
                signing: Some((None, EncodingKey::from_secret(opts.secret))),
                hmac: Some(Hmac::new(jwt_alg, opts.secret)),
                verifying,
                jwks: json!({ "keys": [] }),
            }
        } else {
            Ring {
                signing: None,
                hmac: None,
                verifying: HashMap::new(),
                jwks: json!({ "keys": [] }),
            }
        };
        Self {
            algorithm: opts.algorithm,
            jwt_alg,
            lifetime: opts.lifetime,
            issuer: opts.issuer,
            require_issuer: opts.require_issuer,
            audience: opts.audience,
            sealing_key,
            ring: RwLock::new(ring),
        }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The configured lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs an access token for `user_id` in session `sid`.
    pub fn issue(
        &self,
        user_id: Uuid,
        token_version: i64,
        sid: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<String, KeyError> {
        let claims = AccessClaims {
            sub: user_id.to_string(),
            token_type: ACCESS_TYPE.to_owned(),
            token_version,
            iat: now.timestamp(),
            exp: (now + self.lifetime).timestamp(),
            sid: sid.map(|s| s.to_string()),
            jti: Some(Uuid::new_v4().simple().to_string()),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        if let Some(hmac) = &ring.hmac {
            return hmac.sign(&claims);
        }
        let (kid, key) = ring
            .signing
            .as_ref()
            .ok_or(KeyError::NoSigningKey(self.algorithm.as_str()))?;
        let mut header = Header::new(self.jwt_alg);
        header.kid = kid.clone();
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Checks signature (with the configured algorithm only), `type`, `exp`, `nbf`,
    /// and `iss`/`aud` when configured. The caller checks the user and session.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenRejected> {
        if token.len() > 8192 {
            return Err(TokenRejected::Malformed);
        }
        // `header.payload.signature`, split as jsonwebtoken splits it.
        let (message, signature) = token.rsplit_once('.').ok_or(TokenRejected::Malformed)?;
        let (encoded_header, payload) = message.rsplit_once('.').ok_or(TokenRejected::Malformed)?;
        // What `jsonwebtoken::decode_header` does, on the part already split off.
        let header: Header = URL_SAFE_NO_PAD
            .decode(encoded_header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenRejected::Malformed)?;
        if header.alg != self.jwt_alg {
            return Err(TokenRejected::Algorithm);
        }
        {
            let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
            let kid = if self.algorithm.is_symmetric() {
                ""
            } else {
                header.kid.as_deref().ok_or(TokenRejected::UnknownKey)?
            };
            let verifier = ring.verifying.get(kid).ok_or(TokenRejected::UnknownKey)?;
            if verifier.algorithm != header.alg {
                return Err(TokenRejected::Algorithm);
            }
            let valid = match &ring.hmac {
                // The MAC compared in constant time, as jsonwebtoken compares it (on
                // its base64 text; the canonical decoding is the same test).
                Some(hmac) => {
                    let tag = URL_SAFE_NO_PAD
                        .decode(signature)
                        .map_err(|_| TokenRejected::Malformed)?;
                    hmac::verify(&hmac.key, message.as_bytes(), &tag).is_ok()
                }
                None => jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    &verifier.key,
                    header.alg,
                )
                .map_err(|e| {
                    use jsonwebtoken::errors::ErrorKind;
                    match e.kind() {
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                            TokenRejected::Algorithm
                        }
                        _ => TokenRejected::Malformed,
                    }
                })?,
            };
            if !valid {
                return Err(TokenRejected::Signature);
            }
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenRejected::Malformed)?;
        let presented: Presented =
            serde_json::from_slice(&payload).map_err(|_| TokenRejected::Malformed)?;
        if presented.nbf.is_some_and(|nbf| nbf > now.timestamp()) {
            return Err(TokenRejected::NotYetValid);
        }
        let claims = AccessClaims {
            sub: presented.sub,
            token_type: presented.token_type,
            token_version: presented.token_version,
            iat: presented.iat,
            exp: presented.exp,
            sid: presented.sid,
            jti: presented.jti,
            iss: presented.iss,
            aud: presented.aud,
        };
        if claims.token_type != ACCESS_TYPE {
            return Err(TokenRejected::WrongType);
        }
        if claims.exp <= now.timestamp() {
            return Err(TokenRejected::Expired);
        }
        if claims.iat > now.timestamp() + 60 {
            return Err(TokenRejected::NotYetValid);
        }
        if self.require_issuer && claims.iss != self.issuer {
            return Err(TokenRejected::Issuer);
        }
        if self.audience.is_some() && claims.aud != self.audience {
            return Err(TokenRejected::Audience);
        }
        Ok(claims)
    }

    /// The public JWKS document (empty for HMAC algorithms: nothing public to share).
    pub fn jwks(&self) -> Value {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .jwks
            .clone()
    }

    /// Reloads the asymmetric key ring from the store: the newest unretired key of the
    /// configured algorithm signs; every stored key verifies. No-op for HMAC.
    pub async fn load(&self, store: &dyn Store) -> Result<(), KeyError> {
        if self.algorithm.is_symmetric() {
            return Ok(());
        }
        let keys = store.list_keys().await?;
        let mut signing = None;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        for k in &keys {
            let Some(alg) = k
                .algorithm
                .parse::<JwtAlgorithm>()
                .ok()
                .filter(|a| !a.is_symmetric())
            else {
                continue;
            };
            let (decoding, jwk) = public_parts(alg, &k.kid, &k.public_key)?;
            verifying.insert(
                k.kid.clone(),
                Verifier {
                    algorithm: jwt_algorithm(alg),
                    key: decoding,
                },
            );
            jwks.push(jwk);
            if signing.is_none() && alg == self.algorithm && k.retired_at.is_none() {
                let pkcs8 = self.unseal(&k.private_key_sealed)?;
                let enc = match alg {
                    JwtAlgorithm::EdDSA => EncodingKey::from_ed_der(&pkcs8),
                    _ => EncodingKey::from_ec_der(&pkcs8),
                };
                signing = Some((Some(k.kid.clone()), enc));
            }
        }
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        *ring = Ring {
            signing,
            hmac: None,
            verifying,
            jwks: json!({ "keys": jwks }),
        };
        Ok(())
    }

    /// Makes sure an active key of the configured algorithm exists (creating one on a
    /// first start), then loads the ring.
    pub async fn ensure_signing_key(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        if self.algorithm.is_symmetric() {
            return Ok(());
        }
        let have = store
            .list_keys()
            .await?
            .iter()
            .any(|k| k.algorithm == self.algorithm.as_str() && k.retired_at.is_none());
        if !have {
            self.generate_key(store, now).await?;
        }
        self.load(store).await
    }

    /// Adds a new signing key and retires the previous ones from signing (they keep
    /// verifying until pruned). Returns the new key id.
    pub async fn rotate_key(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<String, KeyError> {
        if self.algorithm.is_symmetric() {
            return Err(KeyError::Material(format!(
                "JWT_ALGORITHM={} uses SECRET_KEY; key rotation applies to EdDSA and ES256",
                self.algorithm.as_str()
            )));
        }
        let previous: Vec<String> = store
            .list_keys()
            .await?
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.kid)
            .collect();
        let kid = self.generate_key(store, now).await?;
        for old in previous {
            store.retire_key(&old, now).await?;
        }
        self.load(store).await?;
        Ok(kid)
    }

    /// Deletes keys retired long enough ago that every token they signed has expired.
    pub async fn prune(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, KeyError> {
        let removed = store
            .delete_keys_retired_before(now - self.lifetime)
            .await?;
        if !removed.is_empty() {
            self.load(store).await?;
        }
        Ok(removed)
    }

    async fn generate_key(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<String, KeyError> {
        let rng = SystemRandom::new();
        let material = |e: ring::error::Unspecified| KeyError::Material(e.to_string());
        let (pkcs8, public) = match self.algorithm {
            JwtAlgorithm::EdDSA => {
                let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(material)?;
                let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                    .map_err(|e| KeyError::Material(e.to_string()))?;
                (doc.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
            }
            _ => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(material)?;
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                        .map_err(|e| KeyError::Material(e.to_string()))?;
                (doc.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
            }
        };
        let kid = format!(
            "{}-{}",
            now.format("%Y%m%d"),
            &Uuid::new_v4().simple().to_string()[..12]
        );
        store
            .insert_key(&StoredKey {
                kid: kid.clone(),
                algorithm: self.algorithm.as_str().to_owned(),
                public_key: public,
                private_key_sealed: self.seal(&pkcs8)?,
                created_at: now,
                retired_at: None,
            })
            .await?;
        Ok(kid)
    }

    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|e| KeyError::Material(e.to_string()))?;
        let mut buf = plaintext.to_vec();
        self.sealing_key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::empty(),
                &mut buf,
            )
            .map_err(|e| KeyError::Material(e.to_string()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::Material("sealed key too short".into()));
        }
        let (nonce, rest) = sealed.split_at(12);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce)
            .map_err(|e| KeyError::Material(e.to_string()))?;
        let mut buf = rest.to_vec();
        let plain = self
            .sealing_key
            .open_in_place(nonce, aead::Aad::empty(), &mut buf)
            .map_err(|_| {
                KeyError::Material(
                    "cannot decrypt a stored signing key: KEY_ENCRYPTION_KEY/SECRET_KEY changed?"
                        .into(),
                )
            })?;
        Ok(plain.to_vec())
    }
}

fn public_parts(
    alg: JwtAlgorithm,
    kid: &str,
    public: &[u8],
) -> Result<(DecodingKey, Value), KeyError> {
    match alg {
        JwtAlgorithm::EdDSA => Ok((
            DecodingKey::from_ed_der(public),
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public),
                   "kid": kid, "alg": "EdDSA", "use": "sig"}),
        )),
        JwtAlgorithm::ES256 => {
            if public.len() != 65 || public[0] != 4 {
                return Err(KeyError::Material(format!(
                    "key {kid}: not an uncompressed P-256 point"
                )));
            }
            Ok((
                DecodingKey::from_ec_der(public),
                json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
                       "y": URL_SAFE_NO_PAD.encode(&public[33..]), "kid": kid, "alg": "ES256", "use": "sig"}),
            ))
        }
        _ => Err(KeyError::Material(format!(
            "key {kid}: not an asymmetric algorithm"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(secret: &[u8]) -> AccessTokens {
        AccessTokens::new(TokenOptions {
            algorithm: JwtAlgorithm::HS256,
            secret,
            key_encryption_key: None,
            lifetime: Duration::minutes(15),
            issuer: None,
            require_issuer: false,
            audience: None,
        })
    }

    #[test]
    fn issues_the_originals_claims_and_verifies_them() {
        let t = hs(b"0123456789abcdef0123456789abcdef");
        let now = Utc::now();
        let user = Uuid::now_v7();
        let sid = Uuid::now_v7();
        let jwt = t.issue(user, 3, Some(sid), now).unwrap();
        let c = t.verify(&jwt, now).unwrap();
        assert_eq!(c.sub, user.to_string());
        assert_eq!(c.token_type, "access");
        assert_eq!(c.token_version, 3);
        assert_eq!(c.exp - c.iat, 15 * 60);
        assert_eq!(c.sid, Some(sid.to_string()));
        assert!(c.jti.is_some());
        assert_eq!(
            t.verify(&jwt, now + Duration::minutes(15)),
            Err(TokenRejected::Expired)
        );
    }

    #[test]
    fn rejects_other_secrets_algorithms_and_none() {
        let t = hs(b"0123456789abcdef0123456789abcdef");
        let other = hs(b"another-secret-another-secret-xx");
        let now = Utc::now();
        let jwt = other.issue(Uuid::now_v7(), 0, None, now).unwrap();
        assert_eq!(t.verify(&jwt, now), Err(TokenRejected::Signature));
        // alg=none with the same claims.
        let body = jwt.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(t.verify(&format!("{none_header}.{body}."), now).is_err());
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        assert_eq!(
            t.verify(&format!("{hs512}.{body}.sig"), now),
            Err(TokenRejected::Algorithm)
        );
        assert_eq!(t.verify("garbage", now), Err(TokenRejected::Malformed));
    }

    #[test]
    fn hmac_tokens_are_the_bytes_jsonwebtoken_writes() {
        for (alg, jalg) in [
            (JwtAlgorithm::HS256, Algorithm::HS256),
            (JwtAlgorithm::HS384, Algorithm::HS384),
            (JwtAlgorithm::HS512, Algorithm::HS512),
        ] {
            let secret = b"0123456789abcdef0123456789abcdef";
            let t = AccessTokens::new(TokenOptions {
                algorithm: alg,
                secret,
                key_encryption_key: None,
                lifetime: Duration::minutes(15),
                issuer: Some("https://rotor.test".into()),
                require_issuer: true,
                audience: Some("api".into()),
            });
            let now = Utc::now();
            let jwt = t
                .issue(Uuid::now_v7(), 2, Some(Uuid::now_v7()), now)
                .unwrap();
            let claims = t.verify(&jwt, now).unwrap();
            let reference = jsonwebtoken::encode(
                &Header::new(jalg),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            assert_eq!(jwt, reference);
        }
    }

    #[test]
    fn nbf_must_be_an_integer_when_present_and_not_in_the_future() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let t = hs(secret);
        let now = Utc::now();
        let sign = |extra: Value| {
            let mut claims = json!({"sub": Uuid::now_v7().to_string(), "type": "access",
                "token_version": 0, "iat": now.timestamp(), "exp": now.timestamp() + 60});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        assert!(t.verify(&sign(json!({})), now).is_ok());
        assert!(t
            .verify(&sign(json!({"nbf": now.timestamp()})), now)
            .is_ok());
        assert_eq!(
            t.verify(&sign(json!({"nbf": now.timestamp() + 5})), now),
            Err(TokenRejected::NotYetValid)
        );
        for bad in [json!(null), json!(1.5), json!("1"), json!(u64::MAX)] {
            assert_eq!(
                t.verify(&sign(json!({ "nbf": bad })), now),
                Err(TokenRejected::Malformed)
            );
        }
        // A tampered signature, and one that is not base64.
        let good = sign(json!({}));
        let (msg, sig) = good.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        assert_eq!(
            t.verify(&format!("{msg}.{flipped}{}", &sig[1..]), now),
            Err(TokenRejected::Signature)
        );
        assert_eq!(
            t.verify(&format!("{msg}.!!!"), now),
            Err(TokenRejected::Malformed)
        );
    }
}

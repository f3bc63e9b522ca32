//! Signing keys (docs/behaviour.md, "Tokens"): EdDSA and ES256 key rings in the database, published at
//! `/.well-known/jwks.json`, verified by a stock JWT library from that document alone;
//! private keys sealed at rest; rotation that logs nobody out and pruning that retires
//! old keys; and algorithm confusion answered 401, never 500.

use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::Duration;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::{header, StatusCode};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use rotor::{
    clock::{Clock, ManualClock},
    jwt::TokenRejected,
    storage, Rotor,
};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::{
    both,
    support::{jwt_part, Backend, TestApp, TestDb},
};

fn kid_of(token: &str) -> String {
    jwt_part(token, 0)["kid"]
        .as_str()
        .expect("kid in the header")
        .to_owned()
}

async fn get_jwks(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("GET jwks");
    assert_eq!(r.status(), StatusCode::OK);
    let cache = r
        .headers()
        .get(header::CACHE_CONTROL)
        .expect("JWKS has Cache-Control")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cache.contains("max-age="), "{cache}");
    r.json().await.expect("JWKS JSON")
}

fn jwks_kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect();
    kids.sort();
    kids
}

/// Verifies `token` as a resource server would: with `jsonwebtoken`, the algorithm it
/// expects, and only the JWK whose `kid` the token names in the JWKS document.
fn verify_with_jwks(jwks: &Value, token: &str, alg: Algorithm) -> Result<Value, String> {
    let set: JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|e| format!("JWKS does not parse: {e}"))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid in the header")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let validation = Validation::new(alg);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn me_status(app: &TestApp, access: &str) -> StatusCode {
    app.get_auth("/v1/auth/me", access).await.status()
}

/// A rejected bearer: 401 with exactly `{"detail": "Not authenticated"}`.
async fn assert_not_authenticated(app: &TestApp, token: &str, what: &str) {
    let r = app.get_auth("/v1/auth/me", token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        r.headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "{what}"
    );
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(body, json!({ "detail": "Not authenticated" }), "{what}");
}

fn settings_for(alg: &str) -> Vec<(&str, &str)> {
    vec![("JWT_ALGORITHM", alg)]
}

/// Login works, the header names the algorithm and a published `kid`, and the token
/// verifies with nothing but the JWKS document.
async fn jwks_round_trip(b: Backend, alg_name: &str, alg: Algorithm) {
    let app = TestApp::spawn_with(b, &settings_for(alg_name)).await;
    let (email, access, _refresh) = app.user_session().await;

    let header = jwt_part(&access, 0);
    assert_eq!(header["alg"], alg_name);
    let kid = kid_of(&access);

    let jwks = get_jwks(&app).await;
    assert_eq!(jwks_kids(&jwks), vec![kid.clone()]);
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["alg"], alg_name);
    assert_eq!(jwk["use"], "sig");
    for private in ["d", "p", "q", "k"] {
        assert!(
            jwk.get(private).is_none(),
            "JWKS must not publish private part {private}: {jwk}"
        );
    }

    let claims = verify_with_jwks(&jwks, &access, alg).expect("verifies with the JWKS alone");
    let me: Value = app
        .get_auth("/v1/auth/me", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(claims["sub"], me["id"]);
    assert_eq!(claims["type"], "access");

    // A byte flipped in the signature no longer verifies, with the library or rotor.
    let mut forged = access.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(verify_with_jwks(&jwks, &forged, alg).is_err());
    assert_not_authenticated(&app, &forged, "tampered signature").await;
}

both!(
    eddsa_tokens_carry_a_kid_and_verify_with_the_jwks_alone,
    |b| async move {
        jwks_round_trip(b, "EdDSA", Algorithm::EdDSA).await;
    }
);

both!(
    es256_tokens_carry_a_kid_and_verify_with_the_jwks_alone,
    |b| async move {
        jwks_round_trip(b, "ES256", Algorithm::ES256).await;
    }
);

both!(hs256_default_publishes_an_empty_jwks, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, access, _) = app.user_session().await;
    let header = jwt_part(&access, 0);
    assert_eq!(header["alg"], "HS256");
    assert!(header.get("kid").is_none(), "{header}");
    assert_eq!(get_jwks(&app).await, json!({ "keys": [] }));
    // The original's contract: HS256 with the bytes of SECRET_KEY.
    let key = DecodingKey::from_secret(b"integration-test-secret-key-0123456789abcdef");
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(&access, &key, &v).expect("HS256 with SECRET_KEY");
    // Nothing to rotate: the secret is the key.
    assert!(app
        .rotor
        .tokens()
        .rotate_key(app.store().as_ref(), app.now())
        .await
        .is_err());
});

/// `(kid, public_key, private_key_sealed)` of every row of `signing_keys`, read with
/// SQL rather than through the store.
async fn stored_keys(db: &TestDb) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    const SQL: &str = "SELECT kid, public_key, private_key_sealed FROM signing_keys ORDER BY kid";
    match db.backend {
        Backend::Sqlite => {
            let conn = db.sqlite();
            let mut stmt = conn.prepare(SQL).unwrap();
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            rows
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let rows = sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap();
            let _ = conn.close().await;
            rows
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Private keys are sealed: the stored bytes hold no PKCS#8 structure, no key-type
/// OID and not even the public key (which a plaintext PKCS#8 document embeds); no
/// suffix of them parses as a key. A rotor with another `SECRET_KEY` (and no
/// `KEY_ENCRYPTION_KEY`) refuses to start on that database; a restart with the same
/// secret keeps the same key and every token valid.
async fn private_keys_are_sealed(b: Backend, alg_name: &str) {
    let app = TestApp::spawn_with(b, &settings_for(alg_name)).await;
    let (_, access, _) = app.user_session().await;
    let keys = stored_keys(&app.db).await;
    assert_eq!(keys.len(), 1);
    let (kid, public, sealed) = &keys[0];
    assert_eq!(kid, &kid_of(&access));
    let der: &[&[u8]] = &[
        &[0x30, 0x53, 0x02, 0x01, 0x01], // PKCS#8 v2 prefix of an Ed25519 key
        &[0x30, 0x81, 0x87, 0x02, 0x01, 0x00], // PKCS#8 prefix of a P-256 key
        &[0x06, 0x03, 0x2b, 0x65, 0x70], // id-Ed25519
        &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], // id-ecPublicKey
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], // prime256v1
    ];
    for needle in der {
        assert!(
            !contains(sealed, needle),
            "sealed key contains PKCS#8 structure {needle:02x?}"
        );
    }
    assert!(
        !contains(sealed, public),
        "sealed key contains the public key"
    );
    let rng = SystemRandom::new();
    for start in 0..sealed.len().min(32) {
        let tail = &sealed[start..];
        assert!(Ed25519KeyPair::from_pkcs8(tail).is_err());
        assert!(Ed25519KeyPair::from_pkcs8_maybe_unchecked(tail).is_err());
        assert!(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, tail, &rng).is_err());
    }

    // Another SECRET_KEY on the same database: the sealed key cannot be opened, and
    // rotor refuses to start rather than minting a key nobody else can use.
    let other_secret = [
        ("JWT_ALGORITHM", alg_name),
        ("SECRET_KEY", "a-completely-different-secret-key-9876543210"),
    ];
    let settings = app.db.settings(&other_secret);
    let store = storage::connect(&settings).await.unwrap();
    let clock = Arc::new(ManualClock::new(app.now())) as Arc<dyn Clock>;
    let err = Rotor::new(settings, store, clock.clone())
        .await
        .expect_err("a rotor with another SECRET_KEY must not start on sealed keys it cannot open");
    let message = err.to_string();
    assert!(message.contains("KEY_ENCRYPTION_KEY"), "{message}");
    assert_eq!(
        stored_keys(&app.db).await.len(),
        1,
        "no key was added by the failed start"
    );

    // The same secret: a restart loads the same key and accepts the old token.
    let settings = app.db.settings(&settings_for(alg_name));
    let store = storage::connect(&settings).await.unwrap();
    let restarted = Rotor::new(settings, store, clock)
        .await
        .expect("restart with the same secret");
    assert_eq!(restarted.tokens().jwks(), get_jwks(&app).await);
    let principal = restarted
        .authenticate(&access)
        .await
        .expect("old token after restart");
    assert_eq!(
        principal.user.id.to_string(),
        jwt_part(&access, 1)["sub"].as_str().unwrap()
    );
}

both!(
    eddsa_private_keys_are_sealed_under_the_secret,
    |b| async move {
        private_keys_are_sealed(b, "EdDSA").await;
    }
);

both!(
    es256_private_keys_are_sealed_under_the_secret,
    |b| async move {
        private_keys_are_sealed(b, "ES256").await;
    }
);

both!(
    key_encryption_key_decouples_sealing_from_secret_key,
    |b| async move {
        let kek = (
            "KEY_ENCRYPTION_KEY",
            "a-dedicated-key-encryption-key-0123456789",
        );
        let app = TestApp::spawn_with(b, &[("JWT_ALGORITHM", "EdDSA"), kek]).await;
        let (_, access, _) = app.user_session().await;
        // SECRET_KEY changes, KEY_ENCRYPTION_KEY stays: the ring still opens and signs
        // with the same key.
        let settings = app.db.settings(&[
            ("JWT_ALGORITHM", "EdDSA"),
            kek,
            ("SECRET_KEY", "a-completely-different-secret-key-9876543210"),
        ]);
        let store = storage::connect(&settings).await.unwrap();
        let other = Rotor::new(
            settings,
            store,
            Arc::new(ManualClock::new(app.now())) as Arc<dyn Clock>,
        )
        .await
        .expect("the sealing key comes from KEY_ENCRYPTION_KEY");
        let user = jwt_part(&access, 1)["sub"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let token = other.tokens().issue(user, 0, None, app.now()).unwrap();
        assert_eq!(kid_of(&token), kid_of(&access));
        assert_eq!(me_status(&app, &token).await, StatusCode::OK);
    }
);

/// Rotation adds a key that signs from then on; tokens of the old key keep working
/// (nobody is logged out) and both keys are published. Once every token of the old
/// key has expired, `prune` removes it from the ring and the JWKS.
async fn rotation_keeps_everyone_logged_in(b: Backend, alg_name: &str, alg: Algorithm) {
    let app = TestApp::spawn_with(b, &settings_for(alg_name)).await;
    let (email, old_access, old_refresh) = app.user_session().await;
    let old_kid = kid_of(&old_access);

    let new_kid = app
        .rotor
        .tokens()
        .rotate_key(app.store().as_ref(), app.now())
        .await
        .expect("rotate");
    assert_ne!(new_kid, old_kid);

    // Nobody is logged out: the old access and refresh tokens keep working.
    assert_eq!(me_status(&app, &old_access).await, StatusCode::OK);
    let jwks = get_jwks(&app).await;
    let mut both_kids = vec![old_kid.clone(), new_kid.clone()];
    both_kids.sort();
    assert_eq!(jwks_kids(&jwks), both_kids);
    verify_with_jwks(&jwks, &old_access, alg)
        .expect("old token verifies with the published old key");

    // New tokens, from a login or a refresh of a pre-rotation token, carry the new kid.
    let (fresh_access, _) = app.login_mobile(&email, "TestPass123").await;
    assert_eq!(kid_of(&fresh_access), new_kid);
    let r = app.post_refresh_mobile(&old_refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let rotated_access = body["access_token"].as_str().unwrap().to_owned();
    let live_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&rotated_access), new_kid);
    verify_with_jwks(&jwks, &rotated_access, alg)
        .expect("new token verifies with the published new key");

    // Pruning now removes nothing: tokens of the old key may still be alive.
    assert!(app
        .rotor
        .tokens()
        .prune(app.store().as_ref(), app.now())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(jwks_kids(&get_jwks(&app).await), both_kids);
    assert_eq!(me_status(&app, &old_access).await, StatusCode::OK);

    // Past the access-token lifetime every token of the old key has expired: prune.
    app.clock
        .advance(Duration::minutes(15) + Duration::seconds(1));
    let removed = app
        .rotor
        .tokens()
        .prune(app.store().as_ref(), app.now())
        .await
        .unwrap();
    assert_eq!(removed, vec![old_kid.clone()]);
    assert_eq!(jwks_kids(&get_jwks(&app).await), vec![new_kid.clone()]);
    assert_eq!(
        app.rotor
            .tokens()
            .verify(&old_access, app.now())
            .unwrap_err(),
        TokenRejected::UnknownKey,
        "the old key is gone from the ring, not merely expired"
    );
    assert_not_authenticated(&app, &old_access, "token of a pruned key").await;
    assert_eq!(stored_keys(&app.db).await.len(), 1);

    // The session itself lives on: its refresh token still rotates, under the new key.
    let r = app.post_refresh_mobile(&live_refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(kid_of(access), new_kid);
    assert_eq!(me_status(&app, access).await, StatusCode::OK);
}

both!(
    eddsa_rotation_logs_nobody_out_and_prune_retires_the_old_key,
    |b| async move {
        rotation_keeps_everyone_logged_in(b, "EdDSA", Algorithm::EdDSA).await;
    }
);

both!(
    es256_rotation_logs_nobody_out_and_prune_retires_the_old_key,
    |b| async move {
        rotation_keeps_everyone_logged_in(b, "ES256", Algorithm::ES256).await;
    }
);

both!(another_process_picks_up_a_rotated_key, |b| async move {
    // Two rotor instances on one database (as several processes would be); the key
    // is rotated by one, and the other accepts tokens signed with the new key.
    let app = TestApp::spawn_with(b, &settings_for("EdDSA")).await;
    let settings = app.db.settings(&settings_for("EdDSA"));
    let store = storage::connect(&settings).await.unwrap();
    let other = Rotor::new(settings, store, app.clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    let (email, _, _) = app.user_session().await;
    let new_kid = app
        .rotor
        .tokens()
        .rotate_key(app.store().as_ref(), app.now())
        .await
        .unwrap();
    let (access, _) = app.login_mobile(&email, "TestPass123").await;
    assert_eq!(kid_of(&access), new_kid);
    let principal = other
        .authenticate(&access)
        .await
        .expect("unknown kid triggers a ring reload");
    assert_eq!(principal.user.email, email);
    assert_eq!(
        jwks_kids(&other.tokens().jwks()),
        jwks_kids(&get_jwks(&app).await)
    );
});

fn ed25519_pkcs8() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn p256_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Tokens with the claims of a real, live session, signed every wrong way.
async fn confusion_is_rejected(b: Backend, alg_name: &str) {
    let app = TestApp::spawn_with(b, &settings_for(alg_name)).await;
    let (_, access, _) = app.user_session().await;
    let claims = jwt_part(&access, 1);
    let kid = kid_of(&access);
    let jwks = get_jwks(&app).await;
    let jwk = &jwks["keys"][0];

    // The public key as an HMAC secret, in every form a confused verifier might use.
    let mut public_forms: Vec<Vec<u8>> = vec![jwk.to_string().into_bytes()];
    // An Ed25519 key has one coordinate, a P-256 key two: each must be there.
    let coordinates: &[&str] = if alg_name == "EdDSA" {
        &["x"]
    } else {
        &["x", "y"]
    };
    for coordinate in coordinates {
        let c = jwk[*coordinate]
            .as_str()
            .unwrap_or_else(|| panic!("{alg_name} JWK without {coordinate}: {jwk}"));
        public_forms.push(c.as_bytes().to_vec());
        public_forms.push(URL_SAFE_NO_PAD.decode(c).unwrap());
    }
    let stored_public = stored_keys(&app.db).await.remove(0).1;
    public_forms.push(stored_public);
    for (i, secret) in public_forms.iter().enumerate() {
        for hs in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let forged = sign(hs, Some(&kid), &claims, &EncodingKey::from_secret(secret));
            assert_not_authenticated(&app, &forged, &format!("{hs:?} with public key form {i}"))
                .await;
        }
    }

    // alg: none (in several spellings), with and without the real kid.
    for none in ["none", "None", "NONE", "nOnE"] {
        for header in [
            json!({"alg": none, "typ": "JWT", "kid": kid}),
            json!({"alg": none, "typ": "JWT"}),
        ] {
            let forged = unsigned(&header, &claims);
            assert_not_authenticated(&app, &forged, &format!("alg {none}")).await;
            // Even with the real signature appended.
            let real_sig = access.rsplit('.').next().unwrap();
            assert_not_authenticated(
                &app,
                &format!("{forged}{real_sig}"),
                &format!("alg {none} + sig"),
            )
            .await;
        }
    }

    // A foreign key of the right type: under an unknown kid, under no kid, and under
    // the real kid.
    let (own_alg, foreign) = match alg_name {
        "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_der(&ed25519_pkcs8())),
        _ => (Algorithm::ES256, EncodingKey::from_ec_der(&p256_pkcs8())),
    };
    for (what, k) in [
        ("unknown kid", Some("not-a-published-kid")),
        ("no kid", None),
        ("real kid", Some(kid.as_str())),
    ] {
        let forged = sign(own_alg, k, &claims, &foreign);
        assert_not_authenticated(&app, &forged, &format!("foreign key, {what}")).await;
    }
    // The other asymmetric algorithm, under the real kid.
    let (other_alg, other_key) = match alg_name {
        "EdDSA" => (Algorithm::ES256, EncodingKey::from_ec_der(&p256_pkcs8())),
        _ => (Algorithm::EdDSA, EncodingKey::from_ed_der(&ed25519_pkcs8())),
    };
    let forged = sign(other_alg, Some(&kid), &claims, &other_key);
    assert_not_authenticated(&app, &forged, "other asymmetric algorithm").await;

    // A real token whose header was swapped for another kid (the signature no longer
    // covers it), and garbage kids.
    let payload_and_sig = access.split_once('.').unwrap().1;
    for bad_kid in [
        json!("nope"),
        json!(""),
        json!(123),
        json!("../../etc/passwd"),
        json!("x".repeat(2000)),
    ] {
        let header = json!({"alg": alg_name, "typ": "JWT", "kid": bad_kid});
        let forged = format!(
            "{}.{payload_and_sig}",
            URL_SAFE_NO_PAD.encode(header.to_string())
        );
        assert_not_authenticated(&app, &forged, &format!("kid {bad_kid}")).await;
    }

    // The untouched token still works: the rejections were about the forgeries.
    assert_eq!(me_status(&app, &access).await, StatusCode::OK);
}

both!(
    eddsa_server_rejects_algorithm_confusion_with_401,
    |b| async move {
        confusion_is_rejected(b, "EdDSA").await;
    }
);

both!(
    es256_server_rejects_algorithm_confusion_with_401,
    |b| async move {
        confusion_is_rejected(b, "ES256").await;
    }
);

both!(
    hs256_server_rejects_asymmetric_tokens_with_401,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, access, _) = app.user_session().await;
        let claims = jwt_part(&access, 1);
        for (alg, key) in [
            (Algorithm::EdDSA, EncodingKey::from_ed_der(&ed25519_pkcs8())),
            (Algorithm::ES256, EncodingKey::from_ec_der(&p256_pkcs8())),
        ] {
            for kid in [None, Some("some-kid")] {
                let forged = sign(alg, kid, &claims, &key);
                assert_not_authenticated(
                    &app,
                    &forged,
                    &format!("{alg:?} token on an HS256 server"),
                )
                .await;
            }
        }
        // The other HMAC sizes with the right secret are not accepted either: only the
        // configured algorithm is.
        let secret = EncodingKey::from_secret(b"integration-test-secret-key-0123456789abcdef");
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let forged = sign(alg, None, &claims, &secret);
            assert_not_authenticated(&app, &forged, &format!("{alg:?} on an HS256 server")).await;
        }
        let forged = unsigned(&json!({"alg": "none", "typ": "JWT"}), &claims);
        assert_not_authenticated(&app, &forged, "alg none on an HS256 server").await;
        assert_eq!(me_status(&app, &access).await, StatusCode::OK);
    }
);

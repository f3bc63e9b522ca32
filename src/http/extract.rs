//! Extractors: the request body (size- and time-limited), the client's context (IP through
//! trusted proxies only, user agent, device), and the authenticated caller.

use std::{
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap},
    response::{IntoResponse, Response},
};
use hyper::body::Body as _;

use super::{error, validate::Input};
use crate::{
    config::{canonical, Cidr},
    error::Error,
    service::{ClientContext, Principal},
    storage::Role,
    Rotor,
};

/// The request body as bytes, refused with 413 beyond `MAX_BODY_BYTES` and with 408
/// when it has not fully arrived `BODY_READ_TIMEOUT_SECONDS` after reading began.
pub(crate) struct Body(pub Bytes);

impl<S> FromRequest<S> for Body
where
    S: Send + Sync,
    Arc<Rotor>: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        Self::read(req, state).await.map_err(|e| match e {
            BodyError::TimedOut(_) => error::body_read_timeout(),
            _ => error::payload_too_large(),
        })
    }
}

impl Body {
    async fn read<S>(req: Request, state: &S) -> Result<Self, BodyError>
    where
        Arc<Rotor>: FromRef<S>,
    {
        let rotor = Arc::<Rotor>::from_ref(state);
        let settings = rotor.settings();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let read = read_body(
            req.into_body(),
            declared,
            settings.max_body_bytes,
            Duration::from_secs(settings.body_read_timeout_seconds),
        );
        read.await
            .map(|bytes| Self(Bytes::from(bytes)))
            .inspect_err(|e| {
                if let BodyError::Read(_) = e {
                    tracing::debug!(error = %e, "request body not read");
                }
            })
    }
}

/// [`Body`] for the OAuth endpoints: the same limits, refused in RFC 6749's shape.
pub(crate) struct OAuthBody(pub Body);

impl std::ops::Deref for OAuthBody {
    type Target = Body;
    fn deref(&self) -> &Body {
        &self.0
    }
}

impl<S> FromRequest<S> for OAuthBody
where
    S: Send + Sync,
    Arc<Rotor>: FromRef<S>,
{
    type Rejection = error::OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, error::OAuthError> {
        Body::read(req, state).await.map(Self).map_err(|e| match e {
            BodyError::TimedOut(_) => error::OAuthError::body_read_timeout(),
            _ => error::OAuthError::payload_too_large(),
        })
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
    #[error("reading the request body: {0}")]
    Read(#[source] axum::Error),
}

/// Reads a whole request body into one buffer of at most `limit` bytes, within
/// `timeout`.
///
/// The buffer is sized from the declared `Content-Length` (capped by `limit`), and
/// every chunk is copied into it and dropped at once. Collecting the chunks instead
/// (axum's `to_bytes`) lets a client pin memory: each chunk hyper hands over is a
/// slice of its connection read buffer, which keeps the whole buffer (8 KiB or more)
/// alive, so a body sent one byte per packet held thousands of times its size until
/// the request ended. The deadline bounds how long a connection may hold even that
/// one buffer: the body must average at least `limit / timeout` bytes a second.
pub(crate) async fn read_body(
    body: axum::body::Body,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, BodyError> {
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let capacity = declared.map_or(0, |len| usize::try_from(len).unwrap_or(limit).min(limit));
    let mut buf = Vec::with_capacity(capacity);
    let mut body = body;
    let collect = async {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(chunk) = frame.map_err(BodyError::Read)?.into_data() else {
                continue; // trailers
            };
            if chunk.len() > limit - buf.len() {
                return Err(BodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
            // `chunk` is dropped here, releasing hyper's read buffer for reuse.
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::TimedOut(timeout)),
    }
}

impl Body {
    pub(crate) fn json(&self) -> Result<Input, Error> {
        Input::json(&self.0)
    }

    pub(crate) fn form(&self) -> Input {
        Input::form(&self.0)
    }
}

/// The client's address: the TCP peer, or — only when the peer is a trusted proxy —
/// the nearest untrusted address in `X-Forwarded-For` (or `Forwarded: for=`).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { return Some(peer) };
        for part in v.split(',') {
            match parse_forwarded_addr(part) {
                Some(ip) => chain.push(ip),
                None => return Some(peer),
            }
        }
    }
    if chain.is_empty() {
        for v in headers.get_all("forwarded") {
            let Ok(v) = v.to_str() else { return Some(peer) };
            for element in v.split(',') {
                for pair in element.split(';') {
                    if let Some((k, val)) = pair.trim().split_once('=') {
                        if k.trim().eq_ignore_ascii_case("for") {
                            match parse_forwarded_addr(val) {
                                Some(ip) => chain.push(ip),
                                None => return Some(peer),
                            }
                        }
                    }
                }
            }
        }
    }
    // Walk from the nearest hop outwards; the first untrusted address is the client.
    let mut client = peer;
    for ip in chain.into_iter().rev() {
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    // `[v6]` without a port.
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|v6| v6.parse().ok())
        .map(canonical)
}

/// A client-supplied header as text: absent, empty, non-ASCII or NUL-holding values are
/// dropped (treated as absent). hyper already refuses NUL in a header value (400
/// before any handler runs); the check here keeps the rule local for embedders.
fn header_string(headers: &HeaderMap, name: &str, max: usize) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.contains('\0'))
        .map(|s| crate::service::truncate_public(s, max))
}

/// The requesting client: IP, user agent and device headers.
pub(crate) struct Client(pub ClientContext);

impl<S> FromRequestParts<S> for Client
where
    S: Send + Sync,
    Arc<Rotor>: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let rotor = Arc::<Rotor>::from_ref(state);
        Ok(Self(client_context(
            parts,
            &rotor.settings().trusted_proxies,
        )))
    }
}

pub(crate) fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

pub(crate) fn client_context(parts: &Parts, trusted: &[Cidr]) -> ClientContext {
    ClientContext {
        ip: client_ip(peer_ip(parts), &parts.headers, trusted).map(|ip| ip.to_string()),
        user_agent: header_string(&parts.headers, "user-agent", 512),
        device_id: header_string(&parts.headers, "x-device-id", 255),
        device_name: header_string(&parts.headers, "x-device-name", 100),
        client_id: None,
    }
}

/// The bearer token of the `Authorization` header, if well-formed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An authenticated caller (any role). Rejects with 401 `Not authenticated`.
pub struct Auth(pub Principal);

impl<S> FromRequestParts<S> for Auth
where
    S: Send + Sync,
    Arc<Rotor>: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let rotor = Arc::<Rotor>::from_ref(state);
        let token = bearer(&parts.headers).ok_or_else(error::not_authenticated)?;
        rotor
            .authenticate(token)
            .await
            .map(Self)
            .map_err(IntoResponse::into_response)
    }
}

/// An authenticated admin. 401 without a valid bearer, 403 for other roles.
pub struct Admin(pub Principal);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Arc<Rotor>: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Auth(principal) = Auth::from_request_parts(parts, state).await?;
        if principal.user.role != Role::Admin {
            return Err(Error::PermissionDenied.into_response());
        }
        Ok(Self(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_headers_are_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_ip(Some(peer), &h, &[]), Some(peer));
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(Some(peer), &h, &trusted), Some(peer));
    }

    #[test]
    fn trusted_proxy_chain_yields_the_first_untrusted_hop() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        // A client-supplied spoofed entry sits left of the real client.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            client_ip(Some(peer), &h, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let h = headers(&[("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#)]);
        assert_eq!(
            client_ip(Some(peer), &h, &trusted),
            Some("2001:db8::1".parse().unwrap())
        );
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(Some(peer), &h, &trusted), Some(peer));
    }

    /// A body that yields `chunks`, then stalls forever (or ends, if `end`).
    struct Trickle {
        chunks: std::collections::VecDeque<&'static [u8]>,
        end: bool,
    }

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            match self.chunks.pop_front() {
                Some(c) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(
                    Bytes::from_static(c),
                )))),
                None if self.end => std::task::Poll::Ready(None),
                None => std::task::Poll::Pending,
            }
        }
    }

    fn trickle(chunks: &[&'static [u8]], end: bool) -> axum::body::Body {
        axum::body::Body::new(Trickle {
            chunks: chunks.iter().copied().collect(),
            end,
        })
    }

    #[tokio::test]
    async fn a_body_is_read_into_one_buffer_sized_from_its_content_length() {
        let secs = Duration::from_secs(1);
        let body = trickle(&[b"ab", b"c", b"de"], true);
        let buf = read_body(body, Some(5), 64, secs).await.unwrap();
        assert_eq!(buf, b"abcde");
        assert_eq!(buf.capacity(), 5, "sized once from Content-Length");
        // Without a Content-Length (chunked), still one buffer.
        let buf = read_body(trickle(&[b"ab", b"c"], true), None, 64, secs)
            .await
            .unwrap();
        assert_eq!(buf, b"abc");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_declared_or_not() {
        let secs = Duration::from_secs(1);
        // Declared too large: refused before anything is read or allocated.
        let err = read_body(trickle(&[], false), Some(65), 64, secs)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 64 }), "{err}");
        // Undeclared (chunked) and too large: refused at the chunk that crosses it.
        let err = read_body(trickle(&[&[b'x'; 40], &[b'x'; 40]], true), None, 64, secs)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let timeout = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let err = read_body(trickle(&[b"{\"a\":"], false), Some(50), 64, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BodyError::TimedOut(t) if t == timeout),
            "{err}"
        );
        assert!(started.elapsed() >= timeout);
        assert_eq!(
            error::body_read_timeout().status(),
            axum::http::StatusCode::REQUEST_TIMEOUT
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer")])), None);
    }
}

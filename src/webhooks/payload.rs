//! The body of a webhook, per the Standard Webhooks conventions:
//! `{"type": "...", "timestamp": RFC 3339, "data": {...}}`. The body is rendered once,
//! when the event is written, and stored: every attempt signs and sends the same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::event::{EventType, Facts, OutboxEvent};

/// The body of `event` as its transaction knows it at `now`.
pub fn render(event: &OutboxEvent, facts: &Facts, now: DateTime<Utc>) -> String {
    let mut data = Map::new();
    let mut put = |k: &str, v: Value| {
        data.insert(k.to_owned(), v);
    };
    put("user_id", json!(facts.user_id));
    put("email", json!(facts.email));
    put("session_id", json!(event.session_id));
    put("ip", json!(event.ip));
    put("user_agent", json!(event.user_agent));
    put(
        "device",
        json!({"id": event.device_id, "name": event.device_name}),
    );
    match event.event_type {
        EventType::SessionCreated => {
            put("new_device", json!(facts.new_device));
            put("new_ip", json!(facts.new_ip));
        }
        EventType::SessionRevoked => {
            put("reason", json!(event.reason));
            if matches!(event.reason, Some("logout_others" | "logout_all")) {
                put("sessions_ended", json!(facts.sessions_ended));
            }
        }
        EventType::UserPasswordChanged | EventType::UserDeactivated => {
            put("sessions_ended", json!(facts.sessions_ended));
        }
        EventType::AdminUserUpdated => {
            put("changed", json!(event.changed));
        }
        EventType::SessionRefreshReuseDetected
        | EventType::UserCreated
        | EventType::UserDeleted
        | EventType::WebhookTest => {}
    }
    if let Some(actor) = event.actor_id {
        put("actor_id", json!(actor));
    }
    envelope(event.event_type, now, Value::Object(data))
}

/// `{"type", "timestamp", "data"}` as compact JSON.
pub fn envelope(event_type: EventType, now: DateTime<Utc>, data: Value) -> String {
    json!({
        "type": event_type.as_str(),
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_session_created_body_has_the_standard_shape() {
        let now = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.089Z")
            .unwrap()
            .with_timezone(&Utc);
        let user = Uuid::now_v7();
        let mut e = OutboxEvent::new(EventType::SessionCreated, Arc::from(vec![]));
        e.session_id = Some(Uuid::nil());
        e.ip = Some("203.0.113.9".into());
        e.device_name = Some("phone".into());
        let facts = Facts {
            user_id: Some(user),
            email: Some("a@example.com".into()),
            new_device: Some(true),
            new_ip: Some(false),
            sessions_ended: 0,
        };
        let body: Value = serde_json::from_str(&render(&e, &facts, now)).unwrap();
        assert_eq!(body["type"], "session.created");
        assert_eq!(body["timestamp"], "2026-03-04T05:06:07.089Z");
        assert_eq!(body["data"]["user_id"], user.to_string());
        assert_eq!(body["data"]["email"], "a@example.com");
        assert_eq!(body["data"]["device"]["name"], "phone");
        assert_eq!(body["data"]["new_device"], true);
        assert_eq!(body["data"]["new_ip"], false);
        assert_eq!(body.as_object().unwrap().len(), 3);
    }

    #[test]
    fn revocations_say_why() {
        let mut e = OutboxEvent::new(EventType::SessionRevoked, Arc::from(vec![]));
        e.reason = Some("logout_all");
        let facts = Facts {
            sessions_ended: 3,
            ..Facts::default()
        };
        let body: Value = serde_json::from_str(&render(&e, &facts, Utc::now())).unwrap();
        assert_eq!(body["data"]["reason"], "logout_all");
        assert_eq!(body["data"]["sessions_ended"], 3);
    }
}

//! The request decoders: JSON bodies, form bodies and query strings, through every
//! field accessor the handlers use. Any input gives values or 422s, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor::testing::parsers::{path_uuid, Input};

fn exercise(mut input: Input) {
    let _ = input.email("email");
    let _ = input.strong_password("password");
    let _ = input.string("username", 1, 320);
    let _ = input.nullable_string("full_name", 255);
    let _ = input.optional_string("device_id", 255);
    let _ = input.boolean("is_active");
    let _ = input.integer("page", 1, 1, 1_000_000);
    let _ = input.choice("role", &["user", "admin"]);
    let _ = input.uuid("user_id");
    let _ = input.optional_email("email2");
    let _ = input.finish();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = Input::json(data) {
        exercise(input);
    }
    exercise(Input::form(data));
    if let Ok(text) = std::str::from_utf8(data) {
        exercise(Input::query(Some(text)));
        let _ = path_uuid("id", text);
    }
});

//! `settings!`: each setting declared once — its variable name, field, type, kind
//! (parser, range check, display, redaction), default and doc — and everything else
//! derived from that one declaration:
//!
//! - the `Settings` struct, one public field per setting, documented by the
//!   declaration's doc comment;
//! - `SETTINGS`, the names and docs in declaration order: the variables `load` reads
//!   from the environment and accepts in a TOML file;
//! - `Settings::read_declared`, which parses every variable in declaration order (a
//!   default may use settings declared above it) and names the variable in any error;
//! - `Settings::describe`, the effective values for `rotor config check` (secrets
//!   redacted by their kind);
//! - `Settings::help`, the table of `--help` (doc, default, what is accepted).
//!
//! ```text
//! settings! {
//!     #[derive(Debug, Clone)]
//!     pub struct Settings {
//!         /// first line: the --help text
//!         ///
//!         /// further lines: only the field's rustdoc
//!         NAME => field: Type {
//!             kind: int(1, 3650),            // a `kinds::Kind` whose Value is Type
//!             default: 30,                   // evaluated only when unset; may use `?`
//!             help_default: "30 days",       // optional: --help shows this instead
//!         }
//!     }
//! }
//! ```

macro_rules! settings {
    (
        $(#[$attr:meta])*
        pub struct $Settings:ident {
            $(
                $(#[doc = $doc:literal])+
                $name:ident => $field:ident : $ty:ty {
                    kind: $kind:expr,
                    default: $default:expr
                    $(, help_default: $shown:literal)?
                    $(,)?
                }
            )+
        }
    ) => {
        $(#[$attr])*
        pub struct $Settings {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )+
        }

        /// Every setting, in declaration order: the variables rotor reads.
        pub const SETTINGS: &[$crate::config::Declared] = &[
            $(
                $crate::config::Declared {
                    name: stringify!($name),
                    doc: concat!($($doc, "\n"),+),
                },
            )+
        ];

        impl $Settings {
            /// Parses every declared variable (in declaration order, so a default may
            /// use the settings declared above it); unset or empty takes the default.
            fn read_declared(
                vars: &$crate::config::Vars<'_>,
            ) -> Result<Self, $crate::config::ConfigError> {
                $(
                    let $field: $ty = match vars.get(stringify!($name)) {
                        None => $default,
                        Some(raw) => $crate::config::kinds::Kind::parse(&$kind, raw)
                            .map_err(|e| e.named(stringify!($name), raw))?,
                    };
                )+
                Ok(Self { $($field),+ })
            }

            /// `(name, value)` pairs of the effective configuration, secrets redacted.
            pub fn describe(&self) -> Vec<(&'static str, String)> {
                vec![
                    $(
                        (
                            stringify!($name),
                            $crate::config::kinds::Kind::show(&$kind, &self.$field),
                        ),
                    )+
                ]
            }

            /// Every setting with its doc, default and accepted values, for `--help`.
            pub fn help() -> Vec<$crate::config::Help> {
                let defaults = Self::from_vars(&Default::default()).ok();
                vec![
                    $(
                        {
                            let kind = $kind;
                            let shown: Option<&'static str> = None $(.or(Some($shown)))?;
                            $crate::config::Help {
                                name: stringify!($name),
                                doc: $crate::config::first_line(concat!($($doc, "\n"),+)),
                                expected: $crate::config::kinds::Kind::expected(&kind),
                                default: match shown {
                                    Some(text) => Some(text.to_owned()),
                                    None => defaults.as_ref().and_then(|d| {
                                        $crate::config::kinds::Kind::show_default(
                                            &kind, &d.$field,
                                        )
                                    }),
                                },
                            }
                        },
                    )+
                ]
            }
        }
    };
}

pub(crate) use settings;

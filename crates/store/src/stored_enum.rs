//! Closed sets of values the database keeps as text (a server's state, a role, an OAuth token's
//! kind), as checked Rust enums with one conversion each way.
//!
//! `stored_enum!` declares such an enum together with its stored spelling per variant, and
//! derives from that one table everything else: `as_str`, `ALL`, `Display`, `FromStr` (failing
//! with [`UnknownValue`]), and sqlx's `Type`, `Encode` and `Decode` for any backend that stores
//! the value as `&str` (SQLite and PostgreSQL alike), so a row struct holds the enum itself and a
//! statement binds it directly. Text the binary does not know (written by a newer binary, or by
//! hand) is a decode error naming the value, which the store reports as
//! [`crate::StoreError::InvalidValue`]; it is never a panic and never silently dropped.

use std::fmt;

/// Text that names no variant of a stored enum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {})", expected.join(", "))]
pub struct UnknownValue {
    /// What the text should have named (`role`, `server state`, ...).
    pub what: &'static str,
    /// The text found.
    pub value: String,
    /// Every spelling the enum knows.
    pub expected: &'static [&'static str],
}

/// What every stored enum ([`crate::ServerState`], [`crate::Role`], [`crate::OAuthTokenKind`])
/// offers, for code (and tests) generic over them.
pub trait StoredEnum: Copy + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// What a value names, for messages (`role`, `server state`, ...).
    const WHAT: &'static str;
    /// Every variant, in declaration order.
    const ALL: &'static [Self];
    /// The stored spelling of every variant, in declaration order.
    const TEXTS: &'static [&'static str];

    /// The stored spelling.
    fn as_str(self) -> &'static str;

    /// The variant stored as `text`.
    fn from_text(text: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == text)
            .ok_or_else(|| UnknownValue {
                what: Self::WHAT,
                value: text.to_owned(),
                expected: Self::TEXTS,
            })
    }
}

/// Declare a stored enum: `pub enum Name as "what it names" { Variant = "text", ... }`.
/// Attributes (docs, extra derives) pass through; `Clone, Copy, Debug, PartialEq, Eq, Hash`
/// are always derived. The variants' order is the derived order where `Ord` is asked for.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl $crate::stored_enum::StoredEnum for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = Self::ALL;
            const TEXTS: &'static [&'static str] = &[$($text),+];
            fn as_str(self) -> &'static str {
                self.as_str()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::stored_enum::UnknownValue;
            fn from_str(text: &str) -> ::std::result::Result<Self, Self::Err> {
                <Self as $crate::stored_enum::StoredEnum>::from_text(text)
            }
        }

        impl<DB: ::sqlx::Database> ::sqlx::Type<DB> for $name
        where
            str: ::sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as ::sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as ::sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: ::sqlx::Database> ::sqlx::Encode<'q, DB> for $name
        where
            &'q str: ::sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut DB::ArgumentBuffer<'q>,
            ) -> ::std::result::Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&'q str as ::sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: ::sqlx::Database> ::sqlx::Decode<'r, DB> for $name
        where
            &'r str: ::sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: DB::ValueRef<'r>,
            ) -> ::std::result::Result<Self, ::sqlx::error::BoxDynError> {
                let text = <&'r str as ::sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(<Self as $crate::stored_enum::StoredEnum>::from_text(text)?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{StoredEnum, UnknownValue};
    use crate::{OAuthTokenKind, Role, ServerState};

    fn texts_round_trip<T: StoredEnum + std::str::FromStr<Err = UnknownValue>>() {
        assert_eq!(T::ALL.len(), T::TEXTS.len());
        let distinct: BTreeSet<_> = T::TEXTS.iter().collect();
        assert_eq!(
            distinct.len(),
            T::TEXTS.len(),
            "{} spellings repeat",
            T::WHAT
        );
        for (variant, text) in T::ALL.iter().zip(T::TEXTS) {
            assert_eq!(variant.as_str(), *text);
            assert_eq!(text.parse::<T>(), Ok(*variant));
        }
    }

    #[test]
    fn every_variant_round_trips_through_its_text() {
        texts_round_trip::<ServerState>();
        texts_round_trip::<Role>();
        texts_round_trip::<OAuthTokenKind>();
    }

    #[test]
    fn unknown_text_names_itself_and_the_choices() {
        let err = "superuser".parse::<Role>().unwrap_err();
        assert_eq!(
            err,
            UnknownValue {
                what: "role",
                value: "superuser".into(),
                expected: &["viewer", "member", "operator", "admin"],
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown role \"superuser\" (expected one of: viewer, member, operator, admin)"
        );
        // Spellings are exact: no case folding, no trimming.
        assert!("Installed".parse::<ServerState>().is_err());
        assert!(" code".parse::<OAuthTokenKind>().is_err());
    }

    #[test]
    fn display_is_the_stored_text() {
        assert_eq!(ServerState::Removing.to_string(), "removing");
        assert_eq!(OAuthTokenKind::Refresh.to_string(), "refresh");
        assert_eq!(Role::Operator.to_string(), "operator");
    }
}

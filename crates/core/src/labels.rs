//! Labels: the one mechanism for every bounded label value. `label_enum!` declares an enum
//! whose variants are the only values a label can take, with its text, and implements
//! [`LabelValue`] (every value, the text, parsing), `Display`, serde (as the text) and
//! prometheus-client's `EncodeLabelValue` for it. A label whose values come from users (tenant
//! and host names, configured in the config file) is a `String` in a label set instead; nothing
//! read from an API ever becomes a label value. This module defines no labels itself.

/// A bounded label value: one of [`LabelValue::ALL`], written as [`LabelValue::as_str`].
pub trait LabelValue: Copy + Eq + 'static {
    /// Every value, in declaration order (series are exported at 0 from start-up).
    const ALL: &'static [Self];

    /// The label value as written on `/metrics`, in the API and in DESIGN §5 and §6.
    fn as_str(self) -> &'static str;

    /// The value written `text`, if any.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == text)
    }

    /// Every value's text, comma-separated, for error messages.
    fn valid_values() -> String {
        Self::ALL
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parses `value` of the parameter or key `name` as a `T`; the error names both and lists the
/// valid values.
pub fn parse_named<T: LabelValue>(name: &str, value: &str) -> Result<T, String> {
    T::parse(value).ok_or_else(|| {
        format!(
            "{name}: unknown value {value:?}; valid values: {}",
            T::valid_values()
        )
    })
}

/// Declares a bounded label enum: `label_enum!(/// doc \n pub Name { Variant => "text", ... })`.
/// The enum also gets inherent `ALL`, `as_str` and `parse`, so callers need not import the trait.
macro_rules! label_enum {
    ($(#[$meta:meta])* $vis:vis $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order (series are exported at 0 from start-up).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a label value.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl $crate::labels::LabelValue for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn parse(text: &str) -> Option<$name> {
                $name::parse(text)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    ::serde::de::Error::custom(format!(
                        "unknown value {text:?}; valid values: {}",
                        <$name as $crate::labels::LabelValue>::valid_values()
                    ))
                })
            }
        }

        impl ::prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut ::prometheus_client::encoding::LabelValueEncoder,
            ) -> Result<(), ::std::fmt::Error> {
                ::std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

pub(crate) use label_enum;

#[cfg(test)]
mod tests {
    use super::*;

    label_enum!(
        /// A label for these tests.
        Colour {
            Red => "red",
            DarkBlue => "dark_blue",
        }
    );

    /// Every value round-trips through its text, serde and parsing, and a wrong text is named.
    #[test]
    fn values_round_trip_and_errors_name_the_valid_values() {
        for c in Colour::ALL {
            assert_eq!(Colour::parse(c.as_str()), Some(*c));
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), *c);
        }
        assert_eq!(
            parse_named::<Colour>("parameter colour", "green").unwrap_err(),
            "parameter colour: unknown value \"green\"; valid values: red, dark_blue"
        );
        let err = serde_json::from_str::<Colour>("\"green\"").unwrap_err();
        assert!(
            err.to_string().contains("valid values: red, dark_blue"),
            "{err}"
        );
    }
}

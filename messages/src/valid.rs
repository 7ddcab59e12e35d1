//! `Valid<T>`: a request that passed its type's rules. Only the type's own `validated()` makes
//! one, so an actor message carrying a `Valid<T>` needs no second check: a request is validated
//! once, on its way in (`NodeApi` for the REST API and embedding hosts, a link adapter, the
//! cluster gateway), and the actor trusts it.
//!
//! What needs the actor's state or clock (a snapshot's age, a blueprint's current version) is
//! still the actor's to judge; `Valid` covers the rules a value keeps on its own.

use std::ops::Deref;

use crate::InvalidInput;

/// A value that passed its type's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid<T>(T);

impl<T> Valid<T> {
    /// Only the validating functions of this crate wrap a value.
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Types whose values are checked against their rules before an actor takes them.
pub trait Validate: Sized {
    /// The value if it keeps its rules; the field and the rule it breaks otherwise.
    fn validated(self) -> Result<Valid<Self>, InvalidInput>;
}

/// Implements `Validate` for a type with `fn validate(&self) -> Result<(), InvalidInput>`.
macro_rules! validate_impl {
    ($($type:ty),+ $(,)?) => {$(
        impl $crate::valid::Validate for $type {
            fn validated(self) -> Result<$crate::valid::Valid<Self>, $crate::InvalidInput> {
                self.validate()?;
                Ok($crate::valid::Valid::new(self))
            }
        }
    )+};
}

validate_impl!(
    crate::BulkAdvertise,
    crate::PublishRequest,
    crate::NewRegister,
    crate::RegisterPatch,
);

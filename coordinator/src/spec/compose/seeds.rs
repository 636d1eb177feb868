//! Generic readers: a scalar checked inside its visitor (so errors carry
//! its position), a list, and `null` as "not set".

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A scalar, read as its text and checked by `parse` inside the visitor, so
/// that the parser puts the scalar's position on the error.
pub(super) struct Scalar<T, F> {
    expecting: &'static str,
    parse: F,
    value: PhantomData<fn() -> T>,
}

pub(super) fn scalar<T, F: FnOnce(&str) -> Result<T, String>>(
    expecting: &'static str,
    parse: F,
) -> Scalar<T, F> {
    Scalar {
        expecting,
        parse,
        value: PhantomData,
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> DeserializeSeed<'de> for Scalar<T, F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Scalar<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// A plain string, whatever the scalar looks like (`user: 1000`).
pub(super) fn text(
    expecting: &'static str,
) -> Scalar<String, impl FnOnce(&str) -> Result<String, String>> {
    scalar(expecting, |s| Ok(s.to_owned()))
}

/// `null` (or nothing) for "not set", as Compose reads it.
struct Opt<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Opt<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Opt<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A sequence whose items are read by the seeds `item` makes, given the index.
pub(super) struct List<F> {
    expecting: &'static str,
    item: F,
}

impl<'de, S: DeserializeSeed<'de>, F: FnMut(usize) -> S> DeserializeSeed<'de> for List<F> {
    type Value = Vec<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de>, F: FnMut(usize) -> S> Visitor<'de> for List<F> {
    type Value = Vec<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed((self.item)(items.len()))? {
            items.push(item);
        }
        Ok(items)
    }
}

pub(super) fn list<'de, S: DeserializeSeed<'de>>(
    expecting: &'static str,
    item: impl FnMut(usize) -> S,
) -> List<impl FnMut(usize) -> S> {
    List { expecting, item }
}

/// Reads the value of the current key with `seed`, `null` meaning "not set".
pub(super) fn value<'de, A: MapAccess<'de>, S: DeserializeSeed<'de>>(
    map: &mut A,
    seed: S,
) -> Result<Option<S::Value>, A::Error> {
    map.next_value_seed(Opt(seed))
}

//! XDR decoder.

use super::{Error, Limits, padding};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Decodes a `T` that must use all of `input`, with libvirt's limits.
pub fn from_bytes<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T, Error> {
    from_bytes_with_limits(input, Limits::LIBVIRT)
}

/// Decodes a `T` that must use all of `input`.
pub fn from_bytes_with_limits<'de, T: de::Deserialize<'de>>(
    input: &'de [u8],
    limits: Limits,
) -> Result<T, Error> {
    let mut de = Deserializer::new(input, limits);
    let value = T::deserialize(&mut de)?;
    match de.remaining() {
        0 => Ok(value),
        n => Err(Error::TrailingBytes(n)),
    }
}

/// Decodes a `T` from the start of `input`; returns it and the number of bytes used.
pub fn from_bytes_prefix<'de, T: de::Deserialize<'de>>(
    input: &'de [u8],
) -> Result<(T, usize), Error> {
    let mut de = Deserializer::new(input, Limits::LIBVIRT);
    let value = T::deserialize(&mut de)?;
    Ok((value, input.len() - de.remaining()))
}

/// The XDR deserializer over a byte slice.
#[derive(Debug)]
pub struct Deserializer<'de> {
    input: &'de [u8],
    limits: Limits,
    /// The next value is a direct element of an array: a `u8` is then a raw byte.
    byte_element: bool,
    /// Set by `deserialize_u8` when it read a raw byte for an array element.
    took_raw_byte: bool,
}

impl<'de> Deserializer<'de> {
    /// A deserializer reading `input`.
    pub fn new(input: &'de [u8], limits: Limits) -> Self {
        Deserializer {
            input,
            limits,
            byte_element: false,
            took_raw_byte: false,
        }
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8], Error> {
        if n > self.input.len() {
            return Err(Error::Truncated {
                needed: n,
                remaining: self.input.len(),
            });
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.byte_element = false;
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    fn i32(&mut self) -> Result<i32, Error> {
        Ok(self.u32()? as i32)
    }

    /// Reads a length word and checks it against `max` and the input left.
    fn length(&mut self, max: usize, unit: usize) -> Result<usize, Error> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(Error::LengthExceeded { len, max });
        }
        let needed = len.saturating_mul(unit);
        if needed > self.input.len() {
            return Err(Error::Truncated {
                needed,
                remaining: self.input.len(),
            });
        }
        Ok(len)
    }

    fn opaque(&mut self, max: usize) -> Result<&'de [u8], Error> {
        let len = self.length(max, 1)?;
        let data = self.take(len)?;
        self.take(padding(len))?;
        Ok(data)
    }

    fn string(&mut self) -> Result<&'de str, Error> {
        let max = self.limits.max_string;
        std::str::from_utf8(self.opaque(max)?).map_err(|_| Error::InvalidUtf8)
    }
}

macro_rules! narrow_int {
    ($name:ident, $visit:ident, $ty:ty, $read:ident) => {
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let wide = self.$read()?;
            let v = <$ty>::try_from(wide).map_err(|_| Error::OutOfRange {
                value: i64::from(wide),
                ty: stringify!($ty),
            })?;
            visitor.$visit(v)
        }
    };
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::Unsupported("self-describing decoding"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.u32()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            n => Err(Error::InvalidBool(n)),
        }
    }

    narrow_int!(deserialize_i8, visit_i8, i8, i32);
    narrow_int!(deserialize_i16, visit_i16, i16, i32);
    narrow_int!(deserialize_u16, visit_u16, u16, u32);

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if std::mem::take(&mut self.byte_element) {
            let byte = self.take(1)?[0];
            self.took_raw_byte = true;
            return visitor.visit_u8(byte);
        }
        let wide = self.u32()?;
        let v = u8::try_from(wide).map_err(|_| Error::OutOfRange {
            value: i64::from(wide),
            ty: "u8",
        })?;
        visitor.visit_u8(v)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i32(self.i32()?)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u32(self.u32()?)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_i64(i64::from_be_bytes(self.take_array()?))
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_u64(u64::from_be_bytes(self.take_array()?))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f32(f32::from_bits(self.u32()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_f64(f64::from_be_bytes(self.take_array()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let n = self.u32()?;
        visitor.visit_char(char::from_u32(n).ok_or(Error::InvalidChar(n))?)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.string()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let max = self.limits.max_opaque;
        self.byte_element = false;
        visitor.visit_borrowed_bytes(self.opaque(max)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Any non-zero flag means present, as in libvirtd's XDR library (its xdr_pointer
        // reads the flag as a bool, and any non-zero word is true): DigitalOcean's go-libvirt
        // sends connect-open's optional name with the flag 0x01000000.
        match self.u32()? {
            0 => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        // keep `byte_element`: a newtype around a u8 array element is still a byte
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let max = self.limits.max_elements;
        let len = self.length(max, 1)?;
        visitor.visit_seq(Elements::new(self, len, true))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_seq(Elements::new(self, len, true))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_seq(Elements::new(self, len, false))
    }

    fn deserialize_map<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::Unsupported("map"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.byte_element = false;
        visitor.visit_seq(Elements::new(self, fields.len(), false))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let d = self.i32()?;
        let numbered = !variants.is_empty() && variants.iter().all(|v| v.parse::<i32>().is_ok());
        let index = if numbered {
            variants.iter().position(|v| v.parse::<i32>() == Ok(d))
        } else {
            usize::try_from(d).ok().filter(|&i| i < variants.len())
        };
        let index = index.ok_or(Error::UnknownDiscriminant {
            discriminant: d,
            name,
        })?;
        visitor.visit_enum(Union {
            de: self,
            index: index as u32,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::Unsupported("identifier"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::Unsupported("ignored values"))
    }
}

/// Elements of an array, a tuple or the fields of a struct.
struct Elements<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
    pack_bytes: bool,
    raw_bytes: usize,
    values: usize,
}

impl<'a, 'de> Elements<'a, 'de> {
    fn new(de: &'a mut Deserializer<'de>, len: usize, pack_bytes: bool) -> Self {
        Elements {
            de,
            left: len,
            pack_bytes,
            raw_bytes: 0,
            values: 0,
        }
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.de.byte_element = self.pack_bytes;
        self.de.took_raw_byte = false;
        let value = seed.deserialize(&mut *self.de)?;
        self.de.byte_element = false;
        if std::mem::take(&mut self.de.took_raw_byte) {
            self.raw_bytes += 1;
        } else {
            self.values += 1;
        }
        if self.raw_bytes > 0 && self.values > 0 {
            return Err(Error::MixedOpaque);
        }
        if self.left == 0 && self.raw_bytes > 0 {
            self.de.take(padding(self.raw_bytes))?;
        }
        Ok(Some(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// A union being decoded: the discriminant was already read.
struct Union<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    index: u32,
}

impl<'a, 'de> de::EnumAccess<'de> for Union<'a, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let de: de::value::U32Deserializer<Error> = self.index.into_deserializer();
        Ok((seed.deserialize(de)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Union<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Elements::new(self.de, len, false))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(Elements::new(self.de, fields.len(), false))
    }
}

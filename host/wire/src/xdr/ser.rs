//! XDR encoder.

use super::{Error, Limits, discriminant, padding};
use serde::ser::{self, Serialize};

/// Encodes `value` into a new buffer with libvirt's limits.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    to_vec_with_limits(value, Limits::LIBVIRT)
}

/// Encodes `value` into a new buffer with the given limits.
pub fn to_vec_with_limits<T: Serialize + ?Sized>(
    value: &T,
    limits: Limits,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    value.serialize(&mut Serializer::new(&mut out, limits))?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`; on error `out` is left as it was.
pub fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    let start = out.len();
    let res = value.serialize(&mut Serializer::new(out, Limits::LIBVIRT));
    if res.is_err() {
        out.truncate(start);
    }
    res
}

/// The XDR serializer; appends to a byte vector.
#[derive(Debug)]
pub struct Serializer<'a> {
    out: &'a mut Vec<u8>,
    limits: Limits,
    /// The next value is a direct element of an array: a `u8` is then a raw byte.
    byte_element: bool,
    /// Set by `serialize_u8` when it wrote a raw byte for an array element.
    wrote_raw_byte: bool,
}

impl<'a> Serializer<'a> {
    /// A serializer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>, limits: Limits) -> Self {
        Serializer {
            out,
            limits,
            byte_element: false,
            wrote_raw_byte: false,
        }
    }

    fn put_u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn put_opaque(&mut self, bytes: &[u8], max: usize) -> Result<(), Error> {
        if bytes.len() > max || u32::try_from(bytes.len()).is_err() {
            return Err(Error::LengthExceeded {
                len: bytes.len(),
                max,
            });
        }
        self.put_u32(bytes.len() as u32);
        self.out.extend_from_slice(bytes);
        self.pad(bytes.len());
        Ok(())
    }

    fn pad(&mut self, len: usize) {
        self.out.extend_from_slice(&[0u8; 3][..padding(len)]);
    }

    /// Marks the start of a value that is not a packed byte.
    fn plain(&mut self) {
        self.byte_element = false;
    }

    fn compound(&mut self, pack_bytes: bool) -> Compound<'_, 'a> {
        Compound {
            ser: self,
            pack_bytes,
            raw_bytes: 0,
            values: 0,
        }
    }
}

/// State of an array, tuple or struct being written.
#[derive(Debug)]
pub struct Compound<'s, 'a> {
    ser: &'s mut Serializer<'a>,
    pack_bytes: bool,
    raw_bytes: usize,
    values: usize,
}

impl Compound<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.ser.byte_element = self.pack_bytes;
        self.ser.wrote_raw_byte = false;
        value.serialize(&mut *self.ser)?;
        self.ser.byte_element = false;
        if std::mem::take(&mut self.ser.wrote_raw_byte) {
            self.raw_bytes += 1;
        } else {
            self.values += 1;
        }
        if self.raw_bytes > 0 && self.values > 0 {
            return Err(Error::MixedOpaque);
        }
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        self.ser.pad(self.raw_bytes);
        Ok(())
    }
}

macro_rules! plain_int {
    ($name:ident, $ty:ty, $conv:ty) => {
        fn $name(self, v: $ty) -> Result<(), Error> {
            self.plain();
            self.out.extend_from_slice(&<$conv>::from(v).to_be_bytes());
            Ok(())
        }
    };
}

impl<'s, 'a> ser::Serializer for &'s mut Serializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'a>;
    type SerializeTuple = Compound<'s, 'a>;
    type SerializeTupleStruct = Compound<'s, 'a>;
    type SerializeTupleVariant = Compound<'s, 'a>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = Compound<'s, 'a>;
    type SerializeStructVariant = Compound<'s, 'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.plain();
        self.put_u32(u32::from(v));
        Ok(())
    }

    plain_int!(serialize_i8, i8, i32);
    plain_int!(serialize_i16, i16, i32);
    plain_int!(serialize_i32, i32, i32);
    plain_int!(serialize_i64, i64, i64);
    plain_int!(serialize_u16, u16, u32);
    plain_int!(serialize_u32, u32, u32);
    plain_int!(serialize_u64, u64, u64);
    plain_int!(serialize_f32, f32, f32);
    plain_int!(serialize_f64, f64, f64);

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        if std::mem::take(&mut self.byte_element) {
            self.out.push(v);
            self.wrote_raw_byte = true;
        } else {
            self.put_u32(u32::from(v));
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.plain();
        self.put_u32(u32::from(v));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.plain();
        let max = self.limits.max_string;
        self.put_opaque(v.as_bytes(), max)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.plain();
        let max = self.limits.max_opaque;
        self.put_opaque(v, max)
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.plain();
        self.put_u32(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.plain();
        self.put_u32(1);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.plain();
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.plain();
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.plain();
        let d = discriminant(index, variant)?;
        self.put_u32(d as u32);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        // keep `byte_element`: a newtype around a u8 array element is still a byte
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.serialize_unit_variant(_name, index, variant)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'s, 'a>, Error> {
        self.plain();
        let len = len.ok_or(Error::UnknownLength)?;
        let max = self.limits.max_elements;
        if len > max || u32::try_from(len).is_err() {
            return Err(Error::LengthExceeded { len, max });
        }
        self.put_u32(len as u32);
        Ok(self.compound(true))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'s, 'a>, Error> {
        self.plain();
        Ok(self.compound(true))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, Error> {
        self.plain();
        Ok(self.compound(false))
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, Error> {
        self.serialize_unit_variant(name, index, variant)?;
        Ok(self.compound(false))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(Error::Unsupported("map"))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'s, 'a>, Error> {
        self.plain();
        Ok(self.compound(false))
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, Error> {
        self.serialize_unit_variant(name, index, variant)?;
        Ok(self.compound(false))
    }

    fn serialize_i128(self, _v: i128) -> Result<(), Error> {
        Err(Error::Unsupported("i128"))
    }

    fn serialize_u128(self, _v: u128) -> Result<(), Error> {
        Err(Error::Unsupported("u128"))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

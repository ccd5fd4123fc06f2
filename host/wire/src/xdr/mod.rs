//! A small serde codec for Sun XDR (RFC 4506), as used by libvirt's RPC.
//!
//! Mapping of the serde data model onto XDR:
//!
//! | Rust / serde                         | XDR                                               |
//! |--------------------------------------|---------------------------------------------------|
//! | `bool`                               | `bool`: 4 bytes, 0 or 1                           |
//! | `i8`, `i16`, `i32`                   | `int` (`char`, `short` also take 4 bytes)         |
//! | `u8`, `u16`, `u32`                   | `unsigned int` (`unsigned char`/`short` too)      |
//! | `i64` / `u64`                        | `hyper` / `unsigned hyper`                        |
//! | `f32` / `f64`                        | `float` / `double`                                |
//! | `char`                               | `unsigned int` holding the code point             |
//! | `String`, `&str`                     | `string<>`: length, bytes, zero padding           |
//! | `Option<T>`                          | optional `T *`: u32 0/1 (non-0 read as 1), value  |
//! | `Vec<T>`                             | variable array `T<>`: u32 count, then elements    |
//! | `[T; N]`, tuples                     | fixed array `T[N]`: the elements, no count        |
//! | `Vec<u8>`, `[u8; N]`, bytes          | `opaque<>` / `opaque[N]`: packed bytes, padded    |
//! | struct                               | struct: the fields in declaration order           |
//! | enum                                 | discriminated union (see below)                   |
//! | `()`, unit structs                   | `void`: nothing                                   |
//!
//! `u8` values are packed as raw bytes only when they are the *direct* elements of a
//! sequence or a tuple (that is what makes `Vec<u8>` an `opaque<>` and `[u8; 16]` an
//! `opaque[16]`); a `u8` struct field is an `unsigned char` and takes 4 bytes, and
//! `Vec<i8>` / `[i8; N]` are XDR `char` arrays, 4 bytes per element.
//!
//! Enums are unions. The discriminant is an `int`: the variant's position, unless every
//! variant of the enum is renamed to a decimal number (`#[serde(rename = "7")]`), in
//! which case that number is the discriminant.
//!
//! Decoding never panics and never allocates more than the input can justify: every
//! length is checked against the bytes left and against [`Limits`]. Padding bytes are
//! skipped without being checked, like the C XDR library does.

mod de;
mod ser;

pub use de::{Deserializer, from_bytes, from_bytes_prefix, from_bytes_with_limits};
pub use ser::{Serializer, to_vec, to_vec_with_limits, to_writer};

use std::fmt;

/// Errors of the XDR codec.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("truncated input: needed {needed} more bytes, {remaining} left")]
    Truncated { needed: usize, remaining: usize },
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("length {len} exceeds the maximum {max}")]
    LengthExceeded { len: usize, max: usize },
    #[error("invalid length {len}, expected {expected}")]
    InvalidLength { len: usize, expected: String },
    #[error("invalid bool value {0}")]
    InvalidBool(u32),
    #[error("invalid char code point {0:#x}")]
    InvalidChar(u32),
    #[error("string is not valid utf-8")]
    InvalidUtf8,
    #[error("value {value} out of range for {ty}")]
    OutOfRange { value: i64, ty: &'static str },
    #[error("unknown union discriminant {discriminant} for {name}")]
    UnknownDiscriminant {
        discriminant: i32,
        name: &'static str,
    },
    #[error("opaque bytes mixed with other values in one array")]
    MixedOpaque,
    #[error("sequence without a known length")]
    UnknownLength,
    #[error("{0} is not supported by xdr")]
    Unsupported(&'static str),
    #[error("{0}")]
    Custom(String),
}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Custom(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Custom(msg.to_string())
    }

    fn invalid_length(len: usize, exp: &dyn serde::de::Expected) -> Self {
        Error::InvalidLength {
            len,
            expected: exp.to_string(),
        }
    }
}

/// Upper bounds applied while encoding and decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest `string<>` accepted (libvirt's `REMOTE_STRING_MAX`).
    pub max_string: usize,
    /// Longest `opaque<>` accepted.
    pub max_opaque: usize,
    /// Most elements of a variable-length array.
    pub max_elements: usize,
}

impl Limits {
    /// libvirt's limits: strings up to 4 MiB, opaque and arrays bounded by the message size.
    pub const LIBVIRT: Limits = Limits {
        max_string: 4_194_304,
        max_opaque: 33_554_432,
        max_elements: 33_554_432,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::LIBVIRT
    }
}

/// Number of zero bytes that follow `len` bytes of opaque data.
pub(crate) const fn padding(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// Maps a variant to its XDR discriminant (see the module docs).
pub(crate) fn discriminant(variant_index: u32, variant: &str) -> Result<i32, Error> {
    if let Ok(number) = variant.parse::<i32>() {
        return Ok(number);
    }
    i32::try_from(variant_index).map_err(|_| Error::OutOfRange {
        value: i64::from(variant_index),
        ty: "union discriminant",
    })
}

/// Serde helpers for bounded variable arrays (`T name<MAX>`): use with
/// `#[serde(deserialize_with = "crate::xdr::bounded::<MAX, _, _>")]`.
pub fn bounded<'de, const MAX: usize, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct BoundedVisitor<const MAX: usize, T>(std::marker::PhantomData<T>);

    impl<'de, const MAX: usize, T: serde::Deserialize<'de>> serde::de::Visitor<'de>
        for BoundedVisitor<MAX, T>
    {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "at most {MAX} elements")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let len = seq.size_hint().unwrap_or(0);
            if len > MAX {
                return Err(serde::de::Error::invalid_length(len, &self));
            }
            let mut out = Vec::with_capacity(len.min(4096));
            while let Some(item) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(serde::de::Error::invalid_length(MAX + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_seq(BoundedVisitor::<MAX, T>(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Handle {
        name: String,
        uuid: [u8; 16],
        id: i32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        flag: bool,
        small: u8,
        signed_char: i8,
        short: i16,
        int: i32,
        uint: u32,
        hyper: i64,
        uhyper: u64,
        float: f32,
        double: f64,
        text: String,
        maybe: Option<String>,
        nothing: Option<u32>,
        list: Vec<i32>,
        blob: Vec<u8>,
        chars: [i8; 3],
        fixed: [u8; 5],
        handle: Handle,
        handles: Vec<Handle>,
        unit: (),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Value {
        #[serde(rename = "1")]
        Int(i32),
        #[serde(rename = "6")]
        Bool(bool),
        #[serde(rename = "7")]
        Text(String),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Plain {
        Zero,
        One(u32),
        Two { a: u32, b: String },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Limited {
        #[serde(deserialize_with = "bounded::<2, _, _>")]
        items: Vec<u32>,
    }

    fn sample() -> Everything {
        Everything {
            flag: true,
            small: 200,
            signed_char: -2,
            short: -3,
            int: -4,
            uint: 5,
            hyper: -6,
            uhyper: 7,
            float: 1.5,
            double: -2.25,
            text: "hello".into(),
            maybe: Some("x".into()),
            nothing: None,
            list: vec![1, -1],
            blob: vec![1, 2, 3],
            chars: [1, -1, 65],
            fixed: [9, 8, 7, 6, 5],
            handle: Handle {
                name: "vm".into(),
                uuid: [0xab; 16],
                id: -1,
            },
            handles: vec![Handle {
                name: "a".into(),
                uuid: [1; 16],
                id: 3,
            }],
            unit: (),
        }
    }

    #[test]
    fn primitive_encodings() {
        assert_eq!(to_vec(&true).unwrap(), [0, 0, 0, 1]);
        assert_eq!(to_vec(&-1i8).unwrap(), [0xff; 4]);
        assert_eq!(to_vec(&7u8).unwrap(), [0, 0, 0, 7]);
        assert_eq!(to_vec(&-2i16).unwrap(), [0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(
            to_vec(&0x0102_0304_0506_0708u64).unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(to_vec(&1.0f32).unwrap(), [0x3f, 0x80, 0, 0]);
        assert_eq!(
            to_vec(&"abcde").unwrap(),
            [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]
        );
        assert_eq!(to_vec(&"").unwrap(), [0, 0, 0, 0]);
        assert_eq!(to_vec(&Some(2u32)).unwrap(), [0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(to_vec(&None::<u32>).unwrap(), [0, 0, 0, 0]);
        assert_eq!(to_vec(&vec![1u8, 2]).unwrap(), [0, 0, 0, 2, 1, 2, 0, 0]);
        assert_eq!(to_vec(&[1u8, 2, 3, 4]).unwrap(), [1, 2, 3, 4]);
        assert_eq!(to_vec(&[1u8, 2, 3]).unwrap(), [1, 2, 3, 0]);
        assert_eq!(to_vec(&[1i8, 2]).unwrap(), [0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(
            to_vec(&vec![-1i32]).unwrap(),
            [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(to_vec(&()).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn handle_bytes() {
        let h = Handle {
            name: "test".into(),
            uuid: [0x11; 16],
            id: 1,
        };
        let mut expected = vec![0, 0, 0, 4, b't', b'e', b's', b't'];
        expected.extend([0x11; 16]);
        expected.extend([0, 0, 0, 1]);
        assert_eq!(to_vec(&h).unwrap(), expected);
        assert_eq!(from_bytes::<Handle>(&expected).unwrap(), h);
    }

    #[test]
    fn round_trip_everything() {
        let value = sample();
        let bytes = to_vec(&value).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(from_bytes::<Everything>(&bytes).unwrap(), value);
    }

    #[test]
    fn unions() {
        assert_eq!(
            to_vec(&Value::Text("a".into())).unwrap(),
            [0, 0, 0, 7, 0, 0, 0, 1, b'a', 0, 0, 0]
        );
        for v in [Value::Int(-5), Value::Bool(true), Value::Text("xyz".into())] {
            let bytes = to_vec(&v).unwrap();
            assert_eq!(from_bytes::<Value>(&bytes).unwrap(), v);
        }
        assert_eq!(to_vec(&Plain::Zero).unwrap(), [0, 0, 0, 0]);
        assert_eq!(to_vec(&Plain::One(9)).unwrap(), [0, 0, 0, 1, 0, 0, 0, 9]);
        for v in [
            Plain::Zero,
            Plain::One(3),
            Plain::Two {
                a: 1,
                b: "q".into(),
            },
        ] {
            let bytes = to_vec(&v).unwrap();
            assert_eq!(from_bytes::<Plain>(&bytes).unwrap(), v);
        }
        assert_eq!(
            from_bytes::<Value>(&[0, 0, 0, 2, 0, 0, 0, 0]),
            Err(Error::UnknownDiscriminant {
                discriminant: 2,
                name: "Value"
            })
        );
        assert_eq!(
            from_bytes::<Plain>(&[0xff, 0xff, 0xff, 0xff]),
            Err(Error::UnknownDiscriminant {
                discriminant: -1,
                name: "Plain"
            })
        );
    }

    #[test]
    fn malformed_input() {
        let bytes = to_vec(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                from_bytes::<Everything>(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            from_bytes::<bool>(&[0, 0, 0, 2]),
            Err(Error::InvalidBool(2))
        );
        // a non-zero optional-data flag is "present", as libvirtd's XDR reads it
        assert_eq!(
            from_bytes::<Option<u32>>(&[1, 0, 0, 0, 0, 0, 0, 3]),
            Ok(Some(3))
        );
        assert_eq!(
            from_bytes::<u32>(&[0, 0, 0, 1, 0]),
            Err(Error::TrailingBytes(1))
        );
        assert_eq!(
            from_bytes::<i8>(&[0, 0, 1, 0]),
            Err(Error::OutOfRange {
                value: 256,
                ty: "i8"
            })
        );
        assert_eq!(
            from_bytes::<String>(&[0, 0, 0, 2, 0xff, 0xfe, 0, 0]),
            Err(Error::InvalidUtf8)
        );
        // a huge declared length must fail without allocating
        assert!(matches!(
            from_bytes::<Vec<u32>>(&[0x00, 0xff, 0xff, 0xff, 0, 0, 0, 1]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            from_bytes::<String>(&[0x7f, 0xff, 0xff, 0xff]),
            Err(Error::LengthExceeded { .. })
        ));
        assert!(matches!(
            from_bytes::<char>(&[0, 0x11, 0, 0]),
            Err(Error::InvalidChar(_))
        ));
    }

    #[test]
    fn limits() {
        let small = Limits {
            max_string: 3,
            max_opaque: 2,
            max_elements: 1,
        };
        assert_eq!(
            to_vec_with_limits(&"abcd", small),
            Err(Error::LengthExceeded { len: 4, max: 3 })
        );
        let bytes = to_vec(&"abcd").unwrap();
        assert_eq!(
            from_bytes_with_limits::<String>(&bytes, small),
            Err(Error::LengthExceeded { len: 4, max: 3 })
        );
        let bytes = to_vec(&vec![1u32, 2]).unwrap();
        assert_eq!(
            from_bytes_with_limits::<Vec<u32>>(&bytes, small),
            Err(Error::LengthExceeded { len: 2, max: 1 })
        );
        let bytes = to_vec(&Limited {
            items: vec![1, 2, 3],
        })
        .unwrap();
        assert!(matches!(
            from_bytes::<Limited>(&bytes),
            Err(Error::InvalidLength { len: 3, .. })
        ));
        let bytes = to_vec(&Limited { items: vec![1, 2] }).unwrap();
        assert_eq!(from_bytes::<Limited>(&bytes).unwrap().items, [1, 2]);
    }

    #[test]
    fn unsupported_shapes() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(1u32, 2u32);
        assert_eq!(to_vec(&map), Err(Error::Unsupported("map")));
        #[derive(Serialize)]
        struct Mixed((u8, u32));
        assert_eq!(to_vec(&Mixed((1, 2))), Err(Error::MixedOpaque));
    }

    #[test]
    fn borrowed_strings() {
        #[derive(Deserialize)]
        struct Borrowed<'a> {
            name: &'a str,
            data: &'a [u8],
        }
        let bytes = [0, 0, 0, 1, b'z', 0, 0, 0, 0, 0, 0, 2, 7, 8, 0, 0];
        let b: Borrowed = from_bytes(&bytes).unwrap();
        assert_eq!((b.name, b.data), ("z", &[7u8, 8][..]));
    }
}

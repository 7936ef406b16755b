//! A small BER reader, just enough for the CMS subset that KMS emits.
//!
//! Hand-written because KMS sends BER with indefinite lengths and chunked
//! strings, and the maintained ASN.1 crates read DER only. The reader works on
//! borrowed slices, never recurses (indefinite lengths are resolved by an
//! iterative scan, chunked strings by an explicit stack), bounds nesting by
//! [`MAX_DEPTH`], checks every length against the bytes actually remaining
//! before slicing or allocating, and uses only `get`-style access so that no
//! input can make it panic.

use std::borrow::Cow;

use super::CmsError;

/// Deepest nesting of constructed elements accepted. KMS blobs reach 10
/// (ContentInfo down to the MGF1 hash NULL); the margin allows a little BER
/// variation (e.g. a re-chunked string) while still refusing adversarial
/// towers of indefinite-length headers.
pub const MAX_DEPTH: usize = 24;

/// ASN.1 tag class (the top two bits of the identifier octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// A decoded identifier: class, primitive/constructed bit and tag number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tag {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
}

impl Tag {
    pub const INTEGER: Tag = Tag::universal(2, false);
    pub const OCTET_STRING: Tag = Tag::universal(4, false);
    pub const OCTET_STRING_CONSTRUCTED: Tag = Tag::universal(4, true);
    pub const NULL: Tag = Tag::universal(5, false);
    pub const OID: Tag = Tag::universal(6, false);
    pub const SEQUENCE: Tag = Tag::universal(16, true);
    pub const SET: Tag = Tag::universal(17, true);

    pub const fn universal(number: u32, constructed: bool) -> Tag {
        Tag { class: Class::Universal, constructed, number }
    }

    pub const fn context(number: u32, constructed: bool) -> Tag {
        Tag { class: Class::Context, constructed, number }
    }

    /// Same class and number, ignoring the form: BER lets string types be
    /// sent either primitive or constructed (chunked).
    pub fn same_type(self, other: Tag) -> bool {
        self.class == other.class && self.number == other.number
    }

    /// The end-of-contents marker is universal primitive tag 0.
    fn is_end_of_contents(self) -> bool {
        self.class == Class::Universal && self.number == 0
    }
}

/// One element: its tag and content bytes, borrowed from the input.
#[derive(Clone, Copy, Debug)]
pub(super) struct Element<'a> {
    pub tag: Tag,
    /// Content octets. For an indefinite length this stops before the
    /// end-of-contents marker.
    pub content: &'a [u8],
    /// The whole encoding: identifier, length, content and any end-of-contents.
    pub raw: &'a [u8],
    /// Offset of the identifier octet in the original input (for errors).
    pub offset: usize,
    content_offset: usize,
    depth: usize,
}

/// Reads consecutive elements from one level of a BER encoding.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data` within the original input, so errors point at it.
    base: usize,
    depth: usize,
}

struct Header {
    tag: Tag,
    /// `None` for the indefinite form.
    len: Option<usize>,
    header_len: usize,
}

fn malformed(offset: usize, reason: &'static str) -> CmsError {
    CmsError::Malformed { offset, reason }
}

/// Decodes the identifier and length octets at `data[at..]`.
fn read_header(data: &[u8], at: usize, base: usize) -> Result<Header, CmsError> {
    let offset = base.saturating_add(at);
    let mut i = at;
    let mut next = |what: &'static str| -> Result<u8, CmsError> {
        let byte = data.get(i).copied().ok_or(malformed(offset, what))?;
        i += 1;
        Ok(byte)
    };
    let first = next("truncated identifier")?;
    let class = match first >> 6 {
        0 => Class::Universal,
        1 => Class::Application,
        2 => Class::Context,
        _ => Class::Private,
    };
    let constructed = first & 0x20 != 0;
    let mut number = u32::from(first & 0x1f);
    if number == 0x1f {
        // High-tag-number form: base-128 digits, at most four (28 bits).
        number = 0;
        for digit in 0.. {
            let b = next("truncated identifier")?;
            if digit == 0 && b == 0x80 {
                return Err(malformed(offset, "non-minimal tag number"));
            }
            if digit == 4 {
                return Err(malformed(offset, "tag number too large"));
            }
            number = (number << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        if number < 0x1f {
            return Err(malformed(offset, "non-minimal tag number"));
        }
    }
    let first_len = next("truncated length")?;
    let len = match first_len {
        0x00..=0x7f => Some(usize::from(first_len)),
        0x80 if constructed => None,
        0x80 => {
            return Err(malformed(offset, "indefinite length on a primitive element"));
        }
        0xff => return Err(malformed(offset, "reserved length octet 0xff")),
        _ => {
            // Long form. BER allows leading zero octets, so only the
            // value is limited: four octets cover anything below 4 GiB,
            // far beyond the input limit.
            let count = first_len & 0x7f;
            if count > 4 {
                return Err(malformed(offset, "length field longer than 4 octets"));
            }
            let mut value: u64 = 0;
            for _ in 0..count {
                value = (value << 8) | u64::from(next("truncated length")?);
            }
            Some(usize::try_from(value).map_err(|_| malformed(offset, "length too large"))?)
        }
    };
    let tag = Tag { class, constructed, number };
    if tag.is_end_of_contents() && (constructed || len != Some(0)) {
        return Err(malformed(offset, "invalid end-of-contents marker"));
    }
    Ok(Header { tag, len, header_len: i - at })
}

/// Length of the contents of an indefinite-length element whose contents
/// start at `data[start..]`, not counting the closing end-of-contents.
///
/// Iterative on purpose: it counts how many indefinite elements are open
/// and skips definite ones whole, so hostile nesting costs no stack.
fn indefinite_content_len(data: &[u8], start: usize, base: usize, depth: usize) -> Result<usize, CmsError> {
    let mut pos = start;
    let mut open = 1usize;
    loop {
        let header = read_header(data, pos, base)?;
        let here = pos;
        pos += header.header_len;
        if header.tag.is_end_of_contents() {
            open -= 1;
            if open == 0 {
                return Ok(here - start);
            }
            continue;
        }
        match header.len {
            Some(len) => {
                pos = pos
                    .checked_add(len)
                    .filter(|end| *end <= data.len())
                    .ok_or(malformed(base + here, "length exceeds the remaining input"))?;
            }
            None => {
                open += 1;
                if depth + open > MAX_DEPTH {
                    return Err(CmsError::TooDeep { max: MAX_DEPTH });
                }
            }
        }
    }
}

impl<'a> Reader<'a> {
    /// A reader over a complete top-level input.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0, base: 0, depth: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Absolute offset of the next element (for errors).
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Reads the next element at this level.
    pub fn read(&mut self) -> Result<Element<'a>, CmsError> {
        let start = self.pos;
        let offset = self.base + start;
        let header = read_header(self.data, start, self.base)?;
        if header.tag.is_end_of_contents() {
            // A marker that closes nothing at this level.
            return Err(malformed(offset, "unexpected end-of-contents marker"));
        }
        let content_start = start + header.header_len;
        let (content_len, end) = match header.len {
            Some(len) => {
                let end = content_start
                    .checked_add(len)
                    .filter(|end| *end <= self.data.len())
                    .ok_or(malformed(offset, "length exceeds the remaining input"))?;
                (len, end)
            }
            None => {
                if self.depth + 1 > MAX_DEPTH {
                    return Err(CmsError::TooDeep { max: MAX_DEPTH });
                }
                let len = indefinite_content_len(self.data, content_start, self.base, self.depth + 1)?;
                // The scan found a two-byte end-of-contents right after.
                (len, content_start + len + 2)
            }
        };
        let content = self
            .data
            .get(content_start..content_start + content_len)
            .ok_or(malformed(offset, "length exceeds the remaining input"))?;
        let raw = self.data.get(start..end).ok_or(malformed(offset, "length exceeds the remaining input"))?;
        self.pos = end;
        Ok(Element {
            tag: header.tag,
            content,
            raw,
            offset,
            content_offset: self.base + content_start,
            depth: self.depth,
        })
    }

    /// Reads the next element and requires exactly `tag`.
    pub fn expect(&mut self, tag: Tag, expected: &'static str) -> Result<Element<'a>, CmsError> {
        let offset = self.offset();
        if self.is_empty() {
            return Err(CmsError::UnexpectedElement { offset, expected });
        }
        let element = self.read()?;
        if element.tag != tag {
            return Err(CmsError::UnexpectedElement { offset, expected });
        }
        Ok(element)
    }

    /// Reads the next element and requires `tag` in either form.
    pub fn expect_string(&mut self, tag: Tag, expected: &'static str) -> Result<Element<'a>, CmsError> {
        let offset = self.offset();
        if self.is_empty() {
            return Err(CmsError::UnexpectedElement { offset, expected });
        }
        let element = self.read()?;
        if !element.tag.same_type(tag) {
            return Err(CmsError::UnexpectedElement { offset, expected });
        }
        Ok(element)
    }

    /// Requires that nothing is left at this level.
    pub fn finish(&self, expected: &'static str) -> Result<(), CmsError> {
        if self.is_empty() { Ok(()) } else { Err(CmsError::UnexpectedElement { offset: self.offset(), expected }) }
    }
}

impl<'a> Element<'a> {
    /// A reader over the contents of this constructed element.
    pub fn reader(&self) -> Result<Reader<'a>, CmsError> {
        if !self.tag.constructed {
            return Err(malformed(self.offset, "expected a constructed element"));
        }
        if self.depth + 1 > MAX_DEPTH {
            return Err(CmsError::TooDeep { max: MAX_DEPTH });
        }
        Ok(Reader { data: self.content, pos: 0, base: self.content_offset, depth: self.depth + 1 })
    }

    /// The value of a string-typed element (OCTET STRING or an IMPLICIT
    /// tag over one), and how it was sent: `None` for primitive, otherwise
    /// the number of primitive segments concatenated.
    ///
    /// Segments of a constructed string must be universal OCTET STRINGs
    /// (X.690 8.7.3.2), whatever the outer tag; they may nest.
    pub fn string_octets(&self) -> Result<(Cow<'a, [u8]>, Option<usize>), CmsError> {
        if !self.tag.constructed {
            return Ok((Cow::Borrowed(self.content), None));
        }
        // The concatenation is never longer than `self.content`, which
        // bounds the allocation by the input size.
        let mut out = Vec::with_capacity(self.content.len());
        let mut segments = 0usize;
        let mut stack = vec![self.reader()?];
        while let Some(level) = stack.last_mut() {
            if level.is_empty() {
                stack.pop();
                continue;
            }
            let segment = level.read()?;
            if segment.tag == Tag::OCTET_STRING {
                out.extend_from_slice(segment.content);
                segments += 1;
            } else if segment.tag == Tag::OCTET_STRING_CONSTRUCTED {
                stack.push(segment.reader()?);
            } else {
                return Err(CmsError::UnexpectedElement {
                    offset: segment.offset,
                    expected: "OCTET STRING segment of a constructed string",
                });
            }
        }
        Ok((Cow::Owned(out), Some(segments)))
    }

    /// A small non-negative INTEGER such as a CMS version number.
    pub fn small_uint(&self) -> Result<u8, CmsError> {
        match self.content {
            [value] if *value < 0x80 => Ok(*value),
            _ => Err(malformed(self.offset, "version is not a small non-negative INTEGER")),
        }
    }
}

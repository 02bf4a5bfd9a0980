//! Reading and writing NumPy `.npz` archives (what `np.savez` and `np.savez_compressed`
//! write: a zip of `.npy` files, stored or deflated) as named [`Tensor`]s.
//!
//! Supported: little-endian, C-order arrays of f32, f64, f16, i64, i32, i8, u8 and bool.
//! Everything else (Fortran order, big-endian, other dtypes, pickled objects) is refused
//! with an error naming the file and the array. The `.npy` header is untrusted: nothing is
//! allocated from its shape before the data bytes are known to be there.

use crate::atomic::AtomicFile;
use crate::error::{OnnxError, Result};
use crate::tensor::{checked_numel, DType, Tensor, TensorData};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The magic string that starts every `.npy` file.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// Longest header we accept; NumPy itself refuses headers over 10000 bytes by default.
const MAX_HEADER_LEN: usize = 1 << 16;
/// NumPy pads `magic + version + length + header` to a multiple of this.
const HEADER_ALIGN: usize = 64;

/// How [`write_npz`] stores the arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpzCompression {
    /// Uncompressed entries, like `np.savez`.
    Stored,
    /// Deflated entries, like `np.savez_compressed`.
    Deflated,
}

/// Reads every array of the `.npz` file at `path`, in archive order, keyed by entry
/// name without the `.npy` suffix.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| OnnxError::io(path, "cannot open", e))?;
    read_npz_from(std::io::BufReader::new(file), path)
}

/// Reads every array of an `.npz` archive from `reader`; `path` only labels errors.
pub fn read_npz_from(reader: impl Read + Seek, path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| OnnxError::invalid(path, "archive", format!("not a readable .npz (zip) file: {e}")))?;
    let mut arrays = Vec::with_capacity(archive.len().min(1024));
    for index in 0..archive.len() {
        let entry =
            archive.by_index(index).map_err(|e| OnnxError::invalid(path, format!("zip entry #{index}"), format!("cannot read: {e}")))?;
        let entry_name = entry.name().to_string();
        if entry_name.ends_with('/') {
            continue;
        }
        let key = entry_name.strip_suffix(".npy").unwrap_or(&entry_name).to_string();
        let context = format!("array '{key}'");
        let tensor = read_npy(entry).map_err(|message| OnnxError::invalid(path, &context, message))?;
        arrays.push((key, tensor));
    }
    Ok(arrays)
}

/// Writes `arrays` to `path` as an `.npz` archive NumPy can load (entries `NAME.npy`),
/// atomically (see [`AtomicFile`]). bf16 tensors are refused: NumPy has no such dtype.
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(&str, &Tensor)], compression: NpzCompression) -> Result<()> {
    let path = path.as_ref();
    let mut file = AtomicFile::create(path)?;
    write_npz_to(&mut file, arrays, compression, path)?;
    file.commit()
}

/// Writes `arrays` as an `.npz` archive into `writer` and returns it; `path` only labels errors.
pub fn write_npz_to<W: Write + Seek>(
    writer: W,
    arrays: &[(&str, &Tensor)],
    compression: NpzCompression,
    path: impl AsRef<Path>,
) -> Result<W> {
    let path = path.as_ref();
    let method = match compression {
        NpzCompression::Stored => zip::CompressionMethod::Stored,
        NpzCompression::Deflated => zip::CompressionMethod::Deflated,
    };
    let zip_error = |context: String| move |e: zip::result::ZipError| OnnxError::invalid(path, context, format!("cannot write: {e}"));
    let mut zip = zip::ZipWriter::new(writer);
    for (name, tensor) in arrays {
        let context = format!("array '{name}'");
        let npy = encode_npy(tensor).map_err(|message| OnnxError::invalid(path, &context, message))?;
        let options =
            zip::write::SimpleFileOptions::default().compression_method(method).large_file(npy.len() as u64 >= u64::from(u32::MAX));
        zip.start_file(format!("{name}.npy"), options).map_err(zip_error(context.clone()))?;
        zip.write_all(&npy).map_err(|e| OnnxError::io(path, "cannot write", e))?;
    }
    zip.finish().map_err(zip_error("archive".to_string()))
}

/// Decodes one `.npy` stream. The error message says what is wrong, without the file
/// and array name (the caller adds them).
pub fn read_npy(mut reader: impl Read) -> std::result::Result<Tensor, String> {
    let mut preamble = [0u8; 8];
    reader.read_exact(&mut preamble).map_err(|_| "truncated .npy header".to_string())?;
    if &preamble[..6] != NPY_MAGIC {
        return Err("not a .npy array (bad magic)".to_string());
    }
    let header_len = match preamble[6] {
        1 => {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len).map_err(|_| "truncated .npy header".to_string())?;
            usize::from(u16::from_le_bytes(len))
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(|_| "truncated .npy header".to_string())?;
            u32::from_le_bytes(len) as usize
        }
        major => return Err(format!("unsupported .npy format version {major}.{}", preamble[7])),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(format!("header of {header_len} bytes is larger than the {MAX_HEADER_LEN} accepted"));
    }
    let mut header = Vec::new();
    (&mut reader).take(header_len as u64).read_to_end(&mut header).map_err(|e| format!("cannot read header: {e}"))?;
    if header.len() != header_len {
        return Err("truncated .npy header".to_string());
    }
    let header = std::str::from_utf8(&header).map_err(|_| "header is not UTF-8".to_string())?;
    let header = parse_header(header)?;
    let count = checked_numel(&header.shape).map_err(|issue| issue.0)?;
    let expected = count.checked_mul(header.dtype.size()).ok_or_else(|| format!("shape {:?} has too many bytes", header.shape))?;
    // Grows with the bytes actually present, so a lying header cannot make us allocate.
    let mut data = Vec::new();
    (&mut reader).take(expected as u64).read_to_end(&mut data).map_err(|e| format!("cannot read data: {e}"))?;
    if data.len() != expected {
        return Err(format!(
            "data is truncated: shape {:?} of {:?} needs {expected} bytes, found {}",
            header.shape,
            header.dtype,
            data.len()
        ));
    }
    let mut extra = [0u8; 1];
    if reader.read(&mut extra).map_err(|e| format!("cannot read data: {e}"))? != 0 {
        return Err(format!("has bytes after the {expected} bytes of data its shape {:?} needs", header.shape));
    }
    let data = TensorData::from_le_bytes(header.dtype, &data, count).map_err(|issue| issue.0)?;
    Ok(Tensor { shape: header.shape, data })
}

/// Encodes a tensor as a version 1.0 `.npy` file (version 2.0 if the header needs it).
pub fn encode_npy(tensor: &Tensor) -> std::result::Result<Vec<u8>, String> {
    let descr = match tensor.dtype() {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
        DType::Bf16 => return Err("bf16 has no NumPy dtype; convert it to f32 first".to_string()),
    };
    let shape = match tensor.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let (version, len_bytes) = if header.len() + 11 < usize::from(u16::MAX) { (1u8, 2) } else { (2u8, 4) };
    let unpadded = NPY_MAGIC.len() + 2 + len_bytes + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', unpadded.next_multiple_of(HEADER_ALIGN) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(NPY_MAGIC.len() + 2 + len_bytes + header.len() + tensor.numel() * tensor.dtype().size());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header.len()).map_err(|_| "header too large".to_string())?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&tensor.data.to_le_bytes());
    Ok(out)
}

/// The fields of a `.npy` header we use.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    dtype: DType,
    shape: Vec<usize>,
}

/// Parses the header, a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> std::result::Result<NpyHeader, String> {
    let mut parser = LiteralParser { rest: text.trim_end() };
    parser.expect('{')?;
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    loop {
        if parser.eat('}') {
            break;
        }
        let key = parser.string()?;
        parser.expect(':')?;
        match key.as_str() {
            "descr" => descr = Some(parser.string()?),
            "fortran_order" => fortran_order = Some(parser.boolean()?),
            "shape" => shape = Some(parser.int_tuple()?),
            other => return Err(format!("header has an unexpected key '{other}'")),
        }
        if !parser.eat(',') {
            parser.expect('}')?;
            break;
        }
    }
    if !parser.rest.trim().is_empty() {
        return Err(format!("header has trailing text {:?}", parser.rest));
    }
    let descr = descr.ok_or("header has no 'descr'")?;
    let shape = shape.ok_or("header has no 'shape'")?;
    if fortran_order.ok_or("header has no 'fortran_order'")? {
        return Err("is stored in Fortran order; save it C-contiguous (np.ascontiguousarray)".to_string());
    }
    Ok(NpyHeader { dtype: dtype_of_descr(&descr)?, shape })
}

/// Maps a NumPy dtype string to a [`DType`], refusing big-endian and unsupported types.
fn dtype_of_descr(descr: &str) -> std::result::Result<DType, String> {
    let (order, code) = descr.split_at(descr.char_indices().nth(1).map_or(descr.len(), |(i, _)| i));
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "f2" => DType::F16,
        "i8" => DType::I64,
        "i4" => DType::I32,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        _ => return Err(format!("dtype '{descr}' is not supported (f32, f64, f16, i64, i32, i8, u8 and bool are)")),
    };
    match order {
        "<" => Ok(dtype),
        "|" if dtype.size() == 1 => Ok(dtype),
        ">" if dtype.size() == 1 => Ok(dtype),
        ">" => Err(format!("dtype '{descr}' is big-endian; save it little-endian (arr.astype('<{code}'))")),
        _ => Err(format!("dtype '{descr}' has an unsupported byte order")),
    }
}

/// A tiny parser for the Python literals that appear in `.npy` headers.
struct LiteralParser<'a> {
    rest: &'a str,
}

impl LiteralParser<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Consumes `c` (after whitespace) if it is next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("malformed header: expected '{c}' at {:?}", self.rest))
        }
    }

    /// A quoted string without escapes (dtype strings and keys have none).
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        let quote = self.rest.chars().next().filter(|&c| c == '\'' || c == '"');
        let quote = quote.ok_or_else(|| format!("malformed header: expected a string at {:?}", self.rest))?;
        let body = &self.rest[1..];
        let end = body.find(quote).ok_or("malformed header: unterminated string")?;
        self.rest = &body[end + 1..];
        Ok(body[..end].to_string())
    }

    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err(format!("malformed header: expected True or False at {:?}", self.rest))
    }

    /// `()`, `(n,)` or `(n, m, ...)` with an optional trailing comma.
    fn int_tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Ok(dims);
            }
            self.skip_space();
            let digits = self.rest.bytes().take_while(u8::is_ascii_digit).count();
            let dim =
                self.rest[..digits].parse::<usize>().map_err(|_| format!("malformed header: expected a dimension at {:?}", self.rest))?;
            self.rest = &self.rest[digits..];
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use std::io::Cursor;

    fn sample_arrays() -> Vec<(String, Tensor)> {
        let t = |shape: Vec<usize>, data| Tensor::new(shape, data).unwrap();
        vec![
            ("f32".into(), t(vec![1, 3], TensorData::F32(vec![1.5, -2.0, 3.25]))),
            ("f64".into(), t(vec![2], TensorData::F64(vec![1e-300, -0.5]))),
            ("f16".into(), t(vec![2], TensorData::F16(vec![f16::from_f32(0.5), f16::from_f32(-3.0)]))),
            ("i64".into(), t(vec![2], TensorData::I64(vec![i64::MIN, 7]))),
            ("i32".into(), t(vec![2, 1], TensorData::I32(vec![-1, 2]))),
            ("i8".into(), t(vec![2], TensorData::I8(vec![-128, 127]))),
            ("u8".into(), t(vec![2], TensorData::U8(vec![0, 255]))),
            ("b".into(), t(vec![3], TensorData::Bool(vec![true, false, true]))),
            ("scalar".into(), t(vec![], TensorData::F32(vec![4.0]))),
            ("empty".into(), t(vec![0, 3], TensorData::F32(vec![]))),
        ]
    }

    /// `np.savez_compressed` output (NumPy 2, zip64 extra fields, deflate) of the same
    /// arrays as [`sample_arrays`], so reading is checked against NumPy's own writer.
    const NUMPY_SAVEZ_COMPRESSED_HEX: &str = "\
            504b03042d0000000800000021007fad3550ffffffffffffffff070014006633322e6e7079010010008c0000000000000051000000000000\
            009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9366a2aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402\
            f91a863a0ac69a3a0ab50a64032e068603f60c40828121c00100504b03042d000000080000002100481b4c62ffffffffffffffff07001400\
            6636342e6e707901001000900000000000000051000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9366a1aea3a09e\
            965f54529498179f5f94920a12774bcc294e058a17672416a402f91a463a9a3a0ab50a1400aec8cf3f0ec9e72d6564008307fb01504b0304\
            2d0000000800000021002ddc01e6ffffffffffffffff070014006631362e6e707901001000840000000000000048000000000000009bec17\
            ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9366a4aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a463a\
            9a3a0ab50a14002e060b864300504b03042d000000080000002100b663c169ffffffffffffffff070014006936342e6e7079010010009000\
            0000000000004a000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9369a1aea3a09e965f54529498179f5f94920a12\
            774bcc294e058a17672416a402f91a463a9a3a0ab50a14002e06086860873200504b03042d00000008000000210033e9cd80ffffffffffff\
            ffff070014006933322e6e70790100100088000000000000004d000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e93\
            69a2aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a463a0a869a3a0ab50a6403aeff40c0c4c0c00000504b\
            03042d0000000800000021004581d4aaffffffffffffffff0600140069382e6e707901001000820000000000000046000000000000009bec\
            17ea1b10c9c850c650ad9e925a9c5ca46ea5a05e9369a8aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a46\
            3a9a3a0ab50a1400ae867a00504b03042d00000008000000210082bd7285ffffffffffffffff0600140075382e6e70790100100082000000\
            0000000046000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a05e536aa8aea3a09e965f54529498179f5f94920a12774b\
            cc294e058a17672416a402f91a463a9a3a0ab50a14002e86ff00504b03042d00000008000000210016938cbbffffffffffffffff05001400\
            622e6e707901001000830000000000000047000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a05e9364a8aea3a09e965f\
            54529498179f5f94920a12774bcc294e058a17672416a402f91ac63a9a3a0ab50a14002e46064600504b03042d0000000800000021008d30\
            256dffffffffffffffff0a0014007363616c61722e6e707901001000840000000000000046000000000000009bec17ea1b10c9c850c650ad\
            9e925a9c5ca46ea5a06e9366a2aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a9a3a0ab50a14012e068606\
            0700504b03042d000000080000002100a3685277ffffffffffffffff09001400656d7074792e6e7079010010008000000000000000460000\
            00000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9366a2aea3a09e965f54529498179f5f94920a12774bcc294e058a1767\
            2416a402f91a063a0ac69a3a0ab50a64032e00504b01022d032d0000000800000021007fad3550510000008c000000070000000000000000\
            0000008001000000006633322e6e7079504b01022d032d000000080000002100481b4c625100000090000000070000000000000000000000\
            80018a0000006636342e6e7079504b01022d032d0000000800000021002ddc01e64800000084000000070000000000000000000000800114\
            0100006631362e6e7079504b01022d032d000000080000002100b663c1694a00000090000000070000000000000000000000800195010000\
            6936342e6e7079504b01022d032d00000008000000210033e9cd804d00000088000000070000000000000000000000800118020000693332\
            2e6e7079504b01022d032d0000000800000021004581d4aa460000008200000006000000000000000000000080019e02000069382e6e7079\
            504b01022d032d00000008000000210082bd7285460000008200000006000000000000000000000080011c03000075382e6e7079504b0102\
            2d032d00000008000000210016938cbb470000008300000005000000000000000000000080019a030000622e6e7079504b01022d032d0000\
            000800000021008d30256d46000000840000000a00000000000000000000008001180400007363616c61722e6e7079504b01022d032d0000\
            00080000002100a3685277460000008000000009000000000000000000000080019a040000656d7074792e6e7079504b0506000000000a00\
            0a00130200001b0500000000";

    fn hex_decode(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn npz_bytes(arrays: &[(String, Tensor)], compression: NpzCompression) -> Vec<u8> {
        let refs: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_npz_to(Cursor::new(Vec::new()), &refs, compression, "mem.npz").unwrap().into_inner()
    }

    #[test]
    fn reads_numpy_savez_compressed() {
        let bytes = hex_decode(NUMPY_SAVEZ_COMPRESSED_HEX);
        let arrays = read_npz_from(Cursor::new(bytes), "fixture.npz").unwrap();
        assert_eq!(arrays, sample_arrays());
    }

    /// Our `.npy` encoding is byte-for-byte what NumPy writes, so NumPy reads it back.
    #[test]
    fn npy_bytes_equal_numpy_s() {
        let mut archive = zip::ZipArchive::new(Cursor::new(hex_decode(NUMPY_SAVEZ_COMPRESSED_HEX))).unwrap();
        for (name, tensor) in sample_arrays() {
            let mut numpy_bytes = Vec::new();
            archive.by_name(&format!("{name}.npy")).unwrap().read_to_end(&mut numpy_bytes).unwrap();
            assert_eq!(encode_npy(&tensor).unwrap(), numpy_bytes, "{name}");
        }
    }

    #[test]
    fn round_trip_stored_and_deflated() {
        let arrays = sample_arrays();
        for compression in [NpzCompression::Stored, NpzCompression::Deflated] {
            let bytes = npz_bytes(&arrays, compression);
            let back = read_npz_from(Cursor::new(bytes), "mem.npz").unwrap();
            assert_eq!(back, arrays, "{compression:?}");
        }
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        let arrays = sample_arrays();
        let refs: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_npz(&path, &refs, NpzCompression::Deflated).unwrap();
        assert_eq!(read_npz(&path).unwrap(), arrays);
    }

    #[test]
    fn npy_header_is_padded_like_numpy() {
        let t = Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).unwrap();
        let npy = encode_npy(&t).unwrap();
        let header_len = usize::from(u16::from_le_bytes([npy[8], npy[9]]));
        assert_eq!((10 + header_len) % HEADER_ALIGN, 0);
        assert_eq!(npy[10 + header_len - 1], b'\n');
        assert_eq!(npy.len(), 10 + header_len + 24);
        assert!(std::str::from_utf8(&npy[10..10 + header_len]).unwrap().contains("'shape': (2, 3)"));
    }

    #[test]
    fn bf16_is_refused_with_the_array_name() {
        let t = Tensor::new(vec![1], TensorData::Bf16(vec![half::bf16::ONE])).unwrap();
        let err = write_npz_to(Cursor::new(Vec::new()), &[("w", &t)], NpzCompression::Stored, "out.npz").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("out.npz") && msg.contains("array 'w'") && msg.contains("bf16"), "{msg}");
    }

    /// A `.npy` file with the given header text and data bytes.
    fn raw_npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// An archive holding one raw `.npy` entry named `x.npy`.
    fn npz_with_entry(npy: &[u8]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("x.npy", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(npy).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn read_error(npy: &[u8]) -> String {
        read_npz_from(Cursor::new(npz_with_entry(npy)), "bad.npz").unwrap_err().to_string()
    }

    #[test]
    fn refusals_name_the_file_and_array() {
        let cases = [
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", "Fortran order"),
            ("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "big-endian"),
            ("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "not supported"),
            ("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "not supported"),
            ("{'descr': '<f4', 'shape': (1,), }", "no 'fortran_order'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) ", "malformed"),
        ];
        for (header, reason) in cases {
            let msg = read_error(&raw_npy(header, &[0; 4]));
            assert!(msg.contains("bad.npz") && msg.contains("array 'x'") && msg.contains(reason), "{header}: {msg}");
        }
    }

    #[test]
    fn lying_headers_do_not_allocate() {
        // A shape of 2^60 elements with 4 bytes present: must fail on length, not abort on allocation.
        let msg = read_error(&raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846976,), }", &[0; 4]));
        assert!(msg.contains("truncated") || msg.contains("too many"), "{msg}");
        let msg = read_error(&raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", &[]));
        assert!(msg.contains("too many"), "{msg}");
        let msg = read_error(&raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &[0; 12]));
        assert!(msg.contains("bytes after"), "{msg}");
        let mut huge_header = NPY_MAGIC.to_vec();
        huge_header.extend_from_slice(&[2, 0]);
        huge_header.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_error(&huge_header).contains("larger than"));
        assert!(read_error(b"\x93NUMPY\x01").contains("truncated"));
        assert!(read_error(b"PK not npy at all").contains("bad magic"));
    }

    #[test]
    fn not_a_zip_names_the_file() {
        let msg = read_npz_from(Cursor::new(b"hello".to_vec()), "junk.npz").unwrap_err().to_string();
        assert!(msg.contains("junk.npz") && msg.contains("zip"), "{msg}");
    }

    #[test]
    fn header_parser_accepts_numpy_variants() {
        let h = parse_header("{'descr': '|b1', 'fortran_order': False, 'shape': (), }    \n").unwrap();
        assert_eq!(h, NpyHeader { dtype: DType::Bool, shape: vec![] });
        let h = parse_header("{\"shape\": (3, 4, 5), \"fortran_order\": False, \"descr\": \"<i8\"}").unwrap();
        assert_eq!(h, NpyHeader { dtype: DType::I64, shape: vec![3, 4, 5] });
    }

    /// The zoo's reference inputs, written by graphs/zoo.py through NumPy.
    #[test]
    fn reads_zoo_mlp_inputs() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo/mlp.inputs.npz");
        assert!(path.exists(), "{} is missing: run `make graphs` (make test does it first)", path.display());
        let arrays = read_npz(&path).unwrap();
        assert_eq!(arrays.len(), 1, "{arrays:?}");
        let (name, x) = &arrays[0];
        assert!(!name.ends_with(".npy"));
        assert_eq!(x.dtype(), DType::F32);
        assert_eq!(x.shape.len(), 2);
        assert_eq!(x.shape[1], 32);
        assert!(x.as_f32().unwrap().iter().all(|v| v.is_finite()));
    }
}

//! Fuzz harness over mutated zoo models, shared by the `fuzz` example (the long run,
//! `make fuzz`) and this file's smoke test (a short run under `cargo test`).
//!
//! cargo-fuzz needs a nightly toolchain, so this is a plain, seeded loop: every input
//! is a zoo model mutated at the byte level (bit flips, interesting bytes, truncation,
//! chunk deletion/duplication, splicing between models, protobuf length tweaks) or at
//! the message level (dims, names, attributes, versions set to hostile values), then
//! fed through `Model::from_bytes`, every initializer's `Model::tensor`, `Graph::new`,
//! shape inference and normalization. A counting global allocator tracks the largest single
//! allocation and the peak live bytes of each input. A run fails on a panic, on an
//! allocation over its bound, or on an error whose message does not name the file.

#[cfg(test)]
#[path = "common/normalize_cases.rs"]
mod cases;

use oto_onnx::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};
use oto_onnx::{Graph, Model, NodeExt};
use prost::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------

/// Wraps the system allocator, counting live bytes, their peak and the largest request.
/// An allocation over [`HARD_CAP`] would exhaust the machine before the harness could
/// report it, so it saves the current input and aborts right there.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// The run also aborts when live bytes exceed this many hard caps.
const LIVE_CAP_FACTOR: usize = 4;
/// Requests above this abort the run (after saving the input); 0 disables the check.
static HARD_CAP: AtomicUsize = AtomicUsize::new(0);
static CURRENT_INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static CURRENT_ITERATION: AtomicU64 = AtomicU64::new(0);
static ABORTING: AtomicBool = AtomicBool::new(false);
static CRASH_DIR: OnceLock<PathBuf> = OnceLock::new();

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

impl CountingAlloc {
    fn record(size: usize) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        let cap = HARD_CAP.load(Ordering::Relaxed);
        if cap != 0 && (size > cap || live > LIVE_CAP_FACTOR * cap) && !ABORTING.swap(true, Ordering::SeqCst) {
            hard_cap_exceeded(size);
        }
    }
}

/// Saves the input being processed and aborts; runs inside the allocator, so it only
/// makes small allocations of its own (those re-enter the allocator harmlessly).
#[cold]
fn hard_cap_exceeded(size: usize) -> ! {
    let ptr = CURRENT_INPUT.load(Ordering::SeqCst);
    let len = CURRENT_INPUT_LEN.load(Ordering::SeqCst);
    let mut saved = String::from("(no input recorded)");
    if !ptr.is_null() {
        // SAFETY: the loop publishes the input's buffer here only while it owns it.
        let input = unsafe { std::slice::from_raw_parts(ptr, len) };
        if let Some(dir) = CRASH_DIR.get() {
            let path = dir.join(format!("oom-iter{}.onnx", CURRENT_ITERATION.load(Ordering::SeqCst)));
            if std::fs::write(&path, input).is_ok() {
                saved = path.display().to_string();
            }
        }
    }
    eprintln!("fuzz: an allocation of {size} bytes (or the live total) exceeds the hard cap; input saved to {saved}");
    std::process::abort()
}

// SAFETY: every method forwards to `System` unchanged; the counters are only statistics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        Self::record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

// ---------------------------------------------------------------------------------
// Random numbers (SplitMix64: tiny, seedable, good enough for mutation choices)
// ---------------------------------------------------------------------------------

/// A seeded random source.
pub struct Rng(u64);

impl Rng {
    /// A generator for iteration `iteration` of a run seeded with `seed`, so any single
    /// input can be regenerated without replaying the ones before it.
    pub fn for_iteration(seed: u64, iteration: u64) -> Rng {
        let mut r = Rng(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

// ---------------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------------

/// One seed model: its bytes and decoded message.
pub struct Seed {
    /// File name, for reports.
    pub name: String,
    /// Encoded model.
    pub bytes: Vec<u8>,
    /// Decoded model.
    pub proto: ModelProto,
}

/// Initializers above this many bytes are shrunk in models over the size limit.
const SHRINK_TENSOR_BYTES: usize = 4096;

/// Loads every `*.onnx` of `dir`. Models larger than `max_model_bytes` get their big
/// initializers shrunk (each dimension capped at 4, data cut to match) so that
/// mutations land in the graph rather than in megabytes of weights, and each input
/// stays cheap to decode.
pub fn load_corpus(dir: &Path, max_model_bytes: usize) -> Result<Vec<Seed>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e} (run `make graphs` to export the zoo)", dir.display()))?;
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "onnx")).collect();
    paths.sort();
    let mut seeds = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut proto = ModelProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = if bytes.len() > max_model_bytes {
            if let Some(graph) = proto.graph.as_mut() {
                graph.initializer.iter_mut().for_each(shrink_tensor);
            }
            proto.encode_to_vec()
        } else {
            bytes
        };
        seeds.push(Seed { name, bytes, proto });
    }
    if seeds.is_empty() {
        return Err(format!("{}: no .onnx files (run `make graphs` to export the zoo)", dir.display()));
    }
    Ok(seeds)
}

fn shrink_tensor(t: &mut TensorProto) {
    let Some(raw) = &t.raw_data else { return };
    if raw.len() <= SHRINK_TENSOR_BYTES || t.dims.is_empty() {
        return;
    }
    let numel: i64 = t.dims.iter().product::<i64>().max(1);
    let elem = raw.len() / numel as usize;
    t.dims.iter_mut().for_each(|d| *d = (*d).min(4));
    let new_numel = t.dims.iter().product::<i64>() as usize;
    t.raw_data = Some(raw.slice(..new_numel * elem));
}

// ---------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------

const INTERESTING_BYTES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x20];
const INTERESTING_I64: [i64; 14] = [0, 1, -1, 2, 3, -2, 255, 65536, i32::MAX as i64, 1 << 31, 1 << 32, 1 << 40, i64::MAX, i64::MIN];

/// Upper bound on the length of a mutated input, relative to its seed.
fn max_len(seed_len: usize) -> usize {
    seed_len * 2 + 4096
}

/// Positions of the length varints of length-delimited fields, found by walking the
/// bytes as protobuf and descending into every payload that itself parses as fields.
fn length_fields(buf: &[u8], base: usize, depth: usize, out: &mut Vec<(usize, usize)>) -> bool {
    let mut pos = 0;
    while pos < buf.len() {
        let Some((key, klen)) = read_varint(&buf[pos..]) else {
            return false;
        };
        pos += klen;
        match key & 7 {
            0 => match read_varint(&buf[pos..]) {
                Some((_, n)) => pos += n,
                None => return false,
            },
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let Some((len, n)) = read_varint(&buf[pos..]) else {
                    return false;
                };
                let start = pos + n;
                let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)).filter(|&e| e <= buf.len()) else {
                    return false;
                };
                if out.len() < 200_000 {
                    out.push((base + pos, n));
                }
                if depth < 12 && end > start {
                    let before = out.len();
                    if !length_fields(&buf[start..end], base + start, depth + 1, out) {
                        out.truncate(before); // a string or packed payload, not a message
                    }
                }
                pos = end;
            }
            _ => return false,
        }
    }
    pos == buf.len()
}

fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Replaces the varint at `pos` (of `old_len` bytes) with `value`.
fn replace_varint(data: &mut Vec<u8>, pos: usize, old_len: usize, value: u64) {
    let mut enc = Vec::new();
    write_varint(value, &mut enc);
    data.splice(pos..pos + old_len, enc);
}

/// One byte-level mutation of `data`; `other` is another seed, for splicing.
fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], limit: usize) {
    let len = data.len();
    match rng.below(10) {
        0 => {
            for _ in 0..=rng.below(8) {
                if let Some(i) = (len > 0).then(|| rng.below(len)) {
                    data[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            for _ in 0..=rng.below(4) {
                if len > 0 {
                    let i = rng.below(len);
                    data[i] = if rng.chance(20) { rng.next() as u8 } else { INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())] };
                }
            }
        }
        2 => {
            // A multi-byte interesting value (e.g. a fixed32/fixed64 or a raw float).
            let v = INTERESTING_I64[rng.below(INTERESTING_I64.len())].to_le_bytes();
            let n = if rng.chance(50) { 4 } else { 8 };
            if len >= n {
                let i = rng.below(len - n + 1);
                data[i..i + n].copy_from_slice(&v[..n]);
            }
        }
        3 => data.truncate(rng.below(len + 1)),
        4 => {
            if len > 0 {
                let start = rng.below(len);
                let n = 1 + rng.below((len - start).min(4096));
                data.drain(start..start + n);
            }
        }
        5 => {
            if len > 0 {
                let start = rng.below(len);
                let n = 1 + rng.below((len - start).min(4096));
                let chunk = data[start..start + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
        }
        6 => {
            // Splice: a chunk of another model, inserted or overwriting.
            if !other.is_empty() {
                let start = rng.below(other.len());
                let n = 1 + rng.below((other.len() - start).min(8192));
                let chunk = &other[start..start + n];
                let at = rng.below(len + 1);
                if rng.chance(50) {
                    let end = (at + n).min(len);
                    data.splice(at..end, chunk.iter().copied());
                } else {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
        }
        7 | 8 => {
            // Tweak the length of a length-delimited field.
            let mut fields = Vec::new();
            length_fields(data, 0, 0, &mut fields);
            if let Some(&(pos, n)) = rng.pick(&fields) {
                let old = read_varint(&data[pos..]).map(|v| v.0).unwrap_or(0);
                let new = match rng.below(7) {
                    0 => old.wrapping_add(1),
                    1 => old.wrapping_sub(1),
                    2 => old.wrapping_add(1 + rng.below(16) as u64),
                    3 => old / 2,
                    4 => 0,
                    5 => u64::MAX >> rng.below(40),
                    _ => old.wrapping_mul(2),
                };
                replace_varint(data, pos, n, new);
            }
        }
        _ => {
            // Random bytes inserted.
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
    }
    data.truncate(limit);
}

fn hostile_i64(rng: &mut Rng) -> i64 {
    if rng.chance(15) {
        rng.next() as i64
    } else {
        INTERESTING_I64[rng.below(INTERESTING_I64.len())]
    }
}

/// One message-level mutation: reaches `Graph::new` and shape inference with inputs
/// that still decode, which random bytes rarely do.
fn mutate_message(rng: &mut Rng, m: &mut ModelProto) {
    match rng.below(13) {
        0 => m.ir_version = Some(hostile_i64(rng)),
        1 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = Some(if rng.chance(50) { hostile_i64(rng) } else { rng.below(30) as i64 });
            }
        }
        2 => {
            m.graph = None;
        }
        _ => {}
    }
    let Some(g) = m.graph.as_mut() else { return };
    let names: Vec<String> = g
        .input
        .iter()
        .filter_map(|v| v.name.clone())
        .chain(g.node.iter().flat_map(|n| n.output.iter().cloned()))
        .chain(g.initializer.iter().filter_map(|t| t.name.clone()))
        .collect();
    let n_nodes = g.node.len();
    let n_inits = g.initializer.len();
    match rng.below(14) {
        0 if n_inits > 0 => {
            let t = &mut g.initializer[rng.below(n_inits)];
            if t.dims.is_empty() {
                t.dims.push(hostile_i64(rng));
            } else {
                let i = rng.below(t.dims.len());
                t.dims[i] = hostile_i64(rng);
            }
        }
        1 if n_inits > 0 => {
            // Change an initializer's element type (including unsupported ones).
            let t = &mut g.initializer[rng.below(n_inits)];
            t.data_type = Some(rng.below(25) as i32);
        }
        2 if n_inits > 0 => {
            // Cut an initializer's data short, or move it to a typed field.
            let t = &mut g.initializer[rng.below(n_inits)];
            if let Some(raw) = t.raw_data.take() {
                if rng.chance(50) {
                    let cut = rng.below(raw.len() + 1);
                    t.raw_data = Some(raw.slice(..cut));
                } else {
                    t.float_data = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                }
            }
        }
        3 if n_inits > 0 => {
            // Claim external data (from_bytes must refuse it; no file may be read).
            let t = &mut g.initializer[rng.below(n_inits)];
            let location = ["../../etc/passwd", "/etc/passwd", "w.bin", ""][rng.below(4)];
            let entry = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
            t.external_data = vec![entry("location", location), entry("offset", "0"), entry("length", "16")];
            t.data_location = Some(DataLocation::External as i32);
        }
        4 if n_nodes > 0 => {
            // Rewire an input: to another value, to a missing value, or to a later output (cycle).
            let node = &mut g.node[rng.below(n_nodes)];
            let new = match rng.below(3) {
                0 => rng.pick(&names).cloned().unwrap_or_default(),
                1 => "no_such_value".to_string(),
                _ => node.output.first().cloned().unwrap_or_default(),
            };
            if node.input.is_empty() || rng.chance(20) {
                node.input.push(new);
            } else {
                let i = rng.below(node.input.len());
                node.input[i] = new;
            }
        }
        5 if n_nodes > 0 => {
            // A second producer of an existing value.
            let name = rng.pick(&names).cloned().unwrap_or_default();
            let node = &mut g.node[rng.below(n_nodes)];
            match node.output.first_mut() {
                Some(o) => *o = name,
                None => node.output.push(name),
            }
        }
        6 if n_nodes > 0 => {
            // Another operator type on the same inputs.
            let op = g.node[rng.below(n_nodes)].op_type.clone();
            let i = rng.below(n_nodes);
            g.node[i].op_type = op;
        }
        7 if n_nodes > 0 => {
            let i = rng.below(n_nodes);
            g.node.remove(i);
        }
        8 if n_nodes > 0 => {
            // Hostile attribute values.
            let node = &mut g.node[rng.below(n_nodes)];
            let n_attrs = node.attribute.len();
            if n_attrs > 0 {
                let a = &mut node.attribute[rng.below(n_attrs)];
                if a.ints.is_empty() {
                    a.i = Some(hostile_i64(rng));
                } else {
                    let i = rng.below(a.ints.len());
                    a.ints[i] = hostile_i64(rng);
                    if rng.chance(30) {
                        a.ints.truncate(rng.below(a.ints.len() + 1));
                    }
                }
                if rng.chance(20) {
                    a.r#type = Some(rng.below(16) as i32);
                }
            }
        }
        9 if n_nodes > 0 => {
            // Drop or add inputs/outputs (wrong arity).
            let node = &mut g.node[rng.below(n_nodes)];
            if rng.chance(50) {
                node.input.truncate(rng.below(node.input.len() + 1));
            } else {
                node.output.push(format!("extra_{}", rng.below(1000)));
            }
        }
        10 => {
            // Hostile dims on a graph input / value_info.
            let vis: Vec<_> = g.input.iter_mut().chain(g.value_info.iter_mut()).chain(g.output.iter_mut()).collect();
            let n = vis.len();
            if n > 0 {
                let mut vis = vis;
                let v = &mut vis[rng.below(n)];
                use oto_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto::Value as TypeValue};
                if let Some(TypeValue::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                    if rng.chance(15) {
                        tt.elem_type = Some(rng.below(25) as i32);
                    } else if let Some(shape) = tt.shape.as_mut() {
                        let nd = shape.dim.len();
                        if nd > 0 && rng.chance(80) {
                            shape.dim[rng.below(nd)].value =
                                Some(if rng.chance(70) { Value::DimValue(hostile_i64(rng)) } else { Value::DimParam(String::new()) });
                        } else if nd > 0 {
                            shape.dim.truncate(rng.below(nd));
                        } else {
                            tt.shape = None;
                        }
                    }
                }
            }
        }
        11 if n_nodes > 1 => {
            let (a, b) = (rng.below(n_nodes), rng.below(n_nodes));
            g.node.swap(a, b);
        }
        12 => {
            // A graph output that nobody produces.
            if let Some(o) = g.output.first_mut() {
                o.name = Some("unproduced_output".into());
            }
        }
        _ => {
            // Integer constants (shapes, axes) set to hostile values.
            let ints: Vec<usize> =
                (0..n_inits).filter(|&i| matches!(g.initializer[i].data_type, Some(7)) && g.initializer[i].raw_data.is_some()).collect();
            if let Some(&i) = rng.pick(&ints) {
                let t = &mut g.initializer[i];
                if let Some(raw) = &t.raw_data {
                    let mut v = raw.to_vec();
                    if v.len() >= 8 {
                        let at = 8 * rng.below(v.len() / 8);
                        v[at..at + 8].copy_from_slice(&hostile_i64(rng).to_le_bytes());
                    }
                    t.raw_data = Some(v.into());
                }
            }
        }
    }
}

/// The input of iteration `iteration`: a seed, mutated.
pub fn make_input(seeds: &[Seed], seed: u64, iteration: u64) -> (usize, Vec<u8>) {
    let mut rng = Rng::for_iteration(seed, iteration);
    let base = rng.below(seeds.len());
    let other = &seeds[rng.below(seeds.len())].bytes;
    let limit = max_len(seeds[base].bytes.len());
    let structural = rng.chance(40);
    let mut data = if structural {
        let mut m = seeds[base].proto.clone();
        for _ in 0..=rng.below(3) {
            mutate_message(&mut rng, &mut m);
        }
        m.encode_to_vec()
    } else {
        seeds[base].bytes.clone()
    };
    let byte_mutations = if structural { rng.below(2) } else { 1 + rng.below(4) };
    for _ in 0..byte_mutations {
        mutate_bytes(&mut rng, &mut data, other, limit);
    }
    (base, data)
}

// ---------------------------------------------------------------------------------
// Running inputs
// ---------------------------------------------------------------------------------

/// How far an input got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `Model::from_bytes` refused it (decoding or model checks).
    LoadErr,
    /// `Graph::new` refused it.
    GraphErr,
    /// Shape inference refused it.
    InferErr,
    /// Every stage accepted it.
    Ok,
}

/// What one input did, besides its outcome.
pub struct InputReport {
    /// The furthest stage reached.
    pub outcome: Outcome,
    /// Initializers decoded / refused by `Model::tensor`.
    pub tensors_ok: usize,
    /// See `tensors_ok`.
    pub tensors_err: usize,
    /// Error messages that do not name the file (a defect: errors must name it).
    pub unnamed_errors: Vec<String>,
}

/// The name inputs are given; every error message must contain it.
pub const INPUT_NAME: &str = "fuzz-input.onnx";

/// Runs one input through every stage.
pub fn run_input(bytes: Vec<u8>, infer: bool) -> InputReport {
    let mut report = InputReport { outcome: Outcome::LoadErr, tensors_ok: 0, tensors_err: 0, unnamed_errors: Vec::new() };
    let note = |report: &mut InputReport, e: &oto_onnx::OnnxError| {
        let msg = e.to_string();
        if !msg.contains(INPUT_NAME) {
            report.unnamed_errors.push(msg);
        }
    };
    let model = match Model::from_bytes(bytes, INPUT_NAME) {
        Ok(m) => m,
        Err(e) => {
            note(&mut report, &e);
            return report;
        }
    };
    if let Some(g) = &model.proto.graph {
        for t in &g.initializer {
            match model.tensor(t) {
                Ok(_) => report.tensors_ok += 1,
                Err(e) => {
                    note(&mut report, &e);
                    report.tensors_err += 1;
                }
            }
        }
    }
    report.outcome = Outcome::GraphErr;
    let graph = match Graph::new(&model) {
        Ok(g) => g,
        Err(e) => {
            note(&mut report, &e);
            return report;
        }
    };
    for (_, node) in graph.nodes() {
        if node.op() == "Constant" {
            for out in &node.output {
                if let Err(e) = graph.constant(out) {
                    note(&mut report, &e);
                }
            }
        }
    }
    report.outcome = Outcome::InferErr;
    if infer {
        if let Err(e) = oto_onnx::shape::infer(&graph) {
            note(&mut report, &e);
            return report;
        }
        // Normalization (what every command runs after loading) folds whole tensors.
        drop(graph);
        if let Err(e) = oto_onnx::normalize::normalize(model, &Default::default()) {
            note(&mut report, &e);
            return report;
        }
    }
    report.outcome = Outcome::Ok;
    report
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of inputs.
    pub iterations: u64,
    /// First iteration number (to regenerate a given input).
    pub start: u64,
    /// Run seed.
    pub seed: u64,
    /// Folder of seed models.
    pub corpus: PathBuf,
    /// Where failing inputs are written.
    pub crash_dir: PathBuf,
    /// Whether to run shape inference.
    pub infer: bool,
    /// Seed models above this size get their large initializers shrunk.
    pub max_model_bytes: usize,
    /// Print progress every this many iterations (0: never).
    pub progress_every: u64,
}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Inputs run.
    pub iterations: u64,
    /// Inputs refused at load / graph / inference, and accepted by every stage.
    pub load_err: u64,
    /// See `load_err`.
    pub graph_err: u64,
    /// See `load_err`.
    pub infer_err: u64,
    /// See `load_err`.
    pub ok: u64,
    /// Initializers decoded / refused.
    pub tensors_ok: u64,
    /// See `tensors_ok`.
    pub tensors_err: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// Inputs with an allocation (single or peak) over its bound.
    pub alloc_violations: u64,
    /// Failures (panics, allocations over the bound, unnamed errors), with the file
    /// each input was saved to.
    pub failures: Vec<String>,
    /// Largest single allocation and the input size it came with.
    pub max_alloc: usize,
    /// Input size of the iteration with the largest allocation.
    pub max_alloc_input: usize,
    /// Largest peak of live bytes during one input, and that input's size.
    pub max_peak: usize,
    /// Input size of the iteration with the largest peak.
    pub max_peak_input: usize,
    /// Largest ratio of peak live bytes to input size.
    pub max_peak_ratio: f64,
    /// Wall time.
    pub elapsed: Duration,
    /// Slowest single input.
    pub slowest: Duration,
}

/// Largest single allocation allowed for an input of `len` bytes.
pub fn alloc_bound(len: usize) -> usize {
    (64 << 20) + 8 * len
}

/// Largest peak of live bytes allowed for an input of `len` bytes. Decoding protobuf
/// legitimately expands: a 2-byte empty `NodeProto` becomes a ~200-byte struct.
pub fn peak_bound(len: usize) -> usize {
    (256 << 20) + 256 * len
}

/// Hard cap on any single allocation: well above every bound, below what would take
/// the machine down.
const HARD_CAP_BYTES: usize = 1 << 30;

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Runs the fuzz loop.
pub fn run(config: &Config) -> Result<Summary, String> {
    let seeds = load_corpus(&config.corpus, config.max_model_bytes)?;
    std::fs::create_dir_all(&config.crash_dir).map_err(|e| format!("{}: {e}", config.crash_dir.display()))?;
    let _ = CRASH_DIR.set(config.crash_dir.clone());
    HARD_CAP.store(HARD_CAP_BYTES, Ordering::SeqCst);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        *PANIC_MESSAGE.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{payload}{location}"));
    }));
    let mut summary = Summary::default();
    let started = Instant::now();
    for iteration in config.start..config.start + config.iterations {
        let (base, input) = make_input(&seeds, config.seed, iteration);
        let len = input.len();
        let save = |kind: &str, input: &[u8]| -> String {
            let path = config.crash_dir.join(format!("{kind}-seed{}-iter{iteration}.onnx", config.seed));
            match std::fs::write(&path, input) {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("(could not save {}: {e})", path.display()),
            }
        };
        let copy = input.clone();
        CURRENT_ITERATION.store(iteration, Ordering::SeqCst);
        CURRENT_INPUT.store(copy.as_ptr().cast_mut(), Ordering::SeqCst);
        CURRENT_INPUT_LEN.store(copy.len(), Ordering::SeqCst);
        let baseline = LIVE.load(Ordering::SeqCst);
        PEAK.store(baseline, Ordering::SeqCst);
        LARGEST.store(0, Ordering::SeqCst);
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_input(input, config.infer)));
        let took = t0.elapsed();
        let largest = LARGEST.load(Ordering::SeqCst);
        let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
        CURRENT_INPUT.store(std::ptr::null_mut(), Ordering::SeqCst);
        summary.iterations += 1;
        summary.slowest = summary.slowest.max(took);
        if largest > summary.max_alloc {
            summary.max_alloc = largest;
            summary.max_alloc_input = len;
        }
        if peak > summary.max_peak {
            summary.max_peak = peak;
            summary.max_peak_input = len;
        }
        summary.max_peak_ratio = summary.max_peak_ratio.max(peak as f64 / len.max(1) as f64);
        let origin = &seeds[base].name;
        match result {
            Err(_) => {
                summary.panics += 1;
                let msg = PANIC_MESSAGE.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
                let path = save("panic", &copy);
                summary.failures.push(format!("iteration {iteration} (from {origin}): panic: {msg}; input saved to {path}"));
            }
            Ok(report) => {
                match report.outcome {
                    Outcome::LoadErr => summary.load_err += 1,
                    Outcome::GraphErr => summary.graph_err += 1,
                    Outcome::InferErr => summary.infer_err += 1,
                    Outcome::Ok => summary.ok += 1,
                }
                summary.tensors_ok += report.tensors_ok as u64;
                summary.tensors_err += report.tensors_err as u64;
                if let Some(msg) = report.unnamed_errors.first() {
                    let path = save("unnamed", &copy);
                    summary.failures.push(format!(
                        "iteration {iteration} (from {origin}): error does not name the file: {msg:?}; input saved to {path}"
                    ));
                }
            }
        }
        if largest > alloc_bound(len) || peak > peak_bound(len) {
            summary.alloc_violations += 1;
        }
        if largest > alloc_bound(len) {
            let path = save("alloc", &copy);
            summary.failures.push(format!(
                "iteration {iteration} (from {origin}): allocation of {largest} bytes for a {len}-byte input (bound {}); input saved to {path}",
                alloc_bound(len)
            ));
        }
        if peak > peak_bound(len) {
            let path = save("peak", &copy);
            summary.failures.push(format!(
                "iteration {iteration} (from {origin}): {peak} live bytes for a {len}-byte input (bound {}); input saved to {path}",
                peak_bound(len)
            ));
        }
        if config.progress_every > 0 && summary.iterations % config.progress_every == 0 {
            eprintln!(
                "fuzz: {} inputs, {:.0}/s, {} failures",
                summary.iterations,
                summary.iterations as f64 / started.elapsed().as_secs_f64(),
                summary.failures.len()
            );
        }
    }
    summary.elapsed = started.elapsed();
    std::panic::set_hook(previous_hook);
    HARD_CAP.store(0, Ordering::SeqCst);
    Ok(summary)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "inputs:        {} in {secs:.1} s ({:.0}/s)", self.iterations, self.iterations as f64 / secs.max(1e-9))?;
        writeln!(
            f,
            "outcomes:      {} refused at load, {} at Graph::new, {} at shape inference, {} accepted",
            self.load_err, self.graph_err, self.infer_err, self.ok
        )?;
        writeln!(f, "initializers:  {} decoded, {} refused", self.tensors_ok, self.tensors_err)?;
        writeln!(
            f,
            "max alloc:     {} bytes (input of {} bytes; bound {})",
            self.max_alloc,
            self.max_alloc_input,
            alloc_bound(self.max_alloc_input)
        )?;
        writeln!(
            f,
            "max peak live: {} bytes (input of {} bytes); max peak/input ratio {:.1}",
            self.max_peak, self.max_peak_input, self.max_peak_ratio
        )?;
        writeln!(f, "slowest input: {:.1} ms", self.slowest.as_secs_f64() * 1e3)?;
        writeln!(
            f,
            "failures:      {} ({} panics, {} inputs over an allocation bound)",
            self.failures.len(),
            self.panics,
            self.alloc_violations
        )?;
        for failure in self.failures.iter().take(50) {
            writeln!(f, "  {failure}")?;
        }
        Ok(())
    }
}

/// The zoo folder of the workspace.
pub fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../graphs/zoo")
}

#[test]
fn fuzz_smoke() {
    let corpus = default_corpus();
    assert!(corpus.join("mlp.onnx").exists(), "{}: zoo models missing; run `make graphs`", corpus.display());
    let crash_dir = std::env::temp_dir().join(format!("oto-fuzz-smoke-{}", std::process::id()));
    let config = Config {
        iterations: 3000,
        start: 0,
        seed: 1,
        corpus,
        crash_dir: crash_dir.clone(),
        infer: true,
        max_model_bytes: 1 << 20,
        progress_every: 0,
    };
    let summary = run(&config).unwrap();
    eprintln!("{summary}");
    assert_eq!(summary.iterations, 3000);
    assert!(summary.failures.is_empty(), "{summary}");
    // The mutations must reach every stage, or the smoke test proves little.
    assert!(summary.load_err > 0 && summary.graph_err > 0 && summary.ok > 0, "{summary}");
    let _ = std::fs::remove_dir_all(&crash_dir);
    fuzz_normalization_cases();
}

/// The same over the normalization test cases (Constant nodes, constant subgraphs, an
/// IR-3 file...), whose folds the zoo's clean models never reach. (Part of
/// [`fuzz_smoke`]: the harness' counters are per process, runs must not overlap.)
#[cfg(test)]
fn fuzz_normalization_cases() {
    let corpus = tempfile::tempdir().unwrap();
    for (name, model) in [
        ("constant_forms", cases::constant_forms()),
        ("weight_layouts", cases::weight_layouts()),
        ("shape_subgraph_9", cases::shape_subgraph(9)),
        ("shape_subgraph_13", cases::shape_subgraph(13)),
        ("identity_bias", cases::identity_bias()),
        ("ir3_inputs", cases::ir3_inputs()),
        ("constant_batchnorm", cases::constant_batchnorm()),
        ("variadic", cases::variadic()),
        ("integer_folds", cases::integer_folds()),
    ] {
        model.save(corpus.path().join(format!("{name}.onnx")), &Default::default()).unwrap();
    }
    let crash_dir = std::env::temp_dir().join(format!("oto-fuzz-normalize-{}", std::process::id()));
    let config = Config {
        iterations: 3000,
        start: 0,
        seed: 2,
        corpus: corpus.path().to_path_buf(),
        crash_dir: crash_dir.clone(),
        infer: true,
        max_model_bytes: 1 << 20,
        progress_every: 0,
    };
    let summary = run(&config).unwrap();
    eprintln!("{summary}");
    assert!(summary.failures.is_empty(), "{summary}");
    assert!(summary.ok > 0, "{summary}");
    let _ = std::fs::remove_dir_all(&crash_dir);
}

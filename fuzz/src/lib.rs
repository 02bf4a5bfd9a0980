//! Fuzz harness of oto: every stage that reads user input, fed hostile inputs. Shared
//! by the `fuzz` binary (the long run, `make fuzz`) and the smoke test
//! (`tests/smoke.rs`, a short run under `cargo test`).
//!
//! cargo-fuzz needs a nightly toolchain, so this is a plain, seeded loop over three kinds
//! of input:
//!
//! * **models**: a seed model (the zoos: dynamo, TorchScript and Optimum exports) mutated
//!   at the byte level (bit flips, interesting bytes, truncation, chunk deletion and
//!   duplication, splicing between models, protobuf length tweaks) or at the message level
//!   (dims and dim_params, value_info shapes and types, attributes, initializer dims
//!   against their data, node inputs, opset and IR versions), then run through
//!   `Model::from_bytes`, every initializer's `Model::tensor`, `Graph::new`, shape
//!   inference, normalization, the pruning analysis, and, when it finds prunable groups,
//!   zeroing a few elements and construction, whose compact model must load, build and
//!   pass shape inference again;
//! * **saved analyses**: the JSON of a seed's real analysis (what `oto analyze --json`
//!   writes), mutated as a JSON tree or as text, then parsed, checked against the model
//!   (`Analysis::check`, what `Analysis::load` runs) and, when accepted, used to zero
//!   elements and construct;
//! * **job files**: the bundled job files and one that sets every key, mutated line by
//!   line (hostile values, unknown or repeated keys, sections) or as text, then parsed and
//!   checked (`JobSpec::from_toml_str`) and resolved (`JobSpec::resolve`, `Job::check`).
//!
//! Every input runs under `catch_unwind`: a panic is a finding, reported with the run
//! seed, the iteration and the stage, and the input is saved to the crash folder. A
//! counting global allocator tracks the largest single allocation and the peak live
//! bytes of each input. A run fails on a panic, on an allocation over its bound, on an
//! error of the loading stages whose message does not name the file, or on a compact
//! model that oto itself refuses.

use oto_graph::{Analysis, AnalyzeOptions};
use oto_onnx::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};
use oto_onnx::{Graph, Model, NodeExt};
use prost::Message;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod groups;
mod job;

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
    /// Whether its initializers were shrunk (it no longer fits its own graph).
    pub shrunk: bool,
}

/// Initializers above this many bytes are shrunk in models over the size limit.
const SHRINK_TENSOR_BYTES: usize = 4096;

/// Loads every `*.onnx` of `dirs` and of their subfolders (Optimum exports are
/// `NAME/model.onnx`). Models larger than `max_model_bytes` get their big initializers
/// shrunk (each dimension capped at 4, data cut to match) so that mutations land in the
/// graph rather than in megabytes of weights, and each input stays cheap to decode.
pub fn load_corpus(dirs: &[PathBuf], max_model_bytes: usize) -> Result<Vec<Seed>, String> {
    let mut paths = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e} (run `make graphs` to export the zoos)", dir.display()))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                if let Ok(sub) = std::fs::read_dir(&path) {
                    paths.extend(sub.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "onnx")));
                }
            } else if path.extension().is_some_and(|x| x == "onnx") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let mut seeds = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut proto = ModelProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.display().to_string();
        let shrunk = bytes.len() > max_model_bytes;
        let bytes = if shrunk {
            if let Some(graph) = proto.graph.as_mut() {
                graph.initializer.iter_mut().for_each(shrink_tensor);
            }
            proto.encode_to_vec()
        } else {
            bytes
        };
        seeds.push(Seed { name, bytes, proto, shrunk });
    }
    if seeds.is_empty() {
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(format!("{}: no .onnx files (run `make graphs` to export the zoos)", dirs.join(", ")));
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

/// dim_params as exporters never write them: products and sums that overflow, numbers
/// (huge, negative, zero) spelled as symbols, odd characters.
const HOSTILE_DIM_PARAMS: [&str; 16] = [
    "",
    "N",
    "batch",
    "99999999999*99999999999",
    "9223372036854775807",
    "-1",
    "0",
    "-9223372036854775808",
    "batch*seq",
    "2**63",
    "seq+1",
    "a/0",
    "18446744073709551616",
    "unk__0",
    "\u{0}",
    "s*s*s*s*s*s*s*s",
];

/// Attributes whose values index or size tensors.
const HOSTILE_ATTRIBUTES: [&str; 14] = [
    "pads",
    "strides",
    "dilations",
    "kernel_shape",
    "group",
    "axis",
    "axes",
    "perm",
    "output_padding",
    "output_shape",
    "split",
    "keepdims",
    "num_outputs",
    "epsilon",
];

/// A generated dim_param: names and literals (huge ones included) joined by `*`, `+`,
/// `-` or `/`, sometimes parenthesized, sometimes a product of hundreds of factors; the
/// products that parse reach the typed dimension arithmetic and its overflow checks.
fn hostile_dim_param(rng: &mut Rng) -> String {
    const NAMES: [&str; 6] = ["batch", "seq", "N", "s", "unk__0", "batch_size"];
    const NUMBERS: [&str; 7] = ["0", "1", "7", "3037000500", "4294967296", "9223372036854775807", "99999999999"];
    const OPS: [&str; 5] = ["*", "*", "*", "+", "/"];
    if rng.chance(5) {
        let name = NAMES[rng.below(NAMES.len())];
        return vec![name; 1 + rng.below(400)].join("*");
    }
    let mut s = String::new();
    for i in 0..1 + rng.below(6) {
        if i > 0 {
            s.push_str(if rng.chance(10) { "-" } else { OPS[rng.below(OPS.len())] });
        }
        let piece = if rng.chance(50) { NAMES[rng.below(NAMES.len())] } else { NUMBERS[rng.below(NUMBERS.len())] };
        if rng.chance(10) {
            s.push_str(&format!("({piece})"));
        } else {
            s.push_str(piece);
        }
    }
    s
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
    match rng.below(16) {
        0 => m.ir_version = Some(hostile_i64(rng)),
        1 => {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = Some(if rng.chance(50) { hostile_i64(rng) } else { rng.below(30) as i64 });
            }
        }
        2 => {
            m.graph = None;
        }
        3 => {
            // An extra opset entry: another domain, or a second default domain.
            let domain = ["", "ai.onnx", "com.microsoft", "ai.onnx.ml", "x"][rng.below(5)];
            let version = if rng.chance(50) { hostile_i64(rng) } else { rng.below(30) as i64 };
            m.opset_import.push(oto_onnx::proto::OperatorSetIdProto { domain: Some(domain.to_string()), version: Some(version) });
        }
        4 => m.opset_import.clear(),
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
    match rng.below(21) {
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
        15 => {
            // Hostile dim_params: symbols, products, huge or negative numbers spelled out.
            use oto_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto::Value as TypeValue};
            let mut vis: Vec<_> = g.input.iter_mut().chain(g.value_info.iter_mut()).chain(g.output.iter_mut()).collect();
            let n = vis.len();
            if n > 0 {
                let v = &mut vis[rng.below(n)];
                if let Some(TypeValue::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                    if let Some(shape) = tt.shape.as_mut() {
                        let nd = shape.dim.len();
                        let param = HOSTILE_DIM_PARAMS[rng.below(HOSTILE_DIM_PARAMS.len())].to_string();
                        if nd > 0 {
                            shape.dim[rng.below(nd)].value = Some(Value::DimParam(param));
                        }
                    }
                }
            }
        }
        kind @ (19 | 20) => {
            // Generated dim_params on a graph input, value_info or output: one dim (19),
            // or every symbolic dim of a real input as a large multiple of a symbol (20),
            // so that the products shape inference forms (Flatten, Reshape, Size) overflow.
            use oto_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto::Value as TypeValue};
            let every = kind == 20;
            let mut vis: Vec<_> = g.input.iter_mut().chain(g.value_info.iter_mut()).chain(g.output.iter_mut()).collect();
            let n = vis.len();
            if n > 0 {
                let v = &mut vis[rng.below(n)];
                if let Some(TypeValue::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                    if let Some(shape) = tt.shape.as_mut() {
                        let nd = shape.dim.len();
                        if every {
                            for (i, d) in shape.dim.iter_mut().enumerate() {
                                let k = 1u64 << (16 + rng.below(47));
                                d.value = Some(Value::DimParam(format!("{k}*s{i}")));
                            }
                        } else if nd > 0 {
                            shape.dim[rng.below(nd)].value = Some(Value::DimParam(hostile_dim_param(rng)));
                        }
                    }
                }
            }
        }
        16 if n_nodes > 0 => {
            // value_info claiming a wrong shape or type for a node output.
            use oto_onnx::proto::{
                tensor_shape_proto::{dimension::Value, Dimension},
                type_proto, TensorShapeProto, TypeProto, ValueInfoProto,
            };
            let node = &g.node[rng.below(n_nodes)];
            if let Some(out) = node.output.first().cloned() {
                let rank = rng.below(6);
                let dim = (0..rank)
                    .map(|_| Dimension {
                        value: Some(if rng.chance(70) {
                            Value::DimValue(if rng.chance(50) { rng.below(70) as i64 } else { hostile_i64(rng) })
                        } else {
                            Value::DimParam(HOSTILE_DIM_PARAMS[rng.below(HOSTILE_DIM_PARAMS.len())].to_string())
                        }),
                        denotation: None,
                    })
                    .collect();
                let tt = type_proto::Tensor {
                    elem_type: Some(rng.below(25) as i32),
                    shape: (!rng.chance(10)).then_some(TensorShapeProto { dim }),
                };
                let vi = ValueInfoProto {
                    name: Some(out),
                    r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tt)), denotation: None }),
                    ..Default::default()
                };
                g.value_info.retain(|v| v.name != vi.name);
                g.value_info.push(vi);
            }
        }
        17 if n_nodes > 0 => {
            // A structural attribute (pads, strides, group, axes, perm...) set or replaced
            // with hostile values: out of range, negative, wrong length.
            use oto_onnx::proto::{attribute_proto::AttributeType, AttributeProto};
            let name = HOSTILE_ATTRIBUTES[rng.below(HOSTILE_ATTRIBUTES.len())];
            let node = &mut g.node[rng.below(n_nodes)];
            let ints = matches!(
                name,
                "pads" | "strides" | "dilations" | "kernel_shape" | "axes" | "perm" | "output_padding" | "output_shape" | "split"
            );
            let mut a = AttributeProto { name: Some(name.to_string()), ..Default::default() };
            if ints {
                let len = rng.below(9);
                a.ints = (0..len).map(|_| if rng.chance(50) { rng.below(8) as i64 - 2 } else { hostile_i64(rng) }).collect();
                a.r#type = Some(AttributeType::Ints as i32);
            } else {
                a.i = Some(if rng.chance(50) { rng.below(8) as i64 - 2 } else { hostile_i64(rng) });
                a.r#type = Some(AttributeType::Int as i32);
            }
            node.attribute.retain(|x| x.name.as_deref() != Some(name));
            node.attribute.push(a);
        }
        18 if n_inits > 0 => {
            // Initializer dims that disagree with the data length (one more or fewer
            // axis, a scaled axis), keeping the data as it is.
            let t = &mut g.initializer[rng.below(n_inits)];
            match rng.below(3) {
                0 => t.dims.push(1 + rng.below(3) as i64),
                1 => {
                    t.dims.pop();
                }
                _ => {
                    if !t.dims.is_empty() {
                        let i = rng.below(t.dims.len());
                        t.dims[i] = t.dims[i].saturating_mul(2 + rng.below(3) as i64);
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

// ---------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------

/// A seed for the saved-analysis inputs: a seed model that loads, normalizes and has
/// groups, with its analysis as `oto analyze --json` writes it.
pub struct AnalysisSeed {
    /// The seed model's file.
    pub name: String,
    /// The normalized model.
    pub model: Model,
    /// `model` encoded (saved next to a failing input, to replay it).
    pub bytes: Vec<u8>,
    /// The analysis, parsed as a JSON tree.
    pub json: serde_json::Value,
}

/// Everything inputs are made from.
pub struct Corpus {
    /// Seed models.
    pub models: Vec<Seed>,
    /// Seeds of the saved-analysis inputs.
    pub analyses: Vec<AnalysisSeed>,
    /// Seed job files (name, text).
    pub jobs: Vec<(String, String)>,
}

impl Corpus {
    /// Loads the seed models of `dirs` and the job files of `job_dir` (`*.toml`), and
    /// analyzes every unshrunk seed model that loads to seed the saved-analysis inputs.
    pub fn load(dirs: &[PathBuf], job_dir: &Path, max_model_bytes: usize) -> Result<Corpus, String> {
        let models = load_corpus(dirs, max_model_bytes)?;
        let mut analyses = Vec::new();
        for seed in models.iter().filter(|s| !s.shrunk) {
            let Ok(model) = Model::from_bytes(seed.bytes.clone(), INPUT_NAME) else { continue };
            let Ok((model, _)) = oto_onnx::normalize::normalize(model, &Default::default()) else { continue };
            let Ok(analysis) = oto_graph::analyze(&model, &AnalyzeOptions::default()) else { continue };
            if analysis.prunable_groups().next().is_none() {
                continue;
            }
            let json = serde_json::to_value(&analysis).map_err(|e| format!("{}: {e}", seed.name))?;
            let bytes = model.proto.encode_to_vec();
            analyses.push(AnalysisSeed { name: seed.name.clone(), model, bytes, json });
        }
        let jobs = job::load_seeds(job_dir)?;
        Ok(Corpus { models, analyses, jobs })
    }
}

/// One fuzz input.
pub enum Input<'a> {
    /// The bytes of an ONNX file.
    Model(Vec<u8>),
    /// The text of a saved analysis, for `model` (a normalized seed).
    Groups {
        /// The model the analysis is checked against and used on.
        model: &'a Model,
        /// The JSON text.
        json: String,
    },
    /// The text of a job file.
    Job(String),
}

/// The kinds of input, in the order of [`Summary::by_kind`].
pub const KINDS: [&str; 3] = ["model", "groups", "job"];

impl Input<'_> {
    fn kind(&self) -> usize {
        match self {
            Input::Model(_) => 0,
            Input::Groups { .. } => 1,
            Input::Job(_) => 2,
        }
    }
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Model(b) => b,
            Input::Groups { json, .. } => json.as_bytes(),
            Input::Job(t) => t.as_bytes(),
        }
    }
    fn extension(&self) -> &'static str {
        ["onnx", "json", "toml"][self.kind()]
    }
    /// The size the allocation bounds scale with (a saved analysis comes with its model).
    fn weight(&self) -> usize {
        match self {
            Input::Groups { model, json } => json.len() + model.proto.encoded_len(),
            other => other.bytes().len(),
        }
    }
}

/// The input of iteration `iteration`, and the seed it came from: 70% models, 15%
/// saved analyses, 15% job files (when the corpus has seeds of that kind).
pub fn make_input(corpus: &Corpus, seed: u64, iteration: u64) -> (String, Input<'_>) {
    let mut rng = Rng::for_iteration(seed, iteration);
    let roll = rng.below(100);
    if roll >= 85 && !corpus.jobs.is_empty() {
        let (name, text) = &corpus.jobs[rng.below(corpus.jobs.len())];
        return (name.clone(), Input::Job(job::mutate(&mut rng, text)));
    }
    if roll >= 70 && !corpus.analyses.is_empty() {
        let s = &corpus.analyses[rng.below(corpus.analyses.len())];
        return (s.name.clone(), Input::Groups { model: &s.model, json: groups::mutate(&mut rng, &s.json) });
    }
    let seeds = &corpus.models;
    let base = rng.below(seeds.len());
    let other = &seeds[rng.below(seeds.len())].bytes;
    let limit = max_len(seeds[base].bytes.len());
    // Message-level mutations keep the file decodable and reach the later stages.
    let structural = rng.chance(60);
    let mut data = if structural {
        let mut m = seeds[base].proto.clone();
        for _ in 0..=rng.below(3) {
            mutate_message(&mut rng, &mut m);
        }
        m.encode_to_vec()
    } else {
        seeds[base].bytes.clone()
    };
    let byte_mutations = if structural { usize::from(rng.chance(25)) } else { 1 + rng.below(4) };
    for _ in 0..byte_mutations {
        mutate_bytes(&mut rng, &mut data, other, limit);
    }
    (seeds[base].name.clone(), Input::Model(data))
}

// ---------------------------------------------------------------------------------
// Running inputs
// ---------------------------------------------------------------------------------

/// The stages an input goes through; a panic is reported with the stage it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// `Model::from_bytes` and `Model::tensor` of every initializer.
    Load,
    /// `Graph::new` and the `Constant` nodes' values.
    Graph,
    /// Shape inference.
    Infer,
    /// Normalization.
    Normalize,
    /// The pruning analysis (and the check of its own JSON).
    Analyze,
    /// Zeroing elements and construction.
    Construct,
    /// Loading, building and shape inference of the compact model.
    Validate,
    /// Parsing a saved analysis.
    GroupsParse,
    /// `Analysis::check` of a saved analysis against its model.
    GroupsCheck,
    /// Parsing and checking a job file.
    JobParse,
    /// Resolving a job.
    JobResolve,
}

const STAGES: [Stage; 11] = [
    Stage::Load,
    Stage::Graph,
    Stage::Infer,
    Stage::Normalize,
    Stage::Analyze,
    Stage::Construct,
    Stage::Validate,
    Stage::GroupsParse,
    Stage::GroupsCheck,
    Stage::JobParse,
    Stage::JobResolve,
];

/// The stage the current input is in (an index into `STAGES`), for panic reports.
static CURRENT_STAGE: AtomicUsize = AtomicUsize::new(0);

fn enter(stage: Stage) {
    CURRENT_STAGE.store(stage as usize, Ordering::SeqCst);
}

/// What one input did.
#[derive(Debug, Default)]
pub struct InputReport {
    /// The stage that refused the input with an error; `None`: every stage accepted it.
    pub refused_at: Option<Stage>,
    /// The error of that stage.
    pub error: Option<String>,
    /// Initializers decoded / refused by `Model::tensor`.
    pub tensors_ok: usize,
    /// See `tensors_ok`.
    pub tensors_err: usize,
    /// Whether a compact model was constructed.
    pub constructed: bool,
    /// Error messages of the loading stages that do not name the file (a defect: errors
    /// must name it).
    pub unnamed_errors: Vec<String>,
    /// Broken promises: a compact model oto refuses, an analysis its own check refuses.
    pub invalid: Vec<String>,
}

impl InputReport {
    fn refuse(&mut self, stage: Stage, e: impl std::fmt::Display) {
        self.refused_at = Some(stage);
        self.error = Some(e.to_string());
    }
}

/// The name model inputs are given; every error of the loading stages must contain it.
pub const INPUT_NAME: &str = "fuzz-input.onnx";
/// The path job-file inputs are read as; errors of the job-file parser must contain it.
pub const JOB_NAME: &str = "fuzz-job.toml";

/// Runs one input through every stage it reaches. `choice` seeds the choice of the
/// elements to zero (and the job's sample count), so a saved input replays the same way.
pub fn run_input(input: Input<'_>, infer: bool, choice: u64) -> InputReport {
    let mut report = InputReport::default();
    let mut rng = Rng::for_iteration(choice, 0x5eed);
    match input {
        Input::Model(bytes) => run_model(bytes, infer, &mut rng, &mut report),
        Input::Groups { model, json } => run_groups(model, &json, &mut rng, &mut report),
        Input::Job(text) => job::run(&text, &mut rng, &mut report),
    }
    report
}

fn run_model(bytes: Vec<u8>, infer: bool, rng: &mut Rng, report: &mut InputReport) {
    let named = |report: &mut InputReport, e: &oto_onnx::OnnxError| {
        let msg = e.to_string();
        if !msg.contains(INPUT_NAME) {
            report.unnamed_errors.push(msg);
        }
    };
    enter(Stage::Load);
    let model = match Model::from_bytes(bytes, INPUT_NAME) {
        Ok(m) => m,
        Err(e) => {
            named(report, &e);
            return report.refuse(Stage::Load, e);
        }
    };
    if let Some(g) = &model.proto.graph {
        for t in &g.initializer {
            match model.tensor(t) {
                Ok(_) => report.tensors_ok += 1,
                Err(e) => {
                    named(report, &e);
                    report.tensors_err += 1;
                }
            }
        }
    }
    enter(Stage::Graph);
    let graph = match Graph::new(&model) {
        Ok(g) => g,
        Err(e) => {
            named(report, &e);
            return report.refuse(Stage::Graph, e);
        }
    };
    for (_, node) in graph.nodes() {
        if node.op() == "Constant" {
            for out in &node.output {
                if let Err(e) = graph.constant(out) {
                    named(report, &e);
                }
            }
        }
    }
    if !infer {
        return;
    }
    enter(Stage::Infer);
    if let Err(e) = oto_onnx::shape::infer(&graph) {
        named(report, &e);
        return report.refuse(Stage::Infer, e);
    }
    drop(graph);
    // Normalization (what every command runs after loading) folds whole tensors.
    enter(Stage::Normalize);
    let model = match oto_onnx::normalize::normalize(model, &Default::default()) {
        Ok((m, _)) => m,
        Err(e) => {
            named(report, &e);
            return report.refuse(Stage::Normalize, e);
        }
    };
    enter(Stage::Analyze);
    let mut options = AnalyzeOptions::default();
    if rng.chance(10) {
        // `--unprunable`: an initializer or node of the model, or a name it does not have.
        let names: Vec<String> = model.proto.graph.iter().flat_map(|g| g.initializer.iter().filter_map(|t| t.name.clone())).collect();
        options.unprunable.push(rng.pick(&names).cloned().unwrap_or_else(|| "no_such_name".into()));
    }
    let analysis = match oto_graph::analyze(&model, &options) {
        Ok(a) => a,
        Err(e) => return report.refuse(Stage::Analyze, e),
    };
    // What `oto analyze --json` writes must pass the check `Analysis::load` runs.
    match serde_json::to_string(&analysis).map(|text| serde_json::from_str::<Analysis>(&text)) {
        Ok(Ok(saved)) => {
            if saved != analysis {
                report.invalid.push("the analysis does not survive its JSON round trip".into());
            }
            if let Err(e) = saved.check(&model) {
                report.invalid.push(format!("the model's own analysis fails Analysis::check: {e}"));
            }
        }
        Ok(Err(e)) => report.invalid.push(format!("the analysis' JSON does not parse back: {e}")),
        Err(e) => report.invalid.push(format!("the analysis does not serialize: {e}")),
    }
    construct(&model, &analysis, rng, report);
}

fn run_groups(model: &Model, json: &str, rng: &mut Rng, report: &mut InputReport) {
    enter(Stage::GroupsParse);
    let analysis: Analysis = match serde_json::from_str(json) {
        Ok(a) => a,
        Err(e) => return report.refuse(Stage::GroupsParse, e),
    };
    enter(Stage::GroupsCheck);
    if let Err(e) = analysis.check(model) {
        return report.refuse(Stage::GroupsCheck, e);
    }
    construct(model, &analysis, rng, report);
}

/// Zeroes a few elements of some prunable groups (sometimes an element out of range or
/// an unknown group), constructs as `oto construct` does, and validates the result.
fn construct(model: &Model, analysis: &Analysis, rng: &mut Rng, report: &mut InputReport) {
    enter(Stage::Construct);
    let mut chosen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for g in analysis.prunable_groups() {
        if g.num_elements > 1 && rng.chance(60) {
            let k = 1 + rng.below(g.num_elements - 1);
            let mut elems: Vec<usize> = (0..k).map(|_| rng.below(g.num_elements)).collect();
            elems.sort_unstable();
            elems.dedup();
            chosen.insert(g.id.clone(), elems);
        }
    }
    if rng.chance(3) {
        // Hostile removals: out of range, every element, an unknown or unprunable group.
        let (id, elems) = match (rng.below(3), analysis.groups.first()) {
            (0, Some(g)) => (g.id.clone(), vec![g.num_elements.saturating_add(rng.below(3))]),
            (1, Some(g)) => (g.id.clone(), (0..g.num_elements).collect()),
            _ => ("no_such_group:0".to_string(), vec![0]),
        };
        chosen.insert(id, elems);
    }
    if chosen.is_empty() {
        return;
    }
    let zeroed = match oto_construct::zero_producers(model, analysis, &chosen) {
        Ok(m) => m,
        Err(e) => return report.refuse(Stage::Construct, e),
    };
    let removed = match oto_construct::zero_elements(analysis, &zeroed) {
        Ok(r) => r,
        Err(e) => return report.refuse(Stage::Construct, e),
    };
    let compact = match oto_construct::construct(&zeroed, analysis, &removed) {
        Ok((compact, _)) => compact,
        Err(e) => return report.refuse(Stage::Construct, e),
    };
    report.constructed = true;
    // The compact model must be one oto itself reads: encoded, loaded, built, inferred.
    enter(Stage::Validate);
    let reloaded = match Model::from_bytes(compact.proto.encode_to_vec(), "compact.onnx") {
        Ok(m) => m,
        Err(e) => return report.invalid.push(format!("the compact model does not load: {e}")),
    };
    let graph = match Graph::new(&reloaded) {
        Ok(g) => g,
        Err(e) => return report.invalid.push(format!("the compact model's graph is refused: {e}")),
    };
    if let Err(e) = oto_onnx::shape::infer(&graph) {
        report.invalid.push(format!("shape inference refuses the compact model: {e}"));
    }
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
    /// Folders of seed models.
    pub corpus: Vec<PathBuf>,
    /// Folder of seed job files.
    pub jobs: PathBuf,
    /// Where failing inputs are written.
    pub crash_dir: PathBuf,
    /// Whether to run shape inference and the stages after it.
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
    /// Inputs per kind ([`KINDS`]).
    pub by_kind: [u64; 3],
    /// Inputs per kind that every stage accepted.
    pub accepted: [u64; 3],
    /// Inputs refused with an error, per stage.
    pub refused: BTreeMap<Stage, u64>,
    /// Inputs that reached each stage (entered it), whatever came of it.
    pub reached: BTreeMap<Stage, u64>,
    /// Compact models constructed.
    pub constructed: u64,
    /// Initializers decoded / refused.
    pub tensors_ok: u64,
    /// See `tensors_ok`.
    pub tensors_err: u64,
    /// Inputs that panicked, per stage.
    pub panics: BTreeMap<Stage, u64>,
    /// Inputs with an allocation (single or peak) over its bound.
    pub alloc_violations: u64,
    /// Failures (panics, allocations over the bound, unnamed errors, broken promises),
    /// with the file each input was saved to.
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

impl Summary {
    /// Inputs that panicked.
    pub fn panic_count(&self) -> u64 {
        self.panics.values().sum()
    }
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

/// Installs the hook that records a panic's message and location for the report
/// (instead of printing it); returns the previous hook.
pub fn capture_panics() -> Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static> {
    let previous = std::panic::take_hook();
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
    previous
}

/// Runs `f` (one input) under `catch_unwind`: the panic's stage and message, or its result.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, (Stage, String)> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        let msg = PANIC_MESSAGE.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
        (STAGES[CURRENT_STAGE.load(Ordering::SeqCst)], msg)
    })
}

/// Runs the fuzz loop.
pub fn run(config: &Config) -> Result<Summary, String> {
    let corpus = Corpus::load(&config.corpus, &config.jobs, config.max_model_bytes)?;
    eprintln!(
        "fuzz: {} seed models ({} shrunk), {} with groups for the saved-analysis inputs, {} job files",
        corpus.models.len(),
        corpus.models.iter().filter(|s| s.shrunk).count(),
        corpus.analyses.len(),
        corpus.jobs.len()
    );
    run_corpus(config, &corpus)
}

/// Runs the fuzz loop over a loaded corpus.
pub fn run_corpus(config: &Config, corpus: &Corpus) -> Result<Summary, String> {
    std::fs::create_dir_all(&config.crash_dir).map_err(|e| format!("{}: {e}", config.crash_dir.display()))?;
    let _ = CRASH_DIR.set(config.crash_dir.clone());
    HARD_CAP.store(HARD_CAP_BYTES, Ordering::SeqCst);
    let previous_hook = capture_panics();
    let mut summary = Summary::default();
    let started = Instant::now();
    for iteration in config.start..config.start + config.iterations {
        let (origin, input) = make_input(corpus, config.seed, iteration);
        let kind = input.kind();
        let len = input.weight();
        let ext = input.extension();
        let companion = match &input {
            Input::Groups { model, .. } => Some(model.proto.encode_to_vec()),
            _ => None,
        };
        let save = |what: &str, input: &[u8]| -> String {
            let stem = format!("{what}-{}-seed{}-iter{iteration}", KINDS[kind], config.seed);
            let path = config.crash_dir.join(format!("{stem}.{ext}"));
            if let Some(model) = &companion {
                // The model a saved analysis goes with: `--replay X.json` reads X.onnx.
                let _ = std::fs::write(config.crash_dir.join(format!("{stem}.onnx")), model);
            }
            match std::fs::write(&path, input) {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("(could not save {}: {e})", path.display()),
            }
        };
        let copy = input.bytes().to_vec();
        CURRENT_ITERATION.store(iteration, Ordering::SeqCst);
        CURRENT_INPUT.store(copy.as_ptr().cast_mut(), Ordering::SeqCst);
        CURRENT_INPUT_LEN.store(copy.len(), Ordering::SeqCst);
        let baseline = LIVE.load(Ordering::SeqCst);
        PEAK.store(baseline, Ordering::SeqCst);
        LARGEST.store(0, Ordering::SeqCst);
        let t0 = Instant::now();
        let choice = config.seed ^ iteration;
        let result = catch(|| run_input(input, config.infer, choice));
        let took = t0.elapsed();
        let largest = LARGEST.load(Ordering::SeqCst);
        let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
        CURRENT_INPUT.store(std::ptr::null_mut(), Ordering::SeqCst);
        summary.iterations += 1;
        summary.by_kind[kind] += 1;
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
        let last_stage = STAGES[CURRENT_STAGE.load(Ordering::SeqCst)];
        *summary.reached.entry(last_stage).or_default() += 1;
        match result {
            Err((stage, msg)) => {
                *summary.panics.entry(stage).or_default() += 1;
                let path = save("panic", &copy);
                let line = format!(
                    "seed {} iteration {iteration} ({} from {origin}): panic in stage {stage:?}: {msg}; input saved to {path}",
                    config.seed, KINDS[kind]
                );
                eprintln!("fuzz: {line}");
                summary.failures.push(line);
            }
            Ok(report) => {
                match report.refused_at {
                    Some(stage) => *summary.refused.entry(stage).or_default() += 1,
                    None => summary.accepted[kind] += 1,
                }
                summary.constructed += u64::from(report.constructed);
                summary.tensors_ok += report.tensors_ok as u64;
                summary.tensors_err += report.tensors_err as u64;
                if let Some(msg) = report.unnamed_errors.first() {
                    let path = save("unnamed", &copy);
                    summary.failures.push(format!(
                        "iteration {iteration} ({} from {origin}): error does not name the file: {msg:?}; input saved to {path}",
                        KINDS[kind]
                    ));
                }
                if let Some(msg) = report.invalid.first() {
                    let path = save("invalid", &copy);
                    summary.failures.push(format!("iteration {iteration} ({} from {origin}): {msg}; input saved to {path}", KINDS[kind]));
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
                "fuzz: {} inputs, {:.0}/s, {} constructed, {} failures",
                summary.iterations,
                summary.iterations as f64 / started.elapsed().as_secs_f64(),
                summary.constructed,
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
        for (k, name) in KINDS.iter().enumerate() {
            writeln!(f, "  {name:<7}      {} inputs, {} accepted by every stage", self.by_kind[k], self.accepted[k])?;
        }
        let list = |m: &BTreeMap<Stage, u64>| m.iter().map(|(s, n)| format!("{s:?} {n}")).collect::<Vec<_>>().join(", ");
        writeln!(f, "last stage:    {}", list(&self.reached))?;
        writeln!(f, "refused at:    {}", list(&self.refused))?;
        writeln!(f, "constructed:   {} compact models", self.constructed)?;
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
            "failures:      {} ({} panics{}, {} inputs over an allocation bound)",
            self.failures.len(),
            self.panic_count(),
            if self.panics.is_empty() { String::new() } else { format!(": {}", list(&self.panics)) },
            self.alloc_violations
        )?;
        for failure in self.failures.iter().take(50) {
            writeln!(f, "  {failure}")?;
        }
        Ok(())
    }
}

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The seed model folders: the dynamo zoo, the TorchScript exports, the Optimum exports,
/// the hand-made Model Zoo-era files (those that exist; the first is required).
pub fn default_corpus() -> Vec<PathBuf> {
    let root = workspace();
    let mut dirs = vec![root.join("graphs/zoo")];
    dirs.extend(
        ["graphs/user_zoo/torchscript", "graphs/optimum_zoo", "graphs/legacy_zoo"].iter().map(|d| root.join(d)).filter(|d| d.is_dir()),
    );
    dirs
}

/// The folder of the seed job files (the bundled examples).
pub fn default_jobs() -> PathBuf {
    workspace().join("examples")
}

/// Where failing inputs are saved by default (git-ignored).
pub fn default_crash_dir() -> PathBuf {
    workspace().join("fuzz/artifacts")
}

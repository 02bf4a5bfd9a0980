//! Channel spaces: how the axes of values are tied to each other, and the solver that
//! turns the recorded ties into pruning groups.
//!
//! Every operator that creates channels (a Conv's output, a Gemm's output...) opens a
//! *base*: `n` positions. The axis of a value is described by [`AxisT`], a product of
//! factors; a tracked factor is a list of segments laid end to end, each a range of a
//! base (a Concat's output axis is several ranges of several bases). Operators record:
//! * ties between ranges of bases (position `i` of one is position `i` of the other),
//! * parameter slices reading or producing ranges (members),
//! * ranges that cannot be pruned (blocks, with the reason),
//! * element sizes a range needs (whole heads, whole conv groups, whole norm groups),
//! * integer constants counting positions of ranges (Reshape targets, Split sizes...).
//!
//! [`Spaces::solve`] cuts every base at every boundary any record uses (propagated
//! through the ties until stable), unions the resulting intervals along the ties, and
//! makes one group per class. Linear in the records, up to the boundary propagation,
//! which settles in a few passes.

use crate::model::{CacheSlice, ElementKind, Group, IndexMap, Member, ReadSlice, Role, ShapeConstant, ShapeLocation};
use oto_onnx::Dim;
use petgraph::unionfind::UnionFind;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Index of a base in [`Spaces`].
pub(crate) type BaseId = usize;

/// A contiguous range of positions of one base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Range {
    pub base: BaseId,
    pub start: usize,
    pub len: usize,
}

impl Range {
    pub fn end(&self) -> usize {
        self.start + self.len
    }
    /// The sub-range `[start + off, start + off + len)`.
    pub fn sub(&self, off: usize, len: usize) -> Range {
        Range { base: self.base, start: self.start + off, len }
    }
}

/// How the positions of a segment relate to the positions of its base range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    /// One axis position per base position.
    Unit,
    /// One axis position per `k` consecutive base positions (the head axis of `[H, D]`).
    Coarse(usize),
    /// `n` axis positions per block of `k` consecutive base positions: a window of every
    /// block (GPT-NeoX's attention output, the `v` of each head's `[q | k | v]`). Only
    /// whole blocks are elements (required where such a segment is made), so which
    /// positions of a block the window holds never matters.
    Window { k: usize, n: usize },
}

/// A piece of a tracked factor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seg {
    /// Positions that belong to no space (an untracked input of a Concat).
    Opaque(usize),
    /// Positions of a base range.
    Tracked { range: Range, scale: Scale, zero: bool },
}

impl Seg {
    /// Length along the axis.
    pub fn axis_len(&self) -> usize {
        match self {
            Seg::Opaque(n) => *n,
            Seg::Tracked { range, scale: Scale::Unit, .. } => range.len,
            Seg::Tracked { range, scale: Scale::Coarse(k), .. } => range.len / k,
            Seg::Tracked { range, scale: Scale::Window { k, n }, .. } => range.len / k * n,
        }
    }

    /// Whether the axis positions `[off, off + len)` of this segment are whole blocks of
    /// its base (always, but for a window segment cut inside a block).
    pub fn cuts_whole(&self, off: usize, len: usize) -> bool {
        match self {
            Seg::Tracked { scale: Scale::Window { n, .. }, .. } => off.is_multiple_of(*n) && len.is_multiple_of(*n),
            _ => true,
        }
    }

    /// The part `[off, off + len)` of this segment (axis positions; for a window segment,
    /// the whole blocks they touch: see [`Seg::cuts_whole`]).
    pub fn cut(&self, off: usize, len: usize) -> Seg {
        match self {
            Seg::Opaque(_) => Seg::Opaque(len),
            Seg::Tracked { range, scale, zero } => {
                let range = match scale {
                    Scale::Unit => range.sub(off, len),
                    Scale::Coarse(k) => range.sub(off * k, len * k),
                    Scale::Window { k, n } => {
                        let (first, end) = (off / n, (off + len).div_ceil(*n));
                        range.sub(first * k, (end - first) * k)
                    }
                };
                Seg::Tracked { range, scale: *scale, zero: *zero }
            }
        }
    }
}

/// The tracked content of one factor of an axis.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Track {
    /// Segments laid end to end.
    Segs(Vec<Seg>),
    /// Position `d` inside every block of `k` positions of each range (the `D` axis of
    /// `[H, D]`; the ranges are the ones the matching coarse factor lists). `at`: the
    /// factor's positions are `at..at + size` of every block, in order (a slice of the
    /// block: the V of GPT-NeoX's per-head `[q | k | v]`); `None` once they are
    /// rearranged inside the block (rotary's `rotate_half`), which still keeps them
    /// inside it.
    Inner { k: usize, ranges: Vec<Range>, zero: bool, at: Option<usize> },
    /// Sub-blocks inside every block of `k` positions of each range: position `j` of the
    /// factor is the `step` positions from `at + j * step` of the block (the `3` of
    /// BLOOM's per-head `[3, D]`, the `rep + 2` of Falcon's per-group `[q.., k, v]`). The
    /// `D` split off with it is an `Inner` factor of `step` positions with `at: None`
    /// until a constant index picks one sub-block (`pick_sub`) or the two are merged
    /// back (`normalize`).
    Sub { k: usize, ranges: Vec<Range>, zero: bool, at: usize, step: usize },
}

impl Track {
    /// Every base range this track refers to.
    pub fn ranges(&self) -> Vec<Range> {
        match self {
            Track::Segs(segs) => segs
                .iter()
                .filter_map(|s| match s {
                    Seg::Tracked { range, .. } => Some(*range),
                    Seg::Opaque(_) => None,
                })
                .collect(),
            Track::Inner { ranges, .. } | Track::Sub { ranges, .. } => ranges.clone(),
        }
    }

    /// Applies `f` to every zero flag.
    pub fn map_zero(&mut self, f: &impl Fn(bool) -> bool) {
        match self {
            Track::Segs(segs) => {
                for s in segs {
                    if let Seg::Tracked { zero, .. } = s {
                        *zero = f(*zero);
                    }
                }
            }
            Track::Inner { zero, .. } | Track::Sub { zero, .. } => *zero = f(*zero),
        }
    }

    /// Whether every tracked piece is zero when its element's producers are zero.
    pub fn all_zero(&self) -> bool {
        match self {
            Track::Segs(segs) => segs.iter().all(|s| !matches!(s, Seg::Tracked { zero: false, .. })),
            Track::Inner { zero, .. } | Track::Sub { zero, .. } => *zero,
        }
    }
}

/// One factor of an axis: a size and, if tracked, how its positions map to spaces.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Factor {
    pub size: Dim,
    pub track: Option<Track>,
}

/// An axis of a value: factors from outer to inner (an axis `[B*H]` is `B` then `H`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AxisT {
    pub factors: Vec<Factor>,
}

/// A tracked segment of an axis in its linear layout.
#[derive(Clone, Debug)]
pub(crate) struct LinSeg {
    /// First axis position of the segment.
    pub offset: usize,
    pub range: Range,
    pub scale: Scale,
    pub zero: bool,
    /// Axis positions per segment position (untracked factors inside the tracked one,
    /// e.g. the `H*W` of a flattened `[C, H, W]`).
    pub repeat: usize,
    /// Untracked factors outside the tracked one (the `H*W` of a flattened channels-last
    /// `[H, W, C]`): the layout repeats that many times along the axis.
    pub outer: Outer,
}

/// How many times a linear layout repeats along an axis, and how far apart: the tracked
/// factor's positions (with the factors inside it) laid `count` times, `period` axis
/// positions apart. Position `p` of the layout is at `o * period + p` for `o < count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Outer {
    pub count: usize,
    pub period: usize,
}

impl Outer {
    /// The layout laid once (no untracked factor outside the tracked one).
    pub const ONCE: Outer = Outer { count: 1, period: 0 };
}

impl AxisT {
    /// An untracked axis of size `size`.
    pub fn plain(size: Dim) -> AxisT {
        AxisT { factors: vec![Factor { size, track: None }] }
    }

    /// A single-segment axis over a whole range.
    pub fn unit(range: Range, zero: bool) -> AxisT {
        AxisT::segs(vec![Seg::Tracked { range, scale: Scale::Unit, zero }])
    }

    /// A single-factor axis of segments.
    pub fn segs(segs: Vec<Seg>) -> AxisT {
        let n: usize = segs.iter().map(Seg::axis_len).sum();
        AxisT { factors: vec![Factor { size: Dim::Known(n as i64), track: Some(Track::Segs(segs)) }] }
    }

    /// Whether any factor is tracked.
    pub fn is_tracked(&self) -> bool {
        self.factors.iter().any(|f| f.track.is_some())
    }

    /// Whether the axis is tracked and every tracked factor is the inside of heads (the `D`
    /// of `[H, D]`: whole heads go, the axis keeps its size).
    pub fn is_inside_heads(&self) -> bool {
        self.is_tracked() && self.factors.iter().filter_map(|f| f.track.as_ref()).all(|t| matches!(t, Track::Inner { .. }))
    }

    /// Every base range of the axis.
    pub fn ranges(&self) -> Vec<Range> {
        self.factors.iter().filter_map(|f| f.track.as_ref()).flat_map(Track::ranges).collect()
    }

    /// Applies `f` to every zero flag.
    pub fn map_zero(&mut self, f: &impl Fn(bool) -> bool) {
        for t in self.factors.iter_mut().filter_map(|f| f.track.as_mut()) {
            t.map_zero(f);
        }
    }

    /// Whether every tracked piece is zero on zeroed elements.
    pub fn all_zero(&self) -> bool {
        self.factors.iter().filter_map(|f| f.track.as_ref()).all(Track::all_zero)
    }

    /// The single segment list of a one-factor axis, if it is one.
    pub fn single_segs(&self) -> Option<&Vec<Seg>> {
        match self.factors.as_slice() {
            [Factor { track: Some(Track::Segs(s)), .. }] => Some(s),
            _ => None,
        }
    }

    /// The axis as tracked segments at axis offsets: `Ok(None)` when untracked,
    /// `Err` when the layout is not a contiguous block per position (a tracked factor
    /// inside an untracked one of size > 1, a head-dim factor, two tracked factors).
    pub fn linear(&self) -> Result<Option<Vec<LinSeg>>, String> {
        let segs = self.strided()?;
        if segs.iter().flatten().any(|s| s.outer.count > 1) {
            return Err("the channels are interleaved with another dimension (strided layout)".into());
        }
        Ok(segs)
    }

    /// As [`AxisT::linear`], but a tracked factor inside untracked ones of known sizes is
    /// laid out too ([`LinSeg::outer`]): a flattened channels-last `[H, W, C]`, whose
    /// channel `c` is every `C`-th position. For parameter slices, which any index set
    /// can cut; not for operators that need each channel's positions contiguous.
    pub fn strided(&self) -> Result<Option<Vec<LinSeg>>, String> {
        let tracked: Vec<usize> = self.factors.iter().enumerate().filter(|(_, f)| f.track.is_some()).map(|(i, _)| i).collect();
        let Some(&t) = tracked.first() else {
            return Ok(None);
        };
        if tracked.len() > 1 {
            return Err("the axis mixes two tracked factors".into());
        }
        let mut count = 1usize;
        for f in &self.factors[..t] {
            match f.size.known().and_then(|v| usize::try_from(v).ok()).filter(|&v| v >= 1) {
                Some(v) => count = count.checked_mul(v).ok_or("the axis is too long")?,
                None => return Err(format!("the channels are inside a dimension of unknown size {}", f.size)),
            }
        }
        let mut repeat = 1usize;
        for f in &self.factors[t + 1..] {
            match f.size.known().and_then(|v| usize::try_from(v).ok()).filter(|&v| v >= 1) {
                Some(v) => repeat = repeat.checked_mul(v).ok_or("the axis is too long")?,
                None => return Err(format!("the channels are followed by a dimension of unknown size {}", f.size)),
            }
        }
        let Some(Track::Segs(segs)) = &self.factors[t].track else {
            return Err("the axis is the inner dimension of a head (not a channel axis)".into());
        };
        let mut out = Vec::new();
        let mut offset = 0usize;
        for s in segs {
            if let Seg::Tracked { range, scale, zero } = s {
                out.push(LinSeg { offset, range: *range, scale: *scale, zero: *zero, repeat, outer: Outer::ONCE });
            }
            offset += s.axis_len() * repeat;
        }
        // The period is the whole factor's length, known once every segment is laid out.
        if count > 1 {
            let outer = Outer { count, period: offset };
            out.iter_mut().for_each(|s| s.outer = outer);
        }
        Ok(Some(out))
    }
}

/// The axis tracks of a value (one per axis).
pub(crate) type ValueT = Vec<AxisT>;

/// Why elements of a range must be grouped in blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReqKind {
    /// A channel axis reshaped into (blocks, block size).
    Split,
    /// Attention heads (a coarse axis used as a batch axis of an activation product).
    Head,
    ConvGroup,
    NormGroup,
}

#[derive(Clone, Debug)]
struct RawMember {
    init: String,
    axis: usize,
    range: Range,
    /// Axis position of `range.start`.
    offset: usize,
    /// Axis positions per base position, as `num / den`.
    num: usize,
    den: usize,
    /// The slice repeated along the axis (a flattened channels-last layout).
    outer: Outer,
    role: Role,
}

/// What part of an integer entry's value a range accounts for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Part {
    /// `range.len * num / den` (channels, flattened blocks, conv or norm groups).
    Fixed(Range, usize, usize),
    /// The number of `k`-blocks of `range`, times `num` (the `H` of `[B, S, H, D]`):
    /// changes when whole blocks are removed.
    Coarse(Range, usize, usize),
    /// The block size `k` of the coarse blocks of `ranges`, times `num` (the `D`, or the
    /// per-projection width of a packed `[.., 3, E]`): changes when every block loses
    /// the same positions. `whole`: the entry counts every position of a block (not a
    /// window of it, whose loss the solver does not follow inside a block).
    Inner(Vec<Range>, usize, usize, bool),
}

impl Part {
    /// The same positions counted `f` times (a size multiplied by a constant).
    pub fn times(self, f: usize) -> Part {
        match self {
            Part::Fixed(r, num, den) => Part::Fixed(r, num.saturating_mul(f), den),
            Part::Coarse(r, k, num) => Part::Coarse(r, k, num.saturating_mul(f)),
            Part::Inner(rs, k, num, whole) => Part::Inner(rs, k, num.saturating_mul(f), whole),
        }
    }

    /// The same positions counted `1/c` times (a size divided by a constant), when the
    /// count stays a whole multiple of what it counts (coarse and inner counts).
    pub fn divided(self, c: usize) -> Option<Part> {
        match self {
            Part::Fixed(r, num, den) => Some(Part::Fixed(r, num, den.checked_mul(c)?)),
            Part::Coarse(r, k, num) => num.is_multiple_of(c).then(|| Part::Coarse(r, k, num / c)),
            Part::Inner(rs, k, num, whole) => num.is_multiple_of(c).then(|| Part::Inner(rs, k, num / c, whole)),
        }
    }

    pub fn ranges(&self) -> Vec<Range> {
        match self {
            Part::Fixed(r, ..) | Part::Coarse(r, ..) => vec![*r],
            Part::Inner(rs, ..) => rs.clone(),
        }
    }
}

/// Where the value of a recorded integer entry comes from.
#[derive(Clone, Debug)]
pub(crate) enum RefAt {
    /// A constant that construction rewrites; `true` when it is read through shape
    /// arithmetic (the reading node is not the one whose entry counts the channels).
    Const(ShapeLocation, bool),
    /// Computed at run time from values that do not follow the group (why).
    Fixed(String),
    /// Computed at run time as the size of a value axis counting these parts (and why
    /// that may differ from what the entry must count); where the entry is read from a
    /// computed value that construction can edit, the difference is made up there.
    /// Last: where the entry is known in the model as analysed, the location that pins it
    /// ([`ShapeLocation::Pinned`]) to that value minus the edits of the classes it counts,
    /// whichever classes change the size, when the computed value cannot make up the
    /// difference.
    Follows(Vec<Part>, String, Option<ShapeLocation>, Option<ShapeLocation>),
    /// Computed at run time, in a way the analysis does not follow (why), from the sizes
    /// of value axes counting these parts (FocalNet's split bound `C + C` read off the
    /// width): it changes with them by an unknown amount. Construction pins it, at the
    /// location given, to its value less the edits of the classes it counts, whichever
    /// classes are removed; without one, those classes and the measured ones are
    /// unprunable.
    Computed(Vec<Part>, String, Option<ShapeLocation>),
}

#[derive(Clone, Debug)]
struct RawShapeRef {
    /// The constant to rewrite, or how the entry is computed at run time: a class that
    /// would change it other than by itself is unprunable, and one that leaves it as it
    /// is (whole heads removed from a head-dim entry) is not affected.
    location: RefAt,
    entry: usize,
    /// The node reading the entry.
    user: String,
    parts: Vec<Part>,
}

impl RawShapeRef {
    /// `initializer 'x' entry 2`, or the reading node for an entry no constant holds.
    fn label(&self) -> String {
        match &self.location {
            RefAt::Const(loc, _) => format!("{loc} entry {}", self.entry),
            _ => format!("entry {} of the shape read by node '{}'", self.entry, self.user),
        }
    }
}

/// The records of one analysis, then solved into groups.
#[derive(Default)]
pub(crate) struct Spaces {
    bases: Vec<usize>,
    eqs: Vec<(Range, Range)>,
    members: Vec<RawMember>,
    /// Key/value caches kept at full width (see [`Spaces::cache`]); `init` is the value.
    caches: Vec<RawMember>,
    /// Values read at their kept positions (see [`Spaces::read`]), each with its reader.
    reads: Vec<(RawMember, String)>,
    blocks: Vec<(Range, String)>,
    reqs: Vec<(Range, usize, ReqKind)>,
    shape_refs: Vec<RawShapeRef>,
    balanced: Vec<(String, Vec<Vec<Range>>)>,
}

/// Parameter counts the solver needs: initializer name -> dims.
pub(crate) type InitDims = HashMap<String, Vec<usize>>;

/// Per (location, entry): the amount per element each reading node needs.
type ShapeEdits = BTreeMap<(ShapeLocation, usize), BTreeMap<String, i64>>;

/// `a * b` as an i64 (saturating: the amounts are channel counts).
fn frac_i64(a: usize, b: usize) -> i64 {
    i64::try_from(a.saturating_mul(b)).unwrap_or(i64::MAX)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// The intervals between the cuts of every base, and their classes (tied intervals).
struct Partition {
    /// Every interval, base by base in order.
    intervals: Vec<Range>,
    /// The sorted cut positions per base.
    cuts: Vec<Vec<usize>>,
    /// Per base, the index of its first interval.
    first_interval: Vec<usize>,
    /// Per interval, its class (`usize::MAX` for an empty interval).
    class_of: Vec<usize>,
    /// Per class, its intervals.
    class_members: Vec<Vec<usize>>,
}

impl Partition {
    /// The interval holding position `pos` of `base`.
    fn interval_at(&self, base: BaseId, pos: usize) -> usize {
        let pts = &self.cuts[base];
        let i = pts.partition_point(|&c| c <= pos) - 1;
        self.first_interval[base] + i
    }

    /// The intervals `r` covers.
    fn covered(&self, r: &Range) -> std::ops::Range<usize> {
        if r.len == 0 {
            return 0..0;
        }
        self.interval_at(r.base, r.start)..self.interval_at(r.base, r.end() - 1) + 1
    }
}

impl Spaces {
    /// Opens a base of `n` positions.
    pub fn new_base(&mut self, n: usize) -> Range {
        self.bases.push(n);
        Range { base: self.bases.len() - 1, start: 0, len: n }
    }

    /// Ties two ranges linearly: offset `o` of `a` is offset `o * b.len / a.len` of `b`
    /// (position by position for equal lengths; a K/V head to its query heads otherwise).
    pub fn tie(&mut self, a: Range, b: Range) {
        if a != b && a.len > 0 && b.len > 0 {
            self.eqs.push((a, b));
        }
    }

    /// Marks a range unprunable.
    pub fn block(&mut self, r: Range, reason: impl Into<String>) {
        self.blocks.push((r, reason.into()));
    }

    /// Requires the elements of a range to be blocks of `k` positions aligned to its start.
    pub fn require_block(&mut self, r: Range, k: usize, kind: ReqKind) {
        if k > 1 {
            self.reqs.push((r, k, kind));
        }
    }

    /// Records a parameter slice: base positions of `range` map to axis positions
    /// `offset + (p - range.start) * num / den` of `init`'s axis `axis`, repeated as
    /// `outer` says.
    #[allow(clippy::too_many_arguments)]
    pub fn member(&mut self, init: &str, axis: usize, range: Range, offset: usize, num: usize, den: usize, outer: Outer, role: Role) {
        self.members.push(RawMember { init: init.to_string(), axis, range, offset, num, den, outer, role });
    }

    /// Records a cache (a graph output, see `Ctx::cache_along`) whose axis `axis` holds
    /// the positions of `range` as [`Spaces::member`] lays them out: not a parameter, but
    /// construction needs the removed positions along it.
    #[allow(clippy::too_many_arguments)]
    pub fn cache(&mut self, value: &str, axis: usize, range: Range, offset: usize, num: usize, den: usize, outer: Outer) {
        self.caches.push(RawMember { init: value.to_string(), axis, range, offset, num, den, outer, role: Role::Aux });
    }

    /// Records that the node writing `reader` reads `value` (which does not follow the
    /// elements) together with the positions of `range`, laid out along `value`'s axis
    /// `axis` as [`Spaces::member`] lays them out: construction gives that node the kept
    /// positions only ([`ReadSlice`]).
    #[allow(clippy::too_many_arguments)]
    pub fn read(&mut self, value: &str, reader: &str, axis: usize, range: Range, offset: usize, num: usize, den: usize, outer: Outer) {
        let m = RawMember { init: value.to_string(), axis, range, offset, num, den, outer, role: Role::Aux };
        self.reads.push((m, reader.to_string()));
    }

    /// Requires every class to lose as many positions from each part as from the others.
    pub fn balanced(&mut self, reason: String, parts: Vec<Vec<Range>>) {
        self.balanced.push((reason, parts));
    }

    /// Records an integer entry counting positions of ranges (`len * num / den` each),
    /// held where `location` says.
    pub fn shape_ref(&mut self, location: RefAt, entry: usize, user: &str, parts: Vec<Part>) {
        let follows = matches!(&location, RefAt::Follows(m, ..) | RefAt::Computed(m, ..) if !m.is_empty());
        if !parts.is_empty() || follows {
            self.shape_refs.push(RawShapeRef { location, entry, user: user.to_string(), parts });
        }
    }

    /// Phase 1 of [`Spaces::solve`]: the boundaries per base (every range any tie, member,
    /// block, requirement or shape reference starts or ends at), closed under the ties;
    /// also the tied pairs whose blocks do not line up.
    fn cuts(&self) -> (Vec<BTreeSet<usize>>, Vec<(Range, Range)>) {
        let mut cuts: Vec<BTreeSet<usize>> = self.bases.iter().map(|&n| BTreeSet::from([0, n])).collect();
        let add = |r: &Range, cuts: &mut Vec<BTreeSet<usize>>| {
            cuts[r.base].insert(r.start);
            cuts[r.base].insert(r.end());
        };
        for (a, b) in &self.eqs {
            add(a, &mut cuts);
            add(b, &mut cuts);
        }
        for m in &self.members {
            add(&m.range, &mut cuts);
        }
        for (r, _) in &self.blocks {
            add(r, &mut cuts);
        }
        for (r, _, _) in &self.reqs {
            add(r, &mut cuts);
        }
        for r in self.balanced.iter().flat_map(|(_, p)| p.iter().flatten()) {
            add(r, &mut cuts);
        }
        for s in &self.shape_refs {
            let measured = match &s.location {
                RefAt::Follows(m, ..) | RefAt::Computed(m, ..) => m.as_slice(),
                _ => &[],
            };
            for r in s.parts.iter().chain(measured).flat_map(Part::ranges) {
                add(&r, &mut cuts);
            }
        }
        let mut misaligned: Vec<(Range, Range)> = Vec::new();
        loop {
            let mut changed = false;
            for (a, b) in &self.eqs {
                for (x, y) in [(a, b), (b, a)] {
                    let inner: Vec<usize> = cuts[x.base].range(x.start + 1..x.end()).map(|&c| c - x.start).collect();
                    for off in inner {
                        if off * y.len % x.len != 0 {
                            misaligned.push((*x, *y));
                            continue;
                        }
                        changed |= cuts[y.base].insert(y.start + off * y.len / x.len);
                    }
                }
            }
            if !changed {
                break;
            }
        }
        (cuts, misaligned)
    }

    /// Phase 2 of [`Spaces::solve`]: the intervals between the cuts, the union of tied
    /// intervals, and the classes, numbered in the order of their first interval.
    fn partition(&self, cuts: &[BTreeSet<usize>]) -> Partition {
        let mut first_interval = Vec::with_capacity(self.bases.len());
        let mut intervals: Vec<Range> = Vec::new();
        for (base, set) in cuts.iter().enumerate() {
            first_interval.push(intervals.len());
            let pts: Vec<usize> = set.iter().copied().collect();
            for w in pts.windows(2) {
                intervals.push(Range { base, start: w[0], len: w[1] - w[0] });
            }
        }
        let cuts: Vec<Vec<usize>> = cuts.iter().map(|s| s.iter().copied().collect()).collect();
        let mut partition = Partition { intervals, cuts, first_interval, class_of: Vec::new(), class_members: Vec::new() };
        let intervals = &partition.intervals;
        let mut uf = UnionFind::<usize>::new(intervals.len());
        for (a, b) in &self.eqs {
            for i in partition.covered(a) {
                let off = intervals[i].start - a.start;
                uf.union(i, partition.interval_at(b.base, b.start + off * b.len / a.len));
            }
        }
        // Classes, numbered in the order of their first interval (independent of which
        // member the union-find keeps as root).
        let mut class_of = vec![usize::MAX; intervals.len()];
        let mut class_members: Vec<Vec<usize>> = Vec::new();
        let mut class_of_root: HashMap<usize, usize> = HashMap::new();
        for (i, iv) in intervals.iter().enumerate() {
            if iv.len > 0 {
                let c = *class_of_root.entry(uf.find_mut(i)).or_insert_with(|| {
                    class_members.push(Vec::new());
                    class_members.len() - 1
                });
                class_members[c].push(i);
                class_of[i] = c;
            }
        }
        partition.class_of = class_of;
        partition.class_members = class_members;
        partition
    }

    /// Solves the records into groups (sorted by id), in phases: the cuts (1) and the
    /// classes of tied intervals (2), then the element size of every class (3), the
    /// reasons a class is unprunable that its ranges carry (4), the parameter slices of
    /// each class (5), the shape constants each class edits (6), and the groups (7).
    /// `user_blocked` blocks the groups of those initializers, with the reason given.
    pub fn solve(&self, dims: &InitDims, user_blocked: &HashMap<String, String>) -> Vec<Group> {
        let (cuts, misaligned) = self.cuts();
        let partition = self.partition(&cuts);
        let mut reasons: Vec<BTreeSet<String>> = vec![BTreeSet::new(); partition.class_members.len()];
        let elements = self.elements(&partition, &mut reasons);
        self.range_reasons(&partition, &elements, &misaligned, &mut reasons);
        let members = self.class_members(&self.members, &partition, &elements, user_blocked, &mut reasons);
        let caches = self.class_members(&self.caches, &partition, &elements, &HashMap::new(), &mut reasons);
        let mut reads: Vec<Vec<ReadSlice>> = vec![Vec::new(); partition.class_members.len()];
        for (m, reader) in &self.reads {
            let per_class = self.class_members(std::slice::from_ref(m), &partition, &elements, &HashMap::new(), &mut reasons);
            for (c, found) in per_class.into_iter().enumerate() {
                for m in found.into_values() {
                    reads[c].push(ReadSlice { value: m.initializer, reader: reader.clone(), axis: m.axis, map: m.map });
                }
            }
        }
        let produced: Vec<bool> = members.iter().map(|m| m.values().any(|m| m.role == Role::Producer)).collect();
        let shapes = self.shape_edits(&partition, &elements, &produced, &mut reasons);
        let mut groups = groups(&partition, &elements, members, caches, reads, shapes, reasons, dims);
        // A class of constants only (a spread constant's space that joined no layer: the
        // rotary frequencies times the positions) is no structure of the model's.
        groups.retain(|g| g.members.iter().any(|m| m.role != Role::Aux) || !g.caches.is_empty() || !g.reads.is_empty());
        name_groups(&mut groups);
        groups
    }

    /// Phase 3 of [`Spaces::solve`]: the elements. Each interval needs whole blocks of
    /// the requirements (heads, conv and normalization groups) on it; a class's element
    /// count is the largest that every interval of the class divides into, and its kind
    /// the requirement its block meets exactly (heads first). A requirement whose blocks
    /// an interval splits is a reason against the class.
    fn elements(&self, partition: &Partition, reasons: &mut [BTreeSet<String>]) -> Elements {
        let (intervals, class_of) = (&partition.intervals, &partition.class_of);
        let covered = |r: &Range| partition.covered(r);
        let nc = partition.class_members.len();
        let mut need = vec![1usize; intervals.len()];
        let mut kind_of: Vec<Option<(ReqKind, usize)>> = vec![None; intervals.len()];
        for (r, k, rk) in &self.reqs {
            for i in covered(r) {
                let iv = intervals[i];
                if (iv.start - r.start) % k != 0 || iv.len % k != 0 {
                    reasons[class_of[i]].insert(format!("a {} of {k} positions is split by another use of these channels", req_name(*rk)));
                }
                need[i] = lcm(need[i], *k);
                if kind_of[i].is_none_or(|(kd, kk)| *k > kk || *k == kk && *rk == ReqKind::Head && kd != ReqKind::Head) {
                    kind_of[i] = Some((*rk, *k));
                }
            }
        }
        let mut count = vec![0usize; nc];
        for (i, iv) in intervals.iter().enumerate() {
            let c = class_of[i];
            if c == usize::MAX {
                continue;
            }
            let units = if iv.len % need[i] == 0 { iv.len / need[i] } else { 1 };
            count[c] = gcd(count[c], units);
        }
        let mut elements = Elements { count, kind: vec![None; nc] };
        // The element kind shown: a requirement met exactly by its interval's block, heads first.
        for (r, k, rk) in &self.reqs {
            for i in covered(r) {
                let c = class_of[i];
                let exact = elements.block(partition, i) == *k;
                let better = match elements.kind[c] {
                    None => true,
                    Some((kd, kk, b)) => {
                        let had_exact = b == kk;
                        (exact && !had_exact)
                            || (exact == had_exact && (*rk == ReqKind::Head && kd != ReqKind::Head || *rk == kd && *k > kk))
                    }
                };
                if better {
                    elements.kind[c] = Some((*rk, *k, elements.block(partition, i)));
                }
            }
        }
        elements
    }

    /// Phase 4 of [`Spaces::solve`]: the reasons the ranges themselves carry: ties whose
    /// blocks do not line up (`misaligned`, from phase 1), blocked ranges, and balanced
    /// parts (an equal split) that some class would cut unequally.
    fn range_reasons(&self, partition: &Partition, elements: &Elements, misaligned: &[(Range, Range)], reasons: &mut [BTreeSet<String>]) {
        let class_of = &partition.class_of;
        let covered = |r: &Range| partition.covered(r);
        for (a, b) in misaligned {
            for r in [a, b] {
                for i in covered(r) {
                    reasons[class_of[i]].insert("channels tied to differently sized blocks that do not line up".into());
                }
            }
        }
        for (r, why) in &self.blocks {
            for i in covered(r) {
                reasons[class_of[i]].insert(why.clone());
            }
        }
        for (why, parts) in &self.balanced {
            let mut loss: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (p, ranges) in parts.iter().enumerate() {
                for r in ranges {
                    for i in covered(r) {
                        loss.entry(class_of[i]).or_insert_with(|| vec![0; parts.len()])[p] += elements.block(partition, i);
                    }
                }
            }
            for (c, per_part) in loss {
                if per_part.iter().any(|&x| x != per_part[0]) {
                    reasons[c].insert(why.clone());
                }
            }
        }
    }

    /// Phase 5 of [`Spaces::solve`]: per class, the parameter slices (initializer, axis,
    /// offset) its elements remove, each as whole blocks per element, with the strongest
    /// role recorded for it. Slices that do not align with whole elements, an axis sliced
    /// two ways, and initializers the user marked unprunable are reasons against the class.
    fn class_members(
        &self,
        slices: &[RawMember],
        partition: &Partition,
        elements: &Elements,
        user_blocked: &HashMap<String, String>,
        reasons: &mut [BTreeSet<String>],
    ) -> Vec<ClassMembers> {
        let (intervals, class_of) = (&partition.intervals, &partition.class_of);
        let mut members: Vec<ClassMembers> = vec![BTreeMap::new(); partition.class_members.len()];
        for m in slices {
            for i in partition.covered(&m.range) {
                let c = class_of[i];
                let iv = intervals[i];
                let rel = (iv.start - m.range.start) * m.num;
                let blk = elements.block(partition, i) * m.num;
                if rel % m.den != 0 || !blk.is_multiple_of(m.den) {
                    reasons[c].insert(format!("slices of '{}' axis {} do not align with whole elements", m.init, m.axis));
                    continue;
                }
                let offset = m.offset + rel / m.den;
                let block = blk / m.den;
                let map = if m.outer.count > 1 {
                    // Every element's block, once per repetition of the layout.
                    let elements_here = iv.len / elements.block(partition, i).max(1);
                    let indices = (0..elements_here)
                        .map(|e| {
                            (0..m.outer.count)
                                .flat_map(|o| {
                                    let first = o * m.outer.period + offset + e * block;
                                    first..first + block
                                })
                                .collect()
                        })
                        .collect();
                    IndexMap::Indices { indices }
                } else {
                    IndexMap::Blocks { offset, block }
                };
                let key = (m.init.clone(), m.axis, offset);
                match members[c].get_mut(&key) {
                    Some(existing) => {
                        if role_rank(m.role) > role_rank(existing.role) {
                            existing.role = m.role;
                        }
                        if existing.map != map {
                            reasons[c].insert(format!("'{}' axis {} is sliced two different ways", m.init, m.axis));
                        }
                    }
                    None => {
                        members[c].insert(key, Member { initializer: m.init.clone(), axis: m.axis, role: m.role, map });
                    }
                }
                if let Some(why) = user_blocked.get(&m.init) {
                    reasons[c].insert(why.clone());
                }
            }
        }
        members
    }

    /// Phase 6 of [`Spaces::solve`]: per class, the integer entries of shape constants it
    /// edits (location, entry, reading node) and by how much per element. An entry that
    /// does not change by a whole number per element, one read for different edits, one
    /// that follows a measured axis by the wrong amount with no computed value to make up
    /// the difference, or one read through a node by several groups is a reason against
    /// the classes concerned.
    /// Only classes with producers (`produced`) are ever pruned: the others never edit.
    fn shape_edits(
        &self,
        partition: &Partition,
        elements: &Elements,
        produced: &[bool],
        reasons: &mut [BTreeSet<String>],
    ) -> Vec<ShapeEdits> {
        let mut shapes: Vec<ShapeEdits> = vec![BTreeMap::new(); partition.class_members.len()];
        // Classes edited through one node of shape arithmetic: its one output cannot
        // carry the edits of Reshapes of different groups.
        let mut through: BTreeMap<(ShapeLocation, usize, String), BTreeSet<usize>> = BTreeMap::new();
        for s in &self.shape_refs {
            let mut per_class = amounts(partition, elements, &s.parts, &|| s.label(), reasons);
            per_class.retain(|&c, _| produced.get(c).copied().unwrap_or(false));
            match &s.location {
                RefAt::Const(loc, indirect) => {
                    if *indirect {
                        through.entry((loc.clone(), s.entry, s.user.clone())).or_default().extend(per_class.keys());
                    }
                    for (c, (n, d)) in per_class {
                        if d != 1 {
                            reasons[c].insert(format!("{} does not change by a whole number per element", s.label()));
                        } else {
                            record(&mut shapes[c], &mut reasons[c], loc, s, n as i64);
                        }
                    }
                }
                RefAt::Fixed(why) => {
                    for c in per_class.into_keys() {
                        reasons[c].insert(format!("cannot locate the width constant of node '{}': {why}", s.user));
                    }
                }
                RefAt::Computed(measured, why, pin) => {
                    let mut got = amounts(partition, elements, measured, &|| s.label(), reasons);
                    got.retain(|&c, _| produced.get(c).copied().unwrap_or(false));
                    let classes: BTreeSet<usize> = per_class.keys().chain(got.keys()).copied().collect();
                    for c in classes {
                        match (pin, per_class.get(&c).copied().unwrap_or((0, 1))) {
                            (Some(loc), (n, 1)) => record(&mut shapes[c], &mut reasons[c], loc, s, n as i64),
                            (Some(_), _) => {
                                reasons[c].insert(format!("{} does not change by a whole number per element", s.label()));
                            }
                            (None, _) => {
                                reasons[c].insert(format!("entry {} of the shape read by node '{}' {why}", s.entry, s.user));
                            }
                        }
                    }
                }
                RefAt::Follows(measured, why, computed, pin) => {
                    // The entry changes by itself with the classes of the measured axis:
                    // fine where every class changes it exactly as much as it must
                    // change; otherwise construction makes up the difference in the
                    // computed value, or pins the entry to its value less the edits it
                    // must follow, or the class is unprunable.
                    let mut got = amounts(partition, elements, measured, &|| s.label(), reasons);
                    got.retain(|&c, _| produced.get(c).copied().unwrap_or(false));
                    let classes: BTreeSet<usize> = per_class.keys().chain(got.keys()).copied().collect();
                    let want = |c: usize| per_class.get(&c).copied().unwrap_or((0, 1));
                    // Per class, what construction subtracts from the computed value (`None`:
                    // not a whole number).
                    let made_up = |c: usize| -> Option<i64> {
                        let (want, have) = (want(c), got.get(&c).copied().unwrap_or((0, 1)));
                        let (num, den) = (frac_i64(want.0, have.1) - frac_i64(have.0, want.1), frac_i64(want.1, have.1));
                        (den != 0 && num % den == 0).then(|| num / den)
                    };
                    let differs = |c: &usize| want(*c) != got.get(c).copied().unwrap_or((0, 1));
                    let compensated = computed.is_some() && classes.iter().filter(|c| differs(c)).all(|&c| made_up(c).is_some());
                    match pin {
                        Some(loc) if !compensated && classes.iter().any(differs) => {
                            for &c in &classes {
                                match want(c) {
                                    (n, 1) => record(&mut shapes[c], &mut reasons[c], loc, s, n as i64),
                                    _ => {
                                        reasons[c].insert(format!("{} does not change by a whole number per element", s.label()));
                                    }
                                }
                            }
                        }
                        _ => {
                            for c in classes.into_iter().filter(|c| differs(c)) {
                                match (computed, made_up(c)) {
                                    (Some(loc), Some(n)) => record(&mut shapes[c], &mut reasons[c], loc, s, n),
                                    _ => {
                                        reasons[c].insert(format!("entry {} of the shape read by node '{}' {why}", s.entry, s.user));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for ((loc, entry, user), classes) in &through {
            if classes.len() > 1 {
                for &c in classes {
                    reasons[c].insert(format!("{loc} entry {entry} is read through node '{user}' by nodes of several groups"));
                }
            }
        }
        shapes
    }
}

/// The parameter slices of one class, by (initializer, axis, offset).
type ClassMembers = BTreeMap<(String, usize, usize), Member>;

/// Phase 3's result: what one element of each class is.
struct Elements {
    /// Per class, the number of elements.
    count: Vec<usize>,
    /// Per class, the element kind shown: (requirement, its block size, the block size of
    /// the interval that set it).
    kind: Vec<Option<(ReqKind, usize, usize)>>,
}

impl Elements {
    /// The positions of interval `i` that one element of its class covers.
    fn block(&self, partition: &Partition, i: usize) -> usize {
        partition.intervals[i].len / self.count[partition.class_of[i]].max(1)
    }
}

/// Per class, the amount per element (a fraction `(num, den)`) by which an entry counting
/// `parts` changes; classes whose blocks `label`'s entry cannot follow get a reason.
fn amounts(
    partition: &Partition,
    elements: &Elements,
    parts: &[Part],
    label: &dyn Fn() -> String,
    reasons: &mut [BTreeSet<String>],
) -> BTreeMap<usize, (usize, usize)> {
    let (intervals, class_of) = (&partition.intervals, &partition.class_of);
    let covered = |r: &Range| partition.covered(r);
    let block_of = |i: usize| elements.block(partition, i);
    let mut per_class: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let mut add_frac = |c: usize, n: usize, d: usize| {
        let e = per_class.entry(c).or_insert((0, 1));
        let (nn, nd) = (e.0 * d + n * e.1, e.1 * d);
        let g = gcd(nn, nd).max(1);
        *e = (nn / g, nd / g);
    };
    for part in parts {
        match part {
            Part::Fixed(r, num, den) => {
                for i in covered(r) {
                    add_frac(class_of[i], block_of(i) * num, *den);
                }
            }
            Part::Coarse(r, k, num) => {
                for i in covered(r) {
                    let b = block_of(i);
                    if b % k == 0 {
                        add_frac(class_of[i], b / k * num, 1);
                    } else {
                        add_frac(class_of[i], 0, 1);
                    }
                }
            }
            Part::Inner(ranges, k, num, whole) => {
                // Per class: positions each block loses per element; all equal.
                let mut loss: BTreeMap<usize, BTreeMap<(usize, usize, usize), usize>> = BTreeMap::new();
                let mut windows = 0usize;
                for r in ranges {
                    windows += r.len / k;
                    for i in covered(r) {
                        let (c, b, iv) = (class_of[i], block_of(i), intervals[i]);
                        if b % k == 0 {
                            continue;
                        }
                        if !whole {
                            reasons[c].insert(format!("{}: counts a window of blocks of {k} that an element cuts into", label()));
                            continue;
                        }
                        let w = (iv.start - r.start) / k;
                        if (iv.end() - 1 - r.start) / k != w {
                            reasons[c].insert(format!("{}: a block of {k} holds part of an element", label()));
                        }
                        *loss.entry(c).or_default().entry((r.base, r.start, w)).or_insert(0) += b;
                    }
                }
                for (c, per_window) in loss {
                    let first = per_window.values().next().copied().unwrap_or(0);
                    if per_window.len() != windows || per_window.values().any(|&x| x != first) {
                        reasons[c].insert(format!("{}: blocks of {k} would lose different numbers of channels", label()));
                        continue;
                    }
                    add_frac(c, first * num, 1);
                }
            }
        }
    }
    per_class.retain(|_, (n, _)| *n > 0);
    per_class
}

/// Records `amount` per element for entry `s.entry` of `loc` as read by `s.user`: one
/// amount per (location, entry, reading node) (several Reshapes reading one node of
/// shape arithmetic, the Mul of `batch * H`, need the same edit, once); a different
/// amount for the same reader is a reason in `why`.
fn record(at: &mut ShapeEdits, why: &mut BTreeSet<String>, loc: &ShapeLocation, s: &RawShapeRef, amount: i64) {
    let users = at.entry((loc.clone(), s.entry)).or_default();
    match users.get(&s.user) {
        Some(&had) if had != amount => {
            why.insert(format!("{loc} entry {} is read by node '{}' for edits of {had} and {amount}", s.entry, s.user));
        }
        _ => {
            users.insert(s.user.clone(), amount);
        }
    }
}

/// Phase 7 of [`Spaces::solve`]: one group per class that a parameter touches, with its
/// element kind and count, members, shape constants, parameter count and reasons
/// (unnamed: [`name_groups`] names them).
#[allow(clippy::too_many_arguments)]
fn groups(
    partition: &Partition,
    elements: &Elements,
    mut members: Vec<ClassMembers>,
    mut caches: Vec<ClassMembers>,
    mut reads: Vec<Vec<ReadSlice>>,
    shapes: Vec<ShapeEdits>,
    mut reasons: Vec<BTreeSet<String>>,
    dims: &InitDims,
) -> Vec<Group> {
    let (intervals, class_members) = (&partition.intervals, &partition.class_members);
    let (count, kind) = (&elements.count, &elements.kind);
    let nc = class_members.len();
    let mut groups: Vec<Group> = Vec::with_capacity(nc);
    for c in 0..nc {
        let members: Vec<Member> = std::mem::take(&mut members[c]).into_values().collect();
        let caches: Vec<CacheSlice> =
            std::mem::take(&mut caches[c]).into_values().map(|m| CacheSlice { value: m.initializer, axis: m.axis, map: m.map }).collect();
        if members.is_empty() {
            continue; // a space no parameter touches: nothing to prune
        }
        let n = count[c];
        let mut reasons: Vec<String> = std::mem::take(&mut reasons[c]).into_iter().collect();
        if !members.iter().any(|m| m.role == Role::Producer) {
            reasons.push("no parameter produces these channels".into());
        }
        let block = roots_block(&class_members[c], intervals, n);
        let kind = match kind[c] {
            None if block == 1 => ElementKind::Channel,
            None => ElementKind::Block { size: block },
            Some((ReqKind::Head, k, b)) if k == b => ElementKind::Head { dim: k },
            Some((ReqKind::ConvGroup, k, b)) if k == b => ElementKind::ConvGroup { channels: k },
            Some((ReqKind::NormGroup, k, b)) if k == b => ElementKind::NormGroup { channels: k },
            Some((_, _, b)) => ElementKind::Block { size: b },
        };
        let params = members
            .iter()
            .map(|m| {
                let d = dims.get(&m.initializer).cloned().unwrap_or_default();
                let numel = crate::analyze::numel(&d);
                let along = d.get(m.axis).copied().unwrap_or(1).max(1) as u64;
                (numel / along).saturating_mul(m.map.block() as u64).saturating_mul(n as u64)
            })
            .fold(0u64, u64::saturating_add);
        let mut shape_constants = Vec::new();
        for ((location, entry), users) in &shapes[c] {
            let amounts: BTreeSet<i64> = users.values().copied().collect();
            if amounts.len() > 1 {
                reasons.push(format!("{location} entry {entry} is read by several nodes that would need different values"));
            }
            let per_element = amounts.iter().next().copied().unwrap_or(0);
            let nodes = users.keys().cloned().collect();
            shape_constants.push(ShapeConstant { location: location.clone(), entry: *entry, per_element, nodes });
        }
        groups.push(Group {
            id: String::new(),
            kind,
            num_elements: n,
            prunable: reasons.is_empty(),
            reasons,
            members,
            shape_constants,
            caches,
            reads: std::mem::take(&mut reads[c]),
            params,
        });
    }
    groups
}

/// The block size of a class's first interval (the kind of element, for display).
fn roots_block(members: &[usize], intervals: &[Range], n: usize) -> usize {
    members.first().map_or(1, |&i| intervals[i].len / n.max(1))
}

fn req_name(k: ReqKind) -> &'static str {
    match k {
        ReqKind::Split => "block",
        ReqKind::Head => "head",
        ReqKind::ConvGroup => "conv group",
        ReqKind::NormGroup => "normalization group",
    }
}

fn role_rank(r: Role) -> u8 {
    match r {
        Role::Producer => 2,
        Role::Consumer => 1,
        Role::Aux => 0,
    }
}

/// Names every group after its first producer slice in sorted order
/// (`initializer:axis`, plus `@offset` when the slice does not start at 0).
fn name_groups(groups: &mut [Group]) {
    for g in groups.iter_mut() {
        let pick = g
            .members
            .iter()
            .filter(|m| m.role == Role::Producer)
            .min_by(|a, b| (&a.initializer, a.axis, a.map.offset()).cmp(&(&b.initializer, b.axis, b.map.offset())))
            .or_else(|| g.members.iter().min_by(|a, b| (&a.initializer, a.axis).cmp(&(&b.initializer, b.axis))));
        g.id = match pick {
            Some(m) if m.map.offset() == 0 => format!("{}:{}", m.initializer, m.axis),
            Some(m) => format!("{}:{}@{}", m.initializer, m.axis, m.map.offset()),
            None => "unnamed".into(),
        };
    }
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for g in groups.iter_mut() {
        let k = seen.entry(g.id.clone()).or_insert(0);
        *k += 1;
        if *k > 1 {
            g.id = format!("{}#{}", g.id, k);
        }
    }
}

//! The description the analysis produces: pruning groups with their parameter slices
//! and shape constants. This is the contract with the optimizer (which slices to
//! score, decay and zero: the producer slices) and with construction (what to cut:
//! every member's slices and the shape constants).

use crate::AnalysisError;
use oto_onnx::op::{Op, Reduce, ReduceKind};
use oto_onnx::{DType, Graph, Model};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// The result of [`crate::analyze`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    /// The model file (or in-memory name) analyzed.
    pub model: String,
    /// Every group, prunable or not, sorted by id.
    pub groups: Vec<Group>,
    /// Operators that made the spaces they touch unprunable, with the reason.
    pub blocked: Vec<BlockedOp>,
    /// The model's parameters, as `oto inspect` and the reports count them
    /// ([`oto_onnx::cost::parameter_count`]: not BatchNorm statistics or one-element literals).
    pub total_params: u64,
    /// Those parameters that belong to a slice of a prunable group (each element counted once).
    pub prunable_params: u64,
    /// Parameter tensors in no group, prunable or not, largest first: no channel the
    /// analysis follows reaches them (a table read through an operator it does not follow,
    /// a weight inside an `If` branch), so they are kept whole and no reason names them.
    #[serde(default)]
    pub ungrouped: Vec<UngroupedWeight>,
}

/// A parameter tensor in no group (see [`Analysis::ungrouped`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UngroupedWeight {
    /// The initializer.
    pub initializer: String,
    /// Its parameters.
    pub params: u64,
}

/// What one element of a group is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ElementKind {
    /// One channel (or FFN neuron).
    Channel,
    /// A block of `size` consecutive channels.
    Block {
        /// Channels per element.
        size: usize,
    },
    /// One attention head of `dim` channels.
    Head {
        /// Head dimension.
        dim: usize,
    },
    /// One group of a GroupNormalization (`channels` channels).
    NormGroup {
        /// Channels per normalization group.
        channels: usize,
    },
    /// One group of a grouped convolution (`channels` input = output channels).
    ConvGroup {
        /// Channels per convolution group.
        channels: usize,
    },
}

impl fmt::Display for ElementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementKind::Channel => write!(f, "channel"),
            ElementKind::Block { size } => write!(f, "block of {size}"),
            ElementKind::Head { dim } => write!(f, "head of dim {dim}"),
            ElementKind::NormGroup { channels } => write!(f, "norm group of {channels}"),
            ElementKind::ConvGroup { channels } => write!(f, "conv group of {channels}"),
        }
    }
}

/// A set of parameter slices removable together, element by element.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// Stable identity: `initializer:axis[@offset]` of its first producer slice in name order.
    pub id: String,
    /// What an element is.
    pub kind: ElementKind,
    /// Number of elements.
    pub num_elements: usize,
    /// Whether zero-invariance holds (see the spec); if not, `reasons` says why.
    pub prunable: bool,
    /// Why the group is not prunable (empty when it is).
    pub reasons: Vec<String>,
    /// The parameter slices, one per (initializer, axis, offset); sorted.
    pub members: Vec<Member>,
    /// Integer constants to decrease when elements are removed.
    pub shape_constants: Vec<ShapeConstant>,
    /// Key/value caches (graph outputs) that keep their full width: construction writes
    /// zeros in the removed positions and gives the model's other readers the kept ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<CacheSlice>,
    /// Values the elements do not change, read by a node together with values they do:
    /// construction gives that node their kept positions only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<ReadSlice>,
    /// Parameter elements covered by the members' slices (overlaps counted twice).
    pub params: u64,
}

impl Group {
    /// The layer norms' scales and biases that the compact model keeps at their original
    /// width, zeros appended ([`ShapeLocation::NormWidth`]'s `padded`): members of the
    /// group, zeroed with it, but not made smaller by removing its elements.
    pub fn padded_parameters(&self) -> impl Iterator<Item = &str> {
        self.shape_constants
            .iter()
            .flat_map(|c| match &c.location {
                ShapeLocation::NormWidth { padded, .. } => padded.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
    }
}

/// How a member slice takes part in the group.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Creates the element's values, or reads values that are not zero where the element's
    /// producers are (after a function with `f(0) != 0`): scored, decayed and zeroed by the
    /// optimizer, cut by construction.
    Producer,
    /// Reads the element: cut by construction; irrelevant once the producers are zero.
    Consumer,
    /// Cut but neither scored nor zeroed (BatchNorm running statistics, a Mul scale).
    Aux,
}

/// Which indices of a member's axis belong to element `i`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IndexMap {
    /// Element `i` is `[offset + i*block, offset + (i+1)*block)`.
    Blocks {
        /// First index of element 0.
        offset: usize,
        /// Indices per element.
        block: usize,
    },
    /// Element `i` is `indices[i]` (permuted layouts).
    Indices {
        /// Indices per element.
        indices: Vec<Vec<usize>>,
    },
}

impl IndexMap {
    /// The indices of element `i` along the member's axis.
    pub fn indices(&self, i: usize) -> Vec<usize> {
        match self {
            IndexMap::Blocks { offset, block } => (offset + i * block..offset + (i + 1) * block).collect(),
            IndexMap::Indices { indices } => indices.get(i).cloned().unwrap_or_default(),
        }
    }

    /// Indices per element.
    pub fn block(&self) -> usize {
        match self {
            IndexMap::Blocks { block, .. } => *block,
            IndexMap::Indices { indices } => indices.first().map_or(0, Vec::len),
        }
    }

    /// The first index of element 0.
    pub fn offset(&self) -> usize {
        match self {
            IndexMap::Blocks { offset, .. } => *offset,
            IndexMap::Indices { indices } => indices.first().and_then(|v| v.first()).copied().unwrap_or(0),
        }
    }
}

/// One parameter slice of a group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Initializer name.
    pub initializer: String,
    /// The sliced axis.
    pub axis: usize,
    /// Role in the group.
    pub role: Role,
    /// Element -> indices along `axis`.
    pub map: IndexMap,
}

/// A key/value cache of a group: a graph output that a `Concat` makes of a graph input
/// (the past) and this step's values, along another axis than `axis`, or a present
/// without a past (the heads' keys or values returned as they are). The compact model
/// keeps the cache's interface: along `axis` it still has every position, the removed
/// ones zero (what the zeroed full model writes there), so it reads and writes the
/// caches the original does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheSlice {
    /// The cache: a graph output (the Concat's output where there is a past).
    pub value: String,
    /// The axis of the group's elements.
    pub axis: usize,
    /// Element -> positions along `axis`.
    pub map: IndexMap,
}

/// A value that does not follow a group's elements, read by one node together with
/// values that do: a graph input (a decoder's cross-attention cache: the encoder's keys
/// and values) or a value computed without the elements (T5's position bias, computed
/// once and added to every layer's scores). The compact model gives that node the
/// value's kept positions along `axis` (a `Gather`); the value stays whole for its other
/// readers. The removed positions are not zero, so neither is what the node computes
/// there: the analysis has made sure that nothing reads that unzeroed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadSlice {
    /// The value read.
    pub value: String,
    /// The reading node, by the first value it writes.
    pub reader: String,
    /// The value's axis of the group's elements.
    pub axis: usize,
    /// Element -> positions along `axis`.
    pub map: IndexMap,
}

/// Where a width-encoding integer lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShapeLocation {
    /// An integer initializer (entry = flat index).
    Initializer {
        /// Initializer name.
        name: String,
    },
    /// The tensor attribute `value` of a `Constant` node (entry = flat index).
    ConstantNode {
        /// Node name.
        node: String,
    },
    /// A 1-D int64 value computed at run time (a Reshape target built from `Shape`s of
    /// other values): construction subtracts the edits from it in front of the nodes
    /// that read it on the group's behalf.
    Computed {
        /// Value name.
        value: String,
        /// Number of entries.
        len: usize,
    },
    /// An integer attribute of a node (entry 0), such as Conv's `group`.
    Attribute {
        /// Node name.
        node: String,
        /// Attribute name.
        attribute: String,
    },
    /// The number of entries a `ReduceMean` (or `RMSNormalization`'s mean of squares)
    /// averages over (entry 0), `count` in the model as analysed: a mean of entries that
    /// are zero when their elements are pruned (the mean of squares of an RMSNorm) is
    /// invariant only if it keeps dividing by the original count, so construction scales
    /// the compact mean by `remaining / count` (RMSNormalization: its epsilon by
    /// `count / remaining` and its output by `sqrt(count / remaining)`).
    MeanDivisor {
        /// The ReduceMean's (RMSNormalization's) output value.
        value: String,
        /// The original number of entries averaged.
        count: u64,
    },
    /// Entry `entry` of a computed int64 value of `len` entries (a scalar: one entry,
    /// `scalar`) that is `original` in the model as analysed, computed from the size of an
    /// axis that pruning changes while the entry must not follow it (a head size `E / H`
    /// read off the width `E` of the layer's input, or a scale computed from it):
    /// construction replaces the entry by `original` minus the edits, so it no longer
    /// follows that axis.
    Pinned {
        /// The computed value.
        value: String,
        /// Its number of entries.
        len: usize,
        /// Whether it is a scalar (rank 0) rather than a vector.
        scalar: bool,
        /// The pinned entry.
        entry: usize,
        /// Its value in the model as analysed.
        original: i64,
    },
    /// The width along `axis` of the input of a layer normalization (a
    /// `LayerNormalization`, an `InstanceNormalization` over a spatial axis as tf2onnx
    /// writes one, or one written out: [`oto_onnx::op::WrittenLayerNorm`]) whose
    /// result is `value` (entry 0), `size` in the model as analysed: the layer's statistics
    /// are those of the full width only while the pruned channels are there as zeros, so
    /// construction pads the compact input with zeros back to `size` and keeps the first
    /// positions of the result.
    NormWidth {
        /// The normalized value.
        value: String,
        /// The padded axis of the input.
        axis: usize,
        /// The original size of that axis.
        size: u64,
        /// The layer's scale and bias along that axis (a `LayerNormalization`'s, or inside
        /// a written-out one): cut with the width in the sparse model, but kept at the
        /// original width in the compact one (zeros appended), so removing channels does
        /// not make them smaller. Empty where they follow the normalization (cut).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        padded: Vec<String>,
    },
}

impl fmt::Display for ShapeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeLocation::Initializer { name } => write!(f, "initializer '{name}'"),
            ShapeLocation::ConstantNode { node } => write!(f, "Constant node '{node}'"),
            ShapeLocation::Computed { value, .. } => write!(f, "computed value '{value}'"),
            ShapeLocation::Attribute { node, attribute } => {
                write!(f, "attribute '{attribute}' of node '{node}'")
            }
            ShapeLocation::MeanDivisor { value, count } => write!(f, "the divisor {count} of the mean '{value}'"),
            ShapeLocation::NormWidth { value, axis, size, .. } => {
                write!(f, "the width {size} of axis {axis} normalized into '{value}'")
            }
            ShapeLocation::Pinned { value, entry, original, .. } => {
                write!(f, "entry {entry} (= {original}) of the computed value '{value}'")
            }
        }
    }
}

/// An integer to decrease by `per_element` for every removed element of the group.
///
/// A constant can be shared by nodes of several groups (one Reshape target used by
/// every layer): `nodes` lists the nodes whose reading of it follows this group, so
/// construction gives them their own copy when other nodes read it too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShapeConstant {
    /// Where the integer is.
    pub location: ShapeLocation,
    /// Flat index of the entry (0 for an attribute).
    pub entry: usize,
    /// Amount per removed element.
    pub per_element: i64,
    /// Names of the nodes reading the entry on this group's behalf.
    pub nodes: Vec<String>,
}

/// An operator that blocks the spaces it touches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockedOp {
    /// Node name (or a description of the node when unnamed).
    pub node: String,
    /// Operator type (with its domain when not the default one).
    pub op_type: String,
    /// Why.
    pub reason: String,
}

impl Analysis {
    /// The prunable groups.
    pub fn prunable_groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().filter(|g| g.prunable)
    }

    /// The group with this id.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// Share of parameters in prunable groups (0 to 1).
    pub fn prunable_share(&self) -> f64 {
        if self.total_params == 0 {
            0.0
        } else {
            self.prunable_params as f64 / self.total_params as f64
        }
    }

    /// A readable table: one line per group (id, element kind and count, parameters,
    /// prunable or the reason), then the share of prunable parameters and the blocked operators.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let idw = self.groups.iter().map(|g| g.id.len()).max().unwrap_or(5).clamp(5, 60);
        out.push_str(&format!("{:<idw$}  {:>6}  {:<22}  {:>10}  status\n", "group", "elems", "element", "params"));
        for g in &self.groups {
            let status = if g.prunable {
                "prunable".to_string()
            } else {
                // The table stays readable: the first reason, and how many more the JSON holds.
                match g.reasons.split_first() {
                    Some((first, [])) => format!("unprunable: {first}"),
                    Some((first, rest)) => format!("unprunable: {first} (+{} more reasons in --json)", rest.len()),
                    None => "unprunable".to_string(),
                }
            };
            out.push_str(&format!("{:<idw$}  {:>6}  {:<22}  {:>10}  {}\n", g.id, g.num_elements, g.kind.to_string(), g.params, status));
        }
        let np = self.groups.iter().filter(|g| g.prunable).count();
        out.push_str(&format!(
            "\n{} groups, {} prunable; prunable parameters {} of {} ({:.1}%)\n",
            self.groups.len(),
            np,
            self.prunable_params,
            self.total_params,
            100.0 * self.prunable_share()
        ));
        if !self.ungrouped.is_empty() {
            let params: u64 = self.ungrouped.iter().map(|u| u.params).sum();
            let shown: Vec<String> = self.ungrouped.iter().take(3).map(|u| format!("{} ({})", u.initializer, u.params)).collect();
            let more = match self.ungrouped.len().saturating_sub(shown.len()) {
                0 => String::new(),
                n => format!(" (+{n} more in --json)"),
            };
            let tensors = match self.ungrouped.len() {
                1 => "1 tensor".to_string(),
                n => format!("{n} tensors"),
            };
            out.push_str(&format!(
                "parameters in no group: {params} in {tensors}, which no channel the analysis follows reaches: {}{more}\n",
                shown.join(", ")
            ));
        }
        if !self.blocked.is_empty() {
            out.push_str("blocked operators:\n");
            for b in &self.blocked {
                out.push_str(&format!("  {} ({}): {}\n", b.node, b.op_type, b.reason));
            }
        }
        out
    }
}

impl Analysis {
    /// Reads an analysis saved as JSON (`oto analyze --json`) and checks it against
    /// `model` ([`Analysis::check`]): a saved file is user input, and everything that
    /// uses an analysis (the optimizer, construction) indexes tensors with it.
    pub fn load(path: &Path, model: &Model) -> Result<Analysis, AnalysisError> {
        let saved = |message: String| AnalysisError::Saved { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| saved(format!("cannot read: {e}")))?;
        let analysis: Analysis =
            serde_json::from_str(&text).map_err(|e| saved(format!("not a group description from `oto analyze --json`: {e}")))?;
        analysis.check(model).map_err(|e| saved(format!("does not fit {}: {e}", model.path().display())))?;
        Ok(analysis)
    }

    /// Checks that every group fits `model`: ids are distinct; a group has at least one
    /// element and one member; every member names an initializer, an axis inside its
    /// rank, and indices inside that axis for each element (so element counts are
    /// bounded by the dimensions); every shape constant names an existing integer entry,
    /// node or attribute; every node a constant lists exists. The error names the group
    /// and the offending value.
    pub fn check(&self, model: &Model) -> Result<(), AnalysisError> {
        let graph = Graph::new(model)?;
        let node_names: HashSet<&str> = graph.nodes().filter_map(|(_, n)| n.name.as_deref()).collect();
        let mut ids = HashSet::new();
        let mut shapes = None;
        for g in &self.groups {
            let bad = |message: String| AnalysisError::Mismatch { group: g.id.clone(), message };
            if !ids.insert(g.id.as_str()) {
                return Err(bad("the id appears twice".into()));
            }
            if g.num_elements == 0 {
                return Err(bad("num_elements = 0: a group has at least one element".into()));
            }
            if g.members.is_empty() {
                return Err(bad("the group has no members".into()));
            }
            let size = match g.kind {
                ElementKind::Channel => 1,
                ElementKind::Block { size } => size,
                ElementKind::Head { dim } => dim,
                ElementKind::NormGroup { channels } | ElementKind::ConvGroup { channels } => channels,
            };
            if size == 0 {
                return Err(bad(format!("element kind '{}' has no channels", g.kind)));
            }
            for m in &g.members {
                check_member(&graph, g, m).map_err(bad)?;
            }
            for c in &g.caches {
                if !graph.reaches_result(&c.value) || graph.producer_node(&c.value).is_none() {
                    return Err(bad(format!("cache '{}' is not a graph output (or a branch's, or Cast to one) made by a node", c.value)));
                }
            }
            for r in &g.reads {
                if graph.initializer(&r.value).is_some() || graph.producer(&r.value).is_none() {
                    return Err(bad(format!("read of '{}': not a value a node or the graph's input gives", r.value)));
                }
                let reads = graph.producer_node(&r.reader).is_some_and(|(_, n)| n.input.contains(&r.value));
                if !reads {
                    return Err(bad(format!("read of '{}': no node writing '{}' reads it", r.value, r.reader)));
                }
            }
            for sc in &g.shape_constants {
                check_constant(&graph, sc, &mut shapes).map_err(bad)?;
                if let Some(n) = sc.nodes.iter().find(|n| !node_names.contains(n.as_str())) {
                    return Err(bad(format!("shape constant in {}: node '{n}' is not in the model", sc.location)));
                }
            }
        }
        Ok(())
    }
}

/// A member's initializer exists, its axis is inside the rank and every element's
/// indices are inside the axis.
fn check_member(graph: &Graph<'_>, g: &Group, m: &Member) -> Result<(), String> {
    let name = &m.initializer;
    let t = graph.initializer(name).ok_or_else(|| format!("member '{name}' is not an initializer of the model"))?;
    let dim = *t.dims.get(m.axis).ok_or_else(|| format!("member '{name}': axis {} is beyond its rank {}", m.axis, t.dims.len()))?;
    let len = usize::try_from(dim).map_err(|_| format!("member '{name}': axis {} has size {dim}", m.axis))?;
    let n = g.num_elements;
    match &m.map {
        IndexMap::Blocks { offset, block } => {
            if *block == 0 {
                return Err(format!("member '{name}': block = 0 (indices per element must be at least 1)"));
            }
            let end = block.checked_mul(n).and_then(|k| k.checked_add(*offset));
            if end.is_none_or(|end| end > len) {
                return Err(format!(
                    "member '{name}': {n} elements of {block} indices from offset {offset} do not fit in axis {} of size {len}",
                    m.axis
                ));
            }
        }
        IndexMap::Indices { indices } => {
            if indices.len() != n {
                return Err(format!("member '{name}' lists indices for {} elements, but num_elements = {n}", indices.len()));
            }
            let block = indices.first().map_or(0, Vec::len);
            for (e, idx) in indices.iter().enumerate() {
                if idx.is_empty() || idx.len() != block {
                    return Err(format!("member '{name}': element {e} has {} indices, element 0 has {block}", idx.len()));
                }
                if let Some(i) = idx.iter().find(|&&i| i >= len) {
                    return Err(format!("member '{name}': element {e} has index {i}, beyond axis {} of size {len}", m.axis));
                }
            }
        }
    }
    Ok(())
}

/// A shape constant's location exists and holds an integer entry at `entry`.
/// `shapes` caches the model's shape inference (computed locations need it).
fn check_constant(
    graph: &Graph<'_>,
    sc: &ShapeConstant,
    shapes: &mut Option<Result<oto_onnx::shape::Shapes, String>>,
) -> Result<(), String> {
    let entries = match &sc.location {
        ShapeLocation::Initializer { name } => {
            let t = graph.initializer(name).ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            let dtype = t.data_type.and_then(DType::from_onnx);
            if !matches!(dtype, Some(DType::I64 | DType::I32)) {
                return Err(format!("shape constant in {} is not an int32/int64 tensor", sc.location));
            }
            t.dims.iter().try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        }
        ShapeLocation::ConstantNode { node } => {
            let found =
                graph.nodes().find(|(_, n)| n.name.as_deref() == Some(node.as_str()) && matches!(Op::parse(graph, n), Ok(Op::Constant)));
            let (_, n) = found.ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            let value = n.output.first().ok_or_else(|| format!("{} has no output", sc.location))?;
            let t = graph.constant(value).map_err(|e| e.to_string())?;
            t.filter(|t| matches!(t.data, oto_onnx::TensorData::I64(_) | oto_onnx::TensorData::I32(_)))
                .map(|t| t.shape.iter().product::<usize>() as u64)
                .ok_or_else(|| format!("shape constant in {} is not an int32/int64 tensor", sc.location))
                .map(Some)?
        }
        ShapeLocation::Computed { value, len } => {
            graph.producer(value).ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            // Construction allocates `len` entries: it must be the value's length.
            let shapes = shapes.get_or_insert_with(|| oto_onnx::shape::infer(graph).map_err(|e| e.to_string()));
            let known = shapes.as_ref().map_err(Clone::clone)?.shape(value).and_then(|s| match s {
                [d] => d.known(),
                _ => None,
            });
            if known != i64::try_from(*len).ok() {
                return Err(format!("shape constant in {}: {len} entries, but the value is not a vector of {len} integers", sc.location));
            }
            Some(*len as u64)
        }
        ShapeLocation::Attribute { node, attribute } => {
            let found = graph.nodes().find(|(_, n)| n.name.as_deref() == Some(node.as_str()));
            let (_, n) = found.ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            let a = n
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some(attribute.as_str()))
                .ok_or_else(|| format!("shape constant in {}, which the node does not have", sc.location))?;
            Some(if a.ints.is_empty() { 1 } else { a.ints.len() as u64 })
        }
        ShapeLocation::MeanDivisor { value, count } => {
            let (_, n) =
                graph.producer_node(value).ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            let op = Op::parse(graph, n).map_err(|e| e.to_string())?;
            if !matches!(op, Op::Reduce(Reduce { kind: ReduceKind::Mean, .. }) | Op::RmsNormalization(_)) || *count == 0 {
                return Err(format!("shape constant in {}: the value is not the output of a ReduceMean or RMSNormalization", sc.location));
            }
            // The count must be the number of entries the node averages in this model.
            let shapes = shapes.get_or_insert_with(|| oto_onnx::shape::infer(graph).map_err(|e| e.to_string()));
            let shapes = shapes.as_ref().map_err(Clone::clone)?;
            let dims: Vec<Option<i64>> =
                n.input.first().and_then(|x| shapes.shape(x)).map(|d| d.iter().map(oto_onnx::Dim::known).collect()).unwrap_or_default();
            let rank = dims.len() as i64;
            let axes: Vec<i64> = match op {
                Op::Reduce(red) => match red.axes.resolve(graph, n, Some(shapes), "axes").map_err(|e| e.to_string())? {
                    Some(a) if !a.is_empty() => a.iter().map(|&x| if x < 0 { x + rank } else { x }).collect(),
                    _ => (0..rank).collect(),
                },
                Op::RmsNormalization(l) => (if l.axis < 0 { l.axis + rank } else { l.axis }..rank).collect(),
                _ => Vec::new(), // refused above
            };
            let averaged = axes.iter().try_fold(1u64, |acc, &a| {
                let d = usize::try_from(a).ok().and_then(|a| dims.get(a).copied().flatten()).and_then(|d| u64::try_from(d).ok())?;
                acc.checked_mul(d)
            });
            if averaged != Some(*count) {
                return Err(format!(
                    "shape constant in {}: the node averages {} entries",
                    sc.location,
                    averaged.map_or("an unknown number of".into(), |c| c.to_string())
                ));
            }
            Some(1)
        }
        ShapeLocation::Pinned { value, len, entry, original, .. } => {
            graph.producer(value).ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            let shapes = shapes.get_or_insert_with(|| oto_onnx::shape::infer(graph).map_err(|e| e.to_string()));
            let known =
                shapes.as_ref().map_err(Clone::clone)?.shape_value(value).map(|v| v.iter().map(oto_onnx::Dim::known).collect::<Vec<_>>());
            let fits = known.as_ref().is_some_and(|v| v.len() == *len && v.get(*entry).copied().flatten() == Some(*original));
            if !fits || sc.entry != *entry {
                return Err(format!("shape constant in {}: the value does not have {len} entries with that one", sc.location));
            }
            Some(*len as u64)
        }
        ShapeLocation::NormWidth { value, axis, size, .. } => {
            let (_, n) =
                graph.producer_node(value).ok_or_else(|| format!("shape constant in {}, which the model does not have", sc.location))?;
            let shapes = shapes.get_or_insert_with(|| oto_onnx::shape::infer(graph).map_err(|e| e.to_string()));
            let shapes = shapes.as_ref().map_err(Clone::clone)?;
            // The normalized input, and whether the layer normalizes `axis`: from its
            // first normalized axis on (the operator), or the reduced axes (written out).
            let op = Op::parse(graph, n).ok();
            let (x, axes) = match &op {
                Some(Op::LayerNormalization(l)) => (n.input.first().cloned().unwrap_or_default(), vec![l.axis]),
                // Over the spatial axes, from 2 on.
                Some(Op::InstanceNormalization) => (n.input.first().cloned().unwrap_or_default(), vec![2]),
                _ => match oto_onnx::op::WrittenLayerNorm::ending_at(graph, Some(shapes), value) {
                    Some(w) => (w.x, w.axes),
                    None => return Err(format!("shape constant in {}: the value is not the result of a layer normalization", sc.location)),
                },
            };
            let dims = shapes.shape(&x).unwrap_or_default();
            let rank = i64::try_from(dims.len()).unwrap_or(i64::MAX);
            let at = |a: i64| if a < 0 { a.checked_add(rank) } else { Some(a) }.and_then(|a| usize::try_from(a).ok());
            let normalized = match &op {
                Some(Op::LayerNormalization(_) | Op::InstanceNormalization) => {
                    axes.first().and_then(|&a| at(a)).is_some_and(|first| *axis >= first)
                }
                _ => axes.iter().any(|&a| at(a) == Some(*axis)),
            };
            let known = dims.get(*axis).and_then(oto_onnx::Dim::known).and_then(|d| u64::try_from(d).ok());
            if !normalized || known != Some(*size) {
                return Err(format!("shape constant in {}: not a normalized axis of that size", sc.location));
            }
            Some(1)
        }
    };
    if entries.is_none_or(|n| sc.entry as u64 >= n) {
        return Err(format!("shape constant in {}: entry {} does not exist", sc.location, sc.entry));
    }
    Ok(())
}

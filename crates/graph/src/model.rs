//! The description the analysis produces: pruning groups with their parameter slices
//! and shape constants. This is the contract with the optimizer (which slices to
//! score, decay and zero: the producer slices) and with construction (what to cut:
//! every member's slices and the shape constants).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The result of [`crate::analyze`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    /// The model file (or in-memory name) analyzed.
    pub model: String,
    /// Every group, prunable or not, sorted by id.
    pub groups: Vec<Group>,
    /// Operators that made the spaces they touch unprunable, with the reason.
    pub blocked: Vec<BlockedOp>,
    /// Elements of all floating-point initializers.
    pub total_params: u64,
    /// Elements of floating-point initializers that belong to a slice of a prunable group
    /// (each element counted once).
    pub prunable_params: u64,
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
    /// Parameter elements covered by the members' slices (overlaps counted twice).
    pub params: u64,
}

/// How a member slice takes part in the group.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Creates the element's values: scored, decayed and zeroed by the optimizer, cut by construction.
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
        if !self.blocked.is_empty() {
            out.push_str("blocked operators:\n");
            for b in &self.blocked {
                out.push_str(&format!("  {} ({}): {}\n", b.node, b.op_type, b.reason));
            }
        }
        out
    }
}

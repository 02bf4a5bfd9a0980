//! Pruning-group analysis of ONNX graphs (no libtorch): follows channel axes through
//! the graph with one rule per operator, unions the channel spaces, and describes the
//! resulting pruning groups — producer and consumer parameter slices, shape constants
//! to rewrite, and why a group is not prunable.
//!
//! The contract is `shared/spec/groups.md`: if every producer slice of an element is
//! zero, the outputs do not depend on its consumer slices, and removing the element
//! (slices cut, shape constants rewritten) computes the same outputs.
//!
//! ```no_run
//! let (model, _) = oto_onnx::normalize::load("model.onnx")?; // what every command reads
//! let analysis = oto_graph::analyze(&model, &oto_graph::AnalyzeOptions::default())?;
//! print!("{}", analysis.table());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How it works: every operator that creates channels (Conv, ConvTranspose, Gemm,
//! MatMul with a weight, Gather on an embedding) opens a *space*; the rules in
//! [`rules`](crate) carry each value's axes (as factors, so that `[B, S, H*D]` reshaped
//! to `[B, S, H, D]` keeps track of heads) and record ties, parameter slices, blocks
//! and width constants; a solver then cuts and unions the spaces into groups. Each
//! axis also carries whether it is *zero* on an element whose producers are zero; a
//! parameter slice reading a non-zero element (after a function with `f(0) != 0`) is
//! zeroed with it, a producer, so that the element contributes nothing; a non-zero
//! element reaching a graph output, or an operator that mixes along the axis, makes its
//! group unprunable, with the reason.
//!
//! # Using the description
//!
//! * The optimizer scores, decays and zeroes, per element `i` of a prunable [`Group`],
//!   the [`Role::Producer`] members' slices: along `member.axis`, the indices
//!   `member.map.indices(i)`. [`Role::Consumer`] and [`Role::Aux`] slices are neither
//!   scored nor zeroed.
//! * Construction removes, for every removed element, the indices of every member
//!   (all roles) along their axes, and decreases every [`ShapeConstant`] entry by
//!   `per_element`. A constant whose `nodes` do not cover all of its readers is shared
//!   with other groups: give those nodes their own copy first.
//! * A group's [`Group::id`] is `initializer:axis[@offset]` of its first producer slice
//!   in name order: stable across runs, independent of node order.
//! * Unprunable groups carry their reasons; operators that blocked spaces are listed in
//!   [`Analysis::blocked`]. [`AnalyzeOptions::unprunable`] blocks the groups of the named
//!   initializers or nodes.
#![warn(missing_docs)]

mod analyze;
mod dot;
mod model;
mod rules;
mod space;

pub use analyze::{analyze, AnalysisError, AnalyzeOptions};
pub use model::{
    Analysis, BlockedOp, CacheSlice, ElementKind, Group, IndexMap, Member, ReadSlice, Role, ShapeConstant, ShapeLocation, UngroupedWeight,
};

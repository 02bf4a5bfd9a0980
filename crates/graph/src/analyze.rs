//! The traversal: shapes, per-value axis tracks, and the helpers the operator rules
//! use to record ties, members, blocks and shape constants. The rules themselves are in
//! [`crate::rules`], one per operator.

use crate::model::{Analysis, BlockedOp, Role, ShapeLocation, UngroupedWeight};
use crate::space::{AxisT, Factor, InitDims, LinSeg, Outer, Part, Range, RefAt, ReqKind, Scale, Seg, Spaces, Track, ValueT};
use oto_onnx::graph::{node_label, Graph, NodeExt, Producer};
use oto_onnx::op::{Binary, Op, Reduce, ReduceKind, Unary};
use oto_onnx::proto::NodeProto;
use oto_onnx::{ops, Dim, Model, OnnxError, Shapes};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A graph input read through layout-keeping nodes ([`Ctx::fed_input`]).
pub(crate) struct FedInput {
    /// The graph input.
    pub input: String,
    /// Per axis of the value read, the input's axes it merges, outermost first (one but
    /// where a `Reshape` merged the batch and the heads).
    pub axes: Vec<Vec<usize>>,
    /// The node reading the input, by the first value it writes.
    pub reader: String,
    /// The input's axes whose sizes a `Shape` along the way reads (not to be cut).
    pub measured: BTreeSet<usize>,
}

/// What the user can change about the analysis.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    /// Initializer or node names whose groups must stay unprunable.
    pub unprunable: Vec<String>,
}

/// Why the analysis could not run (a malformed model). Unsupported operators are not
/// errors: they make the spaces they touch unprunable and are listed in the result.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The model is invalid (the error names the node or value).
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// A group of an analysis does not fit the model it is used with (see [`Analysis::check`]).
    #[error("group '{group}': {message}")]
    Mismatch {
        /// The group id.
        group: String,
        /// What does not fit, with the offending value.
        message: String,
    },
    /// A saved analysis (`oto analyze --json`) that cannot be read, or that does not fit
    /// the model (see [`Analysis::load`]).
    #[error("{}: {message}", path.display())]
    Saved {
        /// The JSON file.
        path: std::path::PathBuf,
        /// What is wrong (for a misfit: the group and the offending value).
        message: String,
    },
}

/// Analyzes `model` into pruning groups. See the crate documentation.
pub fn analyze(model: &Model, options: &AnalyzeOptions) -> Result<Analysis, AnalysisError> {
    let graph = Graph::new(model)?;
    // Inference completes what it cannot tell with the file's declared `value_info`.
    let shapes = oto_onnx::shape::infer(&graph)?;
    let mut dims: InitDims = HashMap::new();
    for t in &graph.proto.initializer {
        let d: Vec<usize> = t.dims.iter().map(|&x| x.max(0) as usize).collect();
        dims.insert(t.name.clone().unwrap_or_default(), d);
    }
    // The tables' candidates, read off the graph before any rule runs.
    let probe = Ctx::new(&graph, shapes);
    let tables = crate::rules::table_axes(&probe);
    let shapes = probe.shapes;
    let seeds = table_seeds(&graph, &shapes, options, &dims, tables);
    let tied = traverse(&graph, shapes.clone(), options, &dims, &seeds, Shared::Tied)?;
    let (groups, blocked) = untie(&graph, shapes, options, &dims, &seeds, tied)?;
    let prunable = prunable_params(&groups, &dims, &graph);
    // Parameters as `oto inspect` and the reports count them: not BatchNorm statistics,
    // scalars or one-element literals.
    let total = oto_onnx::cost::parameter_count(&graph).parameters;
    let grouped: HashSet<&str> = groups.iter().flat_map(|g| g.members.iter().map(|m| m.initializer.as_str())).collect();
    let mut ungrouped: Vec<UngroupedWeight> = oto_onnx::cost::parameter_tensors(&graph)
        .into_iter()
        .filter(|(name, _)| !grouped.contains(name.as_str()))
        .map(|(initializer, params)| UngroupedWeight { initializer, params })
        .collect();
    ungrouped.sort_by(|a, b| b.params.cmp(&a.params).then_with(|| a.initializer.cmp(&b.initializer)));
    let model_name = model.path().display().to_string();
    let analysis = Analysis { model: model_name, groups, blocked, total_params: total, prunable_params: prunable, ungrouped };
    // The rules take channel counts from the shapes the graph gives values; an initializer
    // whose own dims disagree (a Conv bias shorter than the weight's output channels, which
    // shape inference does not read) would give groups that index past it. Everything that
    // uses an analysis relies on its check, so the model is refused here, naming the value.
    analysis.check(model).map_err(|e| match e {
        AnalysisError::Mismatch { group, message } => AnalysisError::Mismatch {
            group,
            message: format!("{message} ({}: an initializer's dims disagree with the shapes the graph gives it)", model.path().display()),
        },
        other => other,
    })?;
    Ok(analysis)
}

/// Which of the axes of tables laid out at run time ([`crate::rules::table_axes`]) the
/// analysis tracks from their initializer: those that, with every such axis tracked,
/// end in a prunable group with a layer's producers (the width the table is added to).
/// A probe that fails seeds nothing: the analysis is then the one without tables.
fn table_seeds(
    graph: &Graph<'_>,
    shapes: &Shapes,
    options: &AnalyzeOptions,
    dims: &InitDims,
    axes: Vec<(String, usize)>,
) -> Vec<(String, usize)> {
    if axes.is_empty() {
        return axes;
    }
    let Ok(Traversal { groups, .. }) = traverse(graph, shapes.clone(), options, dims, &axes, Shared::Tied) else {
        return Vec::new();
    };
    let tables: HashSet<&str> = axes.iter().map(|(t, _)| t.as_str()).collect();
    let mut kept = Vec::new();
    for g in groups.iter().filter(|g| g.prunable) {
        let layer = g.members.iter().any(|m| m.role == Role::Producer && !tables.contains(m.initializer.as_str()));
        if layer {
            kept.extend(axes.iter().filter(|(t, a)| g.members.iter().any(|m| m.initializer == *t && m.axis == *a)).cloned());
        }
    }
    kept.sort();
    kept.dedup();
    kept
}

/// How a per-head value that several layers read is followed: T5's position bias (a
/// table's rows, or zeros for the cross-attention, computed once and added to every
/// layer's scores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shared {
    /// Its heads are tracked, so every layer reading it loses the same heads (its table's
    /// rows are cut with them, the zeros' shape rewritten).
    Tied,
    /// It is not tracked: each layer reads its own kept heads of it ([`Ctx::read_kept`]).
    /// The tables (initializer names) whose heads were tied are not followed, neither
    /// seeded nor looked up (an embedding `Gather`).
    Untied(HashSet<String>),
}

/// The traversal without tracking per-head values the layers share ([`Shared::Untied`])
/// where the one that tracks them (`tied`) tied heads through such a value (a seeded
/// table's head axis, or zeros whose shape gives the heads); kept when it gives more
/// prunable groups, the layers' heads apart, and loses no prunable parameter but the
/// tables'.
fn untie(
    graph: &Graph<'_>,
    shapes: Shapes,
    options: &AnalyzeOptions,
    dims: &InitDims,
    seeds: &[(String, usize)],
    tied: Traversal,
) -> Result<(Vec<crate::Group>, Vec<BlockedOp>), AnalysisError> {
    // Tables in a head group: seeded, or read by an embedding lookup (T5's bias buckets).
    let looked_up = |t: &str| {
        graph.consumers(t).iter().any(|u| u.input == 0 && graph.node(u.node).op() == "Gather") && dims.get(t).is_some_and(|d| d.len() == 2)
    };
    let head_tables: HashSet<String> = tied
        .groups
        .iter()
        .filter(|g| matches!(g.kind, crate::ElementKind::Head { .. }))
        .flat_map(|g| g.members.iter())
        .filter(|m| seeds.iter().any(|(t, a)| *t == m.initializer && *a == m.axis) || (m.axis == 1 && looked_up(&m.initializer)))
        .map(|m| m.initializer.clone())
        .collect();
    if head_tables.is_empty() && !tied.zero_heads {
        return Ok((tied.groups, tied.blocked));
    }
    let kept: Vec<(String, usize)> = seeds.iter().filter(|(t, _)| !head_tables.contains(t)).cloned().collect();
    // The tables stay whole untied: their parameters are the only ones it may lose.
    let table_params: u64 = head_tables.iter().filter_map(|t| dims.get(t)).map(|d| numel(d)).sum();
    let untied = traverse(graph, shapes, options, dims, &kept, Shared::Untied(head_tables))?;
    let count = |t: &Traversal| t.groups.iter().filter(|g| g.prunable && g.num_elements > 1).count();
    let params = |t: &Traversal| prunable_params(&t.groups, dims, graph);
    let better = count(&untied) > count(&tied) && params(&untied).saturating_add(table_params) >= params(&tied);
    let chosen = if better { untied } else { tied };
    Ok((chosen.groups, chosen.blocked))
}

/// What [`traverse`] gives: the groups, the operators that blocked spaces, and whether a
/// `ConstantOfShape` of zeros opened spaces (T5's shared cross-attention bias).
pub(crate) struct Traversal {
    groups: Vec<crate::Group>,
    blocked: Vec<BlockedOp>,
    zero_heads: bool,
}

/// Applies every operator's rule in order, with the table axes `seeds` tracked from
/// their initializers, blocks what reaches the outputs, and solves the spaces into
/// groups; also the operators that blocked spaces.
fn traverse(
    graph: &Graph<'_>,
    shapes: Shapes,
    options: &AnalyzeOptions,
    dims: &InitDims,
    seeds: &[(String, usize)],
    shared: Shared,
) -> Result<Traversal, AnalysisError> {
    let user: HashSet<&str> = options.unprunable.iter().map(String::as_str).collect();
    let mut cx = Ctx::new(graph, shapes);
    cx.shared = shared;
    cx.seed_tables(seeds);
    for (_, node) in graph.nodes() {
        cx.apply(node)?;
        let name = node.name.as_deref().unwrap_or("");
        if !name.is_empty() && user.contains(name) {
            let why = format!("node '{name}' is marked unprunable by the user");
            for v in node.input.iter().chain(node.output.iter()) {
                cx.block_value(v, &why);
            }
        }
    }
    // A merged decoder's outputs: each branch's value, which each branch writes as a
    // graph output writes it (a cache, heads, or blocked).
    for (result, output) in graph.results() {
        // A cache returned through Casts (float16 inside, float32 outputs) is recorded at
        // the Concat: the Casts carry the same channels.
        let name = match graph.uncast(&result) {
            source if cx.cache_axes.contains_key(source) => source,
            _ => result.as_str(),
        };
        let why = format!("reaches graph output '{output}'");
        if !cx.cache_axes.contains_key(name) {
            cx.present_heads(name);
        }
        match cx.cache_axes.get(name).cloned() {
            None => cx.block_value(name, &why),
            Some(kept) => {
                let axes: Vec<AxisT> = cx.track(name).map(|t| t.to_vec()).unwrap_or_default();
                for (_, a) in axes.iter().enumerate().filter(|(i, _)| !kept.contains(i)) {
                    cx.block_axis(a, &why);
                }
            }
        }
    }
    cx.block_partly_consumed();
    let mut fixed_inits: HashMap<String, String> = options
        .unprunable
        .iter()
        .filter(|n| dims.contains_key(n.as_str()))
        .map(|n| (n.clone(), format!("initializer '{n}' is marked unprunable by the user")))
        .collect();
    for (name, why) in std::mem::take(&mut cx.frozen_inits) {
        fixed_inits.entry(name).or_insert(why);
    }
    Ok(Traversal { groups: cx.spaces.solve(dims, &fixed_inits), blocked: cx.blocked, zero_heads: cx.zero_spaces })
}

/// Per axis of a value read through a node, the node's input axes it comes from
/// (`from`, per output axis of the node) composed with `axes` (per axis of the value, the
/// node's output axes).
fn through(axes: &[Vec<usize>], from: &[Vec<usize>]) -> Option<Vec<Vec<usize>>> {
    axes.iter().map(|list| list.iter().map(|&a| from.get(a).cloned()).collect::<Option<Vec<_>>>().map(|v| v.concat())).collect()
}

/// Per output axis of a `Reshape` from `din` to `dout` that only merges neighbouring
/// axes (`[B, H, S, D] -> [B * H, S, D]`), the input axes it merges; `None` for any other.
fn merged_axes(din: &[Dim], dout: &[Dim]) -> Option<Vec<Vec<usize>>> {
    let mut out = Vec::with_capacity(dout.len());
    let mut next = 0;
    for d in dout {
        let mut group = vec![next];
        let mut size = din.get(next)?.clone();
        next += 1;
        while size != *d {
            size = size.mul(din.get(next)?).ok()?;
            group.push(next);
            next += 1;
        }
        out.push(group);
    }
    (next == din.len()).then_some(out)
}

/// Parameters in the slices of prunable groups, each element once: per initializer,
/// everything minus the product over axes of the positions no prunable slice covers.
fn prunable_params(groups: &[crate::Group], dims: &InitDims, graph: &Graph<'_>) -> u64 {
    let mut covered: HashMap<&str, Vec<BTreeSet<usize>>> = HashMap::new();
    for g in groups.iter().filter(|g| g.prunable) {
        for m in &g.members {
            let Some(d) = dims.get(&m.initializer) else {
                continue;
            };
            let sets = covered.entry(m.initializer.as_str()).or_insert_with(|| vec![BTreeSet::new(); d.len()]);
            if let Some(set) = sets.get_mut(m.axis) {
                for i in 0..g.num_elements {
                    set.extend(m.map.indices(i));
                }
            }
        }
    }
    let parameters = oto_onnx::cost::parameter_names(graph);
    let mut total = 0u64;
    for (name, sets) in covered {
        let Some(d) = dims.get(name) else { continue };
        if !parameters.contains(name) {
            continue;
        }
        let all = numel(d);
        let free = d.iter().zip(&sets).fold(1u64, |acc, (&n, s)| acc.saturating_mul((n as u64).saturating_sub(s.len() as u64)));
        total = total.saturating_add(all.saturating_sub(free));
    }
    total
}

/// The product of the known dims (a file's, so checked): `usize::MAX` when it overflows
/// or a dim is negative, which callers read as "not a single element".
fn known_elements(d: &[Dim]) -> usize {
    d.iter()
        .filter_map(Dim::known)
        .try_fold(1usize, |acc, x| usize::try_from(x).ok().and_then(|x| acc.checked_mul(x)))
        .unwrap_or(usize::MAX)
}

/// Where an integer entry of a shape-like value comes from.
pub(crate) enum Located {
    /// A constant that construction must rewrite: where, which entry, and the node that
    /// reads it (the Reshape itself, or a node of the shape arithmetic feeding it).
    Const(ShapeLocation, usize, String),
    /// Computed at run time as the size of a tracked value axis: changes by itself
    /// with the parts that axis counts (and why that may not be what it must count).
    Dynamic(Vec<Part>, String),
    /// A measured size divided by the count it holds of those parts (BLOOM's batch,
    /// `(B * H) / H` read off its `[B * H, S, D]` scores): counts no channels once the
    /// divisor, a constant (where, which entry, the reading node), counts the parts too.
    Quotient(ShapeLocation, usize, String, Vec<Part>),
}

/// One recorded slice of an initializer axis: base range, axis offset, positions ratio.
type SliceUse = (Range, usize, usize, usize, Outer);

/// The nodes whose slices of one initializer axis read channels ([`Ctx::consume`]).
struct ConsumedBy {
    /// The operator of the first of them.
    op: String,
    /// The input slot the initializer has there.
    slot: usize,
    /// The first output of each of them.
    readers: HashSet<String>,
}

/// Analysis state during the traversal.
pub(crate) struct Ctx<'a, 'm> {
    pub graph: &'a Graph<'m>,
    pub shapes: Shapes,
    pub tracks: HashMap<String, ValueT>,
    pub spaces: Spaces,
    pub blocked: Vec<BlockedOp>,
    blocked_nodes: HashSet<String>,
    /// Earlier slices of each (initializer, axis), to tie the spaces of shared weights.
    init_uses: HashMap<(String, usize), Vec<SliceUse>>,
    /// Initializers read by a blocked node (one no rule follows channels through), with
    /// why: no group may cut them (an exporter or optimizer may share one weight between
    /// such a node and a layer whose rule makes it a group member).
    frozen_inits: HashMap<String, String>,
    /// Initializer axes whose slices read channels ([`Ctx::consume`]) (ordered: the reasons
    /// they block with are added in one order every run): per (initializer, axis), the
    /// operator and input slot of the first such reader, and the first output of every
    /// node that read it so. Another node reading it in that slot must have too
    /// ([`Ctx::block_partly_consumed`]).
    consumed: BTreeMap<(String, usize), ConsumedBy>,
    /// Graph outputs that are caches ([`Ctx::cache_along`]), with their axes that keep
    /// their full width in the compact model: those axes do not block at the output.
    cache_axes: HashMap<String, Vec<usize>>,
    /// The graph's key/value cache inputs ([`Graph::cache_inputs`]).
    cache_inputs: HashMap<String, usize>,
    /// Sliced tables ([`Ctx::sliced_table`]) and expanded tokens the current node cut with
    /// its channels.
    pub tables_cut: HashSet<String>,
    /// Outputs of the nodes inside layer normalizations written out
    /// ([`oto_onnx::op::WrittenLayerNorm`]), handled whole at their first node.
    pub written_norm_inner: HashSet<String>,
    /// How per-head values the layers share are followed.
    pub shared: Shared,
    /// Whether a `ConstantOfShape` of zeros opened a space.
    pub zero_spaces: bool,
}

impl<'a, 'm> Ctx<'a, 'm> {
    /// A traversal of `graph` that has not applied any rule yet.
    fn new(graph: &'a Graph<'m>, shapes: Shapes) -> Ctx<'a, 'm> {
        Ctx {
            graph,
            shapes,
            tracks: HashMap::new(),
            spaces: Spaces::default(),
            blocked: Vec::new(),
            blocked_nodes: HashSet::new(),
            init_uses: HashMap::new(),
            frozen_inits: HashMap::new(),
            consumed: BTreeMap::new(),
            cache_axes: HashMap::new(),
            cache_inputs: graph.cache_inputs(),
            tables_cut: HashSet::new(),
            written_norm_inner: HashSet::new(),
            shared: Shared::Tied,
            zero_spaces: false,
        }
    }

    /// The (possibly symbolic) shape of a value: inferred, declared, or an initializer's.
    pub fn dims(&self, value: &str) -> Option<Vec<Dim>> {
        if let Some(s) = self.shapes.shape(value) {
            return Some(s.to_vec());
        }
        self.graph.initializer(value).map(|t| t.dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// The dims of an initializer.
    pub fn init_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.graph.initializer(name).map(|t| t.dims.iter().map(|&d| d.max(0) as usize).collect())
    }

    /// Whether a value is an initializer.
    pub fn is_init(&self, name: &str) -> bool {
        self.graph.initializer(name).is_some()
    }

    /// The tracks of a value, if any axis is tracked.
    pub fn track(&self, value: &str) -> Option<&ValueT> {
        self.tracks.get(value)
    }

    /// Stores the tracks of a value (only if something is tracked).
    pub fn set(&mut self, value: &str, t: ValueT) {
        if !value.is_empty() && t.iter().any(AxisT::is_tracked) {
            self.tracks.insert(value.to_string(), t);
        }
    }

    /// Small constant floats of a value (never decodes large initializers).
    pub fn const_floats(&self, value: &str) -> Option<Vec<f64>> {
        ops::constant_floats(self.graph, Some(&self.shapes), value).ok().flatten()
    }

    /// Whether a value is a constant whose entries are all zero.
    pub fn is_zero_const(&self, value: &str) -> bool {
        self.const_floats(value).is_some_and(|v| v.iter().all(|&x| x == 0.0))
    }

    /// Whether `value` is positive and finite wherever the elements of its channels are
    /// zero, so that dividing by it stays finite there: a positive constant added to values
    /// that are then zero (an RMS norm's `mean(x^2) + eps`, per head in Qwen3's q/k norm),
    /// through `Sqrt`, `Reciprocal`, `Pow`, products and quotients of such values.
    pub fn positive_at_zero(&self, value: &str) -> bool {
        self.positive_within(value, 16)
    }

    fn positive_within(&self, value: &str, depth: usize) -> bool {
        let positive_const = |v: &str| self.const_floats(v).is_some_and(|c| !c.is_empty() && c.iter().all(|&x| x > 0.0 && x.is_finite()));
        if positive_const(value) {
            return true;
        }
        let Some(depth) = depth.checked_sub(1) else { return false };
        let Some((_, node)) = self.graph.producer_node(value) else { return false };
        let zero_at_zero = |v: &str| self.track(v).is_some_and(|t| t.iter().any(AxisT::is_tracked) && t.iter().all(AxisT::all_zero));
        let input = |k: usize| node.input.get(k).map(String::as_str).unwrap_or_default();
        match Op::parse(self.graph, node) {
            Ok(Op::Unary(Unary::Sqrt | Unary::Reciprocal | Unary::Identity) | Op::Cast { .. }) => self.positive_within(input(0), depth),
            Ok(Op::Binary(Binary::Pow)) => self.positive_within(input(0), depth),
            Ok(Op::Binary(Binary::Mul | Binary::Div)) => self.positive_within(input(0), depth) && self.positive_within(input(1), depth),
            Ok(Op::Binary(Binary::Add)) => [(0, 1), (1, 0)]
                .iter()
                .any(|&(c, v)| positive_const(input(c)) && (zero_at_zero(input(v)) || self.positive_within(input(v), depth))),
            // A norm clipped below by a positive epsilon (SwinV2's cosine attention,
            // `q / max(|q|, eps)`), broadcast back to the width.
            Ok(Op::Clip(c)) => {
                c.bounds(self.graph, node, Some(&self.shapes)).is_ok_and(|(lo, _)| lo.is_some_and(|lo| lo > 0.0 && lo.is_finite()))
            }
            Ok(Op::Expand) => self.positive_within(input(0), depth),
            _ => false,
        }
    }

    /// Records that `node` blocks spaces (listed once per node).
    pub fn blocked_op(&mut self, node: &NodeProto, reason: &str) {
        let label = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| node_label(node));
        if self.blocked_nodes.insert(label.clone()) {
            let op = match node.domain.as_deref() {
                None | Some("") | Some("ai.onnx") => node.op().to_string(),
                Some(d) => format!("{d}::{}", node.op()),
            };
            self.blocked.push(BlockedOp { node: label, op_type: op, reason: reason.to_string() });
        }
    }

    /// Why a `Conv`/`Gemm`/`MatMul` whose weight `w` is not an initializer is not pruned
    /// through it, listed even when no channel reaches it: a weight stored as integers
    /// behind a `DequantizeLinear` (a quantized file) says what to do instead; another
    /// computed weight names the node that computes it.
    pub fn block_computed_weight(&mut self, node: &NodeProto, w: &str) {
        if self.dequantized(w) {
            self.block_node(node, oto_onnx::op::QUANTIZED_WEIGHT);
            self.blocked_op(node, oto_onnx::op::QUANTIZED_WEIGHT);
        } else {
            // Listed even when no channel reaches it: a model whose layers all compute
            // their weights (BiT's weight-standardized convolutions) has no group, and
            // this says why.
            let reason = match self.graph.producer_node(w) {
                Some((_, p)) => format!("the weight is computed by {} (only weights stored as initializers are pruned)", node_label(p)),
                None => "the weight is not an initializer".to_string(),
            };
            self.block_node(node, &reason);
            self.blocked_op(node, &reason);
        }
    }

    /// Whether `value` is the output of a `DequantizeLinear` (a quantized weight).
    pub fn dequantized(&self, value: &str) -> bool {
        self.graph.producer_node(value).is_some_and(|(_, p)| p.op() == "DequantizeLinear")
    }

    /// Blocks every range of an axis.
    pub fn block_axis(&mut self, axis: &AxisT, reason: &str) {
        for r in axis.ranges() {
            self.spaces.block(r, reason);
        }
    }

    /// Blocks every range of a value.
    pub fn block_value(&mut self, value: &str, reason: &str) {
        let Some(t) = self.tracks.get(value) else {
            return;
        };
        let ranges: Vec<Range> = t.iter().flat_map(AxisT::ranges).collect();
        for r in ranges {
            self.spaces.block(r, reason);
        }
    }

    /// Blocks everything `node`'s inputs carry and lists the node, if it touches a space.
    pub fn block_node(&mut self, node: &NodeProto, reason: &str) {
        self.block_reads(node, &node.input, reason);
    }

    /// Blocks the values of this graph that `node`'s subgraphs (an `If`'s branches, a
    /// `Loop`'s or `Scan`'s body) read by name: they are not among the node's inputs, and
    /// channels are not followed into subgraphs, so they are cut nowhere (a branch reading
    /// a layer's output would otherwise keep its old width).
    pub fn block_subgraph_reads(&mut self, node: &NodeProto) {
        let mut reads = HashSet::new();
        oto_onnx::graph::subgraph_reads(node, &mut reads);
        let mut reads: Vec<String> = reads.into_iter().collect();
        reads.sort();
        let reason = "read inside its subgraph: channels are not followed into subgraphs";
        self.block_reads(node, &reads, reason);
        // Listed even when no channel reaches it: the layers inside (an Optimum merged
        // decoder's two branches) are why the model has no groups.
        let weights = reads.iter().filter(|v| self.graph.initializer(v).is_some_and(|t| t.dims.len() >= 2)).count();
        if weights > 0 {
            self.blocked_op(node, &format!("its subgraphs read {weights} weight tensors: channels are not followed into subgraphs"));
        }
    }

    /// Blocks what the values `node` reads carry, freezes the initializers among them,
    /// and lists the node if any of them touches a space.
    pub(crate) fn block_reads(&mut self, node: &NodeProto, values: &[String], reason: &str) {
        self.freeze_reads(node, values, reason);
        if !values.iter().any(|v| self.tracks.contains_key(v.as_str())) {
            return;
        }
        let full = format!("{}: {reason}", node_label(node));
        for v in values {
            self.block_value(v, &full);
        }
        self.blocked_op(node, reason);
    }

    /// Freezes the initializers `node` reads: a node whose rule does not follow channels
    /// through it reads them whole, so no group may cut them, whatever group another
    /// reader puts them in (an exporter or optimizer may share one initializer between
    /// such a node and a layer) and whether or not anything tracked reaches the node.
    pub(crate) fn freeze_initializers(&mut self, node: &NodeProto, reason: &str) {
        self.freeze_reads(node, &node.input, reason);
    }

    /// Freezes the initializers among `values`, read whole by `node`.
    pub(crate) fn freeze_reads(&mut self, node: &NodeProto, values: &[String], reason: &str) {
        for v in values {
            if self.graph.initializer(v).is_some() && !self.frozen_inits.contains_key(v.as_str()) {
                let why = format!("initializer '{v}' is also read by {}: {reason}", node_label(node));
                self.frozen_inits.insert(v.clone(), why);
            }
        }
    }

    /// Blocks one axis because of `node`, and lists the node.
    pub fn block_axis_at(&mut self, node: &NodeProto, axis: &AxisT, reason: &str) {
        if !axis.is_tracked() {
            return;
        }
        self.block_axis(axis, &format!("{}: {reason}", node_label(node)));
        self.blocked_op(node, reason);
    }

    /// Records a parameter slice, tying it to earlier uses of the same initializer axis.
    #[allow(clippy::too_many_arguments)]
    pub fn member(&mut self, init: &str, axis: usize, range: Range, offset: usize, num: usize, den: usize, role: Role) {
        self.member_repeated(init, axis, range, offset, num, den, Outer::ONCE, role);
    }

    /// [`Ctx::member`] of a slice repeated along the axis as `outer` says.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn member_repeated(
        &mut self,
        init: &str,
        axis: usize,
        range: Range,
        offset: usize,
        num: usize,
        den: usize,
        outer: Outer,
        role: Role,
    ) {
        let key = (init.to_string(), axis);
        let uses = self.init_uses.entry(key).or_default();
        let mut ties = Vec::new();
        let mut clashes = Vec::new();
        for &(r, o, n, d, repeated) in uses.iter() {
            let lo = offset.max(o);
            let hi = (offset + range.len * num / den).min(o + r.len * n / d);
            if lo >= hi {
                continue;
            }
            if n == num && d == den && repeated == outer && ((lo - offset) * den).is_multiple_of(num) && (lo - o) * d % n == 0 {
                let a = range.sub((lo - offset) * den / num, (hi - lo) * den / num);
                let b = r.sub((lo - o) * d / n, (hi - lo) * d / n);
                ties.push((a, b));
            } else {
                clashes.push(r);
            }
        }
        uses.push((range, offset, num, den, outer));
        for (a, b) in ties {
            self.spaces.tie(a, b);
        }
        for r in clashes {
            let why = format!("initializer '{init}' is used with two different layouts");
            self.spaces.block(r, why.clone());
            self.spaces.block(range, why);
        }
        self.spaces.member(init, axis, range, offset, num, den, outer, role);
    }

    /// Records slices of `init`'s axis `init_axis` along a value axis (positions of the
    /// value axis = indices of the initializer axis). Blocks the axis when its layout
    /// is not linear.
    pub fn members_along(&mut self, node: &NodeProto, init: &str, init_axis: usize, axis: &AxisT, role: Role) {
        match axis.strided() {
            Ok(None) => {}
            Err(why) => self.block_axis_at(node, axis, &format!("slices of '{init}' cannot follow this layout: {why}")),
            Ok(Some(segs)) => {
                for s in segs {
                    let (num, den) = per_position(&s);
                    self.spaces.require_block(s.range, den, ReqKind::Split);
                    self.member_repeated(init, init_axis, s.range, s.offset, num, den, s.outer, role);
                }
            }
        }
    }

    /// `value` (a graph output) is a cache: a graph input (the past keys or values) with
    /// this step's values (`axis`, tracked) concatenated by `node` along another axis. The
    /// compact model keeps the cache's full width along `axis`, so it reads and writes the
    /// caches the original does: construction puts zeros back in the removed positions
    /// (what the zeroed full model writes there, as the concatenated values are zero) and
    /// gives the model's other readers the kept positions only. The past is any input, not
    /// zero where elements are removed, so the result is not zero there either, and what
    /// reads it is zeroed with the element ([`Ctx::consume`]): a removed head whose past is
    /// not zero then still contributes nothing.
    pub fn cache_along(&mut self, node: &NodeProto, value: &str, axis: usize, a: &mut AxisT) {
        if a.is_inside_heads() {
            // The inside of heads: whole heads go, this axis keeps its size.
            self.cache_axes.entry(value.to_string()).or_default().push(axis);
            a.map_zero(&|_| false);
            return;
        }
        match a.strided() {
            Ok(None) => return,
            Err(why) => {
                self.block_axis_at(node, a, &format!("a cache concatenated in a layout construction cannot restore: {why}"));
                return;
            }
            Ok(Some(segs)) => {
                for s in segs {
                    if !s.zero {
                        let why = format!("{}: the values cached in '{value}' are not zero when their producers are", node_label(node));
                        self.spaces.block(s.range, why);
                    }
                    let (num, den) = per_position(&s);
                    self.spaces.require_block(s.range, den, ReqKind::Split);
                    self.spaces.cache(value, axis, s.range, s.offset, num, den, s.outer);
                }
            }
        }
        self.cache_axes.entry(value.to_string()).or_default().push(axis);
        a.map_zero(&|_| false);
    }

    /// `value`, a graph output, holds attention heads split out: one axis the heads, another
    /// the inside of those heads (`[B, H, S, D]`), and zero at a removed head (keys or
    /// values whose projection rows are zeroed with it). That is the present a decoder
    /// returns without a past: a causal LM exported with its cache on (the TorchScript and
    /// dynamo exporters), Optimum's `decoder_model.onnx`. It keeps its full width as a
    /// cache does ([`Ctx::cache_along`]): construction puts the zeros the sparse model
    /// writes back at the removed heads. Other outputs, and heads not zero when removed
    /// (attention probabilities), are left to block as any output does.
    fn present_heads(&mut self, value: &str) {
        let Some(t) = self.track(value) else { return };
        let inner: Vec<usize> = (0..t.len()).filter(|&i| t[i].is_inside_heads()).collect();
        let heads: Vec<usize> = (0..t.len()).filter(|&i| t[i].is_tracked() && !t[i].is_inside_heads()).collect();
        let (&[axis], false) = (heads.as_slice(), inner.is_empty()) else { return };
        let inside: Vec<Range> = inner.iter().flat_map(|&i| t[i].ranges()).collect();
        let covered = |h: &Range| inside.iter().any(|r| r.base == h.base && r.start <= h.start && h.end() <= r.end());
        if !t[axis].ranges().iter().all(covered) {
            return;
        }
        let Ok(Some(segs)) = t[axis].strided() else { return };
        if segs.iter().any(|s| !s.zero) {
            return;
        }
        for s in segs {
            let (num, den) = per_position(&s);
            self.spaces.require_block(s.range, den, ReqKind::Split);
            self.spaces.cache(value, axis, s.range, s.offset, num, den, s.outer);
        }
        let kept = self.cache_axes.entry(value.to_string()).or_default();
        kept.push(axis);
        kept.extend(inner);
    }

    /// `value`, if it is a graph input read through nodes that keep its layout
    /// (`Transpose`, `Cast`, `Identity`, a product or quotient by one constant, a `Reshape`
    /// that merges neighbouring axes: the batch and the heads of older exports) and read
    /// nothing else but `Shape`s whose entries are picked by constant indices: a decoder's
    /// cross-attention cache, the encoder's keys and values, computed once and fed back at
    /// every step. Returns the input, per axis of `value` the input's axes, the node reading
    /// it (`node`, which reads `value`, or the first of the nodes between), which alone will
    /// read its kept positions, and the input's axes those `Shape`s measure.
    pub fn fed_input(&self, node: &NodeProto, value: &str) -> Option<FedInput> {
        let rank = self.dims(value)?.len();
        let mut axes: Vec<Vec<usize>> = (0..rank).map(|a| vec![a]).collect();
        // Per measured entry of a value on the way, its axes, composed back like `axes`.
        let mut measured: Vec<Vec<usize>> = Vec::new();
        let mut current = value.to_string();
        let mut reader = node.output.first()?.clone();
        loop {
            match self.graph.producer(&current)? {
                // The input's other readers read it whole.
                Producer::Input(_) if !self.is_init(&current) => {
                    let measured = measured.into_iter().flatten().collect();
                    return Some(FedInput { input: current, axes, reader, measured });
                }
                Producer::Node { node, .. } => {
                    // A value on the way: read by the next step only, or measured.
                    let mut through_readers = 0;
                    for u in self.graph.consumers(&current) {
                        match self.measured_entries(self.graph.node(u.node)) {
                            Some(entries) => measured.extend(entries.into_iter().map(|e| vec![e])),
                            None => through_readers += 1,
                        }
                    }
                    if through_readers != 1 {
                        return None;
                    }
                    let n = self.graph.node(node);
                    let data = match Op::parse(self.graph, n).ok()? {
                        Op::Transpose { perm } => {
                            let inner = self.dims(n.input.first()?)?.len();
                            let perm: Vec<usize> = match perm {
                                Some(p) => p.iter().map(|&q| usize::try_from(q).ok().filter(|&q| q < inner)).collect::<Option<_>>()?,
                                None => (0..inner).rev().collect(),
                            };
                            let from: Vec<Vec<usize>> = perm.iter().map(|&p| vec![p]).collect();
                            axes = through(&axes, &from)?;
                            measured = through(&measured, &from)?;
                            0
                        }
                        Op::Reshape { .. } => {
                            let (din, dout) = (self.dims(n.input.first()?)?, self.dims(n.output.first()?)?);
                            let from = merged_axes(&din, &dout)?;
                            axes = through(&axes, &from)?;
                            measured = through(&measured, &from)?;
                            0
                        }
                        Op::Unary(Unary::Identity) | Op::Cast { .. } => 0,
                        Op::Binary(op @ (Binary::Mul | Binary::Div)) => {
                            let scalar = |v: &str| self.const_floats(v).is_some_and(|f| f.len() == 1);
                            let data = match (n.input.first(), n.input.get(1)) {
                                (Some(_), Some(c)) if scalar(c) => 0,
                                (Some(c), Some(_)) if op == Binary::Mul && scalar(c) => 1,
                                _ => return None,
                            };
                            if self.dims(&n.input[data])?.len() != self.dims(n.output.first()?)?.len() {
                                return None;
                            }
                            data
                        }
                        _ => return None,
                    };
                    reader = n.output.first()?.clone();
                    current = n.input.get(data)?.clone();
                }
                _ => return None,
            }
        }
    }

    /// The entries of a value's shape `node` reads, if it is a `Shape` (of the whole shape)
    /// whose every reader picks entries by constant indices (a `Gather`).
    fn measured_entries(&self, node: &NodeProto) -> Option<Vec<usize>> {
        if !matches!(Op::parse(self.graph, node), Ok(Op::Shape { start: 0, end: None })) {
            return None;
        }
        let rank = self.dims(node.input.first()?)?.len();
        let mut entries = Vec::new();
        for u in self.graph.consumers(node.output.first()?) {
            let g = self.graph.node(u.node);
            if u.input != 0 || !matches!(Op::parse(self.graph, g), Ok(Op::Gather { axis: 0 })) {
                return None;
            }
            for i in self.graph.constant_ints(g.input.get(1)?).ok()?? {
                entries.push(crate::rules::norm_axis(i, rank)?);
            }
        }
        Some(entries)
    }

    /// Axis `axis` of `fed` (a [`Ctx::fed_input`]) meets the channels `x` follow in a
    /// batched product: the compact model reads the input's kept positions only (a
    /// `Gather` construction adds, the input's interface unchanged). The input is not
    /// zero at a removed position, so neither is the product, and what reads it is zeroed
    /// with the element ([`Ctx::consume`]). `None` (and blocked) where the positions
    /// cannot be gathered.
    pub fn read_fed(&mut self, node: &NodeProto, fed: &FedInput, axis: usize, x: &AxisT) -> Option<AxisT> {
        // The input's axes this one merges, one per factor of `x`, those of the tracked
        // factors of the same sizes.
        let dims = self.dims(&fed.input).unwrap_or_default();
        let merged = fed.axes.get(axis).filter(|m| {
            m.len() == x.factors.len() && m.iter().zip(&x.factors).all(|(&a, f)| f.track.is_none() || dims.get(a) == Some(&f.size))
        });
        let Some(merged) = merged.cloned() else {
            self.block_axis_at(node, x, "batched product with a tensor that does not follow these channels");
            return None;
        };
        for (input_axis, f) in merged.into_iter().zip(&x.factors).filter(|(_, f)| f.track.is_some()) {
            let factor = AxisT { factors: vec![f.clone()] };
            if fed.measured.contains(&input_axis) {
                self.block_axis_at(node, &factor, &format!("reads input '{}', whose size along these channels is read too", fed.input));
                return None;
            }
            if !self.read_kept(node, &fed.input, &fed.reader, input_axis, &factor) {
                return None;
            }
        }
        let mut x = x.clone();
        x.map_zero(&|_| false);
        Some(x)
    }

    /// The node writing `reader` reads `value` (which the elements do not change) along
    /// its axis `axis` together with the channels `x` follow: it reads the kept positions
    /// only ([`Spaces::read`]). False (and blocked) where they cannot be gathered.
    pub fn read_kept(&mut self, node: &NodeProto, value: &str, reader: &str, axis: usize, x: &AxisT) -> bool {
        match x.strided() {
            Ok(None) => true,
            Err(why) => {
                self.block_axis_at(node, x, &format!("reads '{value}' in a layout it cannot gather: {why}"));
                false
            }
            Ok(Some(segs)) => {
                for s in segs {
                    let (num, den) = per_position(&s);
                    self.spaces.require_block(s.range, den, ReqKind::Split);
                    self.spaces.read(value, reader, axis, s.range, s.offset, num, den, s.outer);
                }
                true
            }
        }
    }

    /// Whether `node`, a Concat along `axis`, makes a key/value cache of `value`: `value`
    /// is the past ([`Graph::cache_inputs`]) and `node`'s output the present.
    pub fn is_cache_input(&self, node: &NodeProto, value: &str, axis: usize) -> bool {
        self.cache_inputs.get(self.graph.uncast(value)) == Some(&axis) && node.output.first().is_some_and(|o| self.graph.reaches_result(o))
    }

    /// `init`'s axis `init_axis` reads a value axis: consumer slices. Where the value is
    /// not zero at a removed element (an `f(0) != 0` on the way, such as HGNetV2's learnable
    /// affine `scale * x + bias` or a sigmoid; a multi-query head's mean of V; a cache's
    /// past), the slices are producers instead: zeroed with the element, they make its
    /// value contribute nothing, whatever it is, so the cut is exact for every reader
    /// (a padded convolution too, where folding a constant into the bias would not be).
    pub fn consume(&mut self, node: &NodeProto, init: &str, init_axis: usize, axis: &AxisT) {
        if let (Some(slot), Some(out)) = (node.input.iter().position(|i| i == init), node.output.first()) {
            let key = (init.to_string(), init_axis);
            let entry = self.consumed.entry(key).or_insert_with(|| ConsumedBy { op: node.op().to_string(), slot, readers: HashSet::new() });
            entry.readers.insert(out.clone());
        }
        match axis.strided() {
            Ok(None) => {}
            Err(why) => self.block_axis_at(node, axis, &format!("'{init}' reads a layout it cannot slice: {why}")),
            Ok(Some(segs)) => {
                for s in segs {
                    let (num, den) = per_position(&s);
                    self.spaces.require_block(s.range, den, ReqKind::Split);
                    let role = if s.zero { Role::Consumer } else { Role::Producer };
                    self.member_repeated(init, init_axis, s.range, s.offset, num, den, s.outer, role);
                }
            }
        }
    }

    /// Blocks the channels an initializer's axis reads ([`Ctx::consume`]) at some nodes
    /// when another node of the same operator reads it in the same slot without them: a
    /// weight shared by the iterations of an unrolled loop whose first input the exporter
    /// computed ahead as a constant (RAFT's update block, exported by dynamo). Cutting the
    /// weight for the readers that follow the channels would leave that node's input
    /// wider than it.
    fn block_partly_consumed(&mut self) {
        let mut blocked = Vec::new();
        for ((init, axis), ConsumedBy { op, slot, readers }) in &self.consumed {
            let other = self.graph.consumers(init).iter().map(|u| self.graph.node(u.node)).find(|n| {
                n.op() == op.as_str() && n.input.get(*slot) == Some(init) && !n.output.first().is_some_and(|o| readers.contains(o))
            });
            if let Some(n) = other {
                let why = format!("'{init}' is also read by {}, whose input does not follow these channels", node_label(n));
                blocked.extend(self.init_uses.get(&(init.clone(), *axis)).into_iter().flatten().map(|u| (u.0, why.clone())));
            }
        }
        for (range, why) in blocked {
            self.spaces.block(range, why);
        }
    }

    /// Opens a new space of `n` channels produced by `node`.
    pub fn new_space(&mut self, n: usize) -> Range {
        self.spaces.new_base(n)
    }

    /// Entry `idx` of a shape value is the size of axis `axis` of `measured` (read through
    /// `Shape`, or `Gather` of a `Shape`): it follows the channels that axis counts, if any.
    fn measured_axis(&self, measured: &str, axis: usize, idx: usize) -> Result<Located, String> {
        match self.track(measured).and_then(|t| t.get(axis)).filter(|a| a.is_tracked()) {
            Some(a) => {
                Ok(Located::Dynamic(count_parts(a), format!("is the size of axis {axis} of '{measured}', which counts other channels")))
            }
            None => Err(format!("entry {idx} is the size of axis {axis} of '{measured}', which does not follow the pruned channels")),
        }
    }

    /// Where entry `idx` of the integer value `value`, read by the node named `reader`,
    /// comes from, or why it cannot be found.
    pub fn locate(&self, reader: &str, value: &str, idx: usize) -> Result<Located, String> {
        if self.is_init(value) {
            return Ok(Located::Const(ShapeLocation::Initializer { name: value.to_string() }, idx, reader.to_string()));
        }
        let Some((_, node)) = self.graph.producer_node(value) else {
            return Err(format!("'{value}' is a graph input"));
        };
        let name = node.name.clone().unwrap_or_default();
        let me = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| node_label(node));
        let op = Op::parse(self.graph, node).map_err(|e| e.to_string())?;
        match &op {
            Op::Constant => Ok(Located::Const(ShapeLocation::ConstantNode { node: name }, idx, reader.to_string())),
            Op::Unary(Unary::Identity) | Op::Cast { .. } => self.locate(&me, &node.input[0], idx),
            Op::Unsqueeze { .. } | Op::Squeeze { .. } | Op::Reshape { .. }
                if idx == 0 || self.dims(&node.input[0]).is_some_and(|d| d.len() <= 1) =>
            {
                self.locate(&me, &node.input[0], idx)
            }
            Op::Concat { .. } => {
                let mut at = 0usize;
                for inp in &node.input {
                    let Some(len) = self.vector_len(inp) else {
                        return Err(format!("the length of '{inp}' (an input of {}) is unknown", node_label(node)));
                    };
                    let end = at.saturating_add(len);
                    if idx < end {
                        return self.locate(&me, inp, idx - at);
                    }
                    at = end;
                }
                Err(format!("entry {idx} is beyond {}", node_label(node)))
            }
            &Op::Shape { start, .. } => {
                let measured = &node.input[0];
                let rank = self.dims(measured).map_or(0, |d| d.len()) as i64;
                let first = if start < 0 { start + rank } else { start };
                let axis = (first + idx as i64) as usize;
                self.measured_axis(measured, axis, idx)
            }
            Op::Slice(sl) => {
                // A window of a Shape: `shape[a:b]`.
                let Some((_, src)) = self.graph.producer_node(&node.input[0]) else {
                    return Err(format!("entry {idx} is sliced from a non-computed value"));
                };
                let sl = sl.resolve(self.graph, node, Some(&self.shapes)).map_err(|e| e.to_string())?;
                let len = self.dims(&node.input[0]).and_then(|d| d.first().and_then(Dim::known)).unwrap_or(0);
                let start = sl.starts.first().and_then(Dim::known).unwrap_or(0);
                let start = if start < 0 { (start + len).max(0) } else { start.min(len) };
                if !self.is_op(src, |o| matches!(o, Op::Shape { .. })) || sl.steps.as_ref().is_some_and(|s| s.iter().any(|&x| x != 1)) {
                    return Err(format!("entry {idx} comes from {}", node_label(node)));
                }
                self.locate(&me, &node.input[0], start as usize + idx)
            }
            Op::Gather { .. } => {
                let data = &node.input[0];
                let Some((_, src)) = self.graph.producer_node(data) else {
                    return Err(format!("'{data}' is not computed"));
                };
                if !self.is_op(src, |o| matches!(o, Op::Shape { .. })) {
                    return Err(format!("entry {idx} comes from {}", node_label(node)));
                }
                let indices = ops::constant_ints(self.graph, Some(&self.shapes), &node.input[1]).ok().flatten();
                let Some(ix) = indices.and_then(|v| v.get(idx).copied()) else {
                    return Err(format!("the indices of {} are not constant", node_label(node)));
                };
                let measured = &src.input[0];
                let rank = self.dims(measured).map_or(0, |d| d.len()) as i64;
                let axis = if ix < 0 { ix + rank } else { ix } as usize;
                self.measured_axis(measured, axis, idx)
            }
            Op::Where => {
                // `Where(Equal(target, -1), ones, target)` (the TorchScript exporter's
                // `expand(..)`): the branch the folded condition picks for this entry.
                let at = |v: &[Dim]| v.get(if v.len() == 1 { 0 } else { idx }).and_then(Dim::known);
                match self.shapes.shape_value(&node.input[0]).and_then(at) {
                    Some(0) => self.locate(&me, &node.input[2], idx),
                    Some(_) => self.locate(&me, &node.input[1], idx),
                    None => Err(format!("entry {idx} is chosen at run time by {}", node_label(node))),
                }
            }
            Op::Binary(Binary::Mul) => {
                // batch * H: the constant factor is the one that counts the channels.
                for (k, other) in [(0usize, 1usize), (1, 0)] {
                    let c = &node.input[k];
                    if self.graph.initializer(c).is_some()
                        || self.graph.producer_node(c).is_some_and(|(_, n)| self.is_op(n, |o| *o == Op::Constant))
                    {
                        let dynamic = !self.is_init(&node.input[other]);
                        if dynamic {
                            let at = self.entry_at(c, idx);
                            // kv_heads * n_rep (grouped-query attention's repeat): the
                            // measured factor follows the channels, the constant is a
                            // multiplier that must stay.
                            let factor = self.shapes.shape_value(c).and_then(|v| v.get(at)).and_then(Dim::known);
                            let oidx = self.entry_at(&node.input[other], idx);
                            if let (Ok(Located::Dynamic(parts, why)), Some(f)) = (self.locate(&me, &node.input[other], oidx), factor) {
                                let f = usize::try_from(f).map_err(|_| format!("entry {idx} is a negative multiple"))?;
                                return Ok(Located::Dynamic(parts.into_iter().map(|p| p.times(f)).collect(), why));
                            }
                            // `batch * H`: the other factor is a size that follows no channels.
                            // Any other computation may count them: nothing is known.
                            if !self.is_measurement(&node.input[other]) {
                                return Err(format!("entry {idx} is a product of a value computed by {}", node_label(node)));
                            }
                            return self.locate(&me, c, at);
                        }
                    }
                }
                // Two sizes read off shapes (the dynamo exporter's `[2, H]` flattened: the
                // product of two measured entries): as a `ReduceProd` of them.
                if node.input.iter().all(|v| self.is_measurement(v)) {
                    let mut factors = Vec::new();
                    for v in &node.input {
                        let at = self.entry_at(v, idx);
                        let size = self.shapes.shape_value(v).and_then(|e| e.get(at).cloned()).unwrap_or(Dim::Known(1));
                        factors.push((self.locate(&me, v, at), size));
                    }
                    return product_of_sizes(idx, factors);
                }
                Err(format!("entry {idx} is a product computed by {}", node_label(node)))
            }
            Op::Binary(b @ (Binary::Add | Binary::Sub | Binary::Div)) => {
                // A size shifted by a constant, or divided by one (`(n + 1) // 2`, the
                // half of a `chunk(2)`): changes with what the size counts, shifted
                // never, divided by the constant (exact: the change is the entry's own).
                let constant = |v: &str| {
                    let stored = self.graph.initializer(v).is_some()
                        || self.graph.producer_node(v).is_some_and(|(_, n)| self.is_op(n, |o| *o == Op::Constant));
                    let values = ops::constant_ints(self.graph, Some(&self.shapes), v).ok().flatten().filter(|_| stored)?;
                    if let [c] = values.as_slice() {
                        Some(*c)
                    } else {
                        None
                    }
                };
                let (dynamic, c) = match (b, constant(&node.input[0]), constant(&node.input[1])) {
                    (Binary::Add, Some(c), None) => (&node.input[1], c),
                    (_, None, Some(c)) => (&node.input[0], c),
                    _ => return Err(format!("entry {idx} is computed by {}", node_label(node))),
                };
                let Located::Dynamic(parts, why) = self.locate(&me, dynamic, self.entry_at(dynamic, idx))? else {
                    return Err(format!("entry {idx} is computed by {} from a constant", node_label(node)));
                };
                if *b != Binary::Div {
                    return Ok(Located::Dynamic(parts, why));
                }
                let c = usize::try_from(c).ok().filter(|&c| c > 0).ok_or_else(|| format!("entry {idx} is divided by {c}"))?;
                if let [Part::Coarse(range, k, _)] = parts.as_slice() {
                    // Divided by the number of heads the size counts: the quotient is the
                    // rest of the size (a batch), once the divisor drops with the heads.
                    if *k > 0 && range.len / k == c {
                        let counted = vec![Part::Coarse(*range, *k, 1)];
                        return match self.locate(&me, &node.input[1], self.entry_at(&node.input[1], idx))? {
                            Located::Const(loc, e, reader) => Ok(Located::Quotient(loc, e, reader, counted)),
                            _ => Err(format!("entry {idx} divides a count of heads by a computed number of heads")),
                        };
                    }
                }
                let parts: Option<Vec<Part>> = parts.into_iter().map(|p| p.divided(c)).collect();
                parts.map(|p| Located::Dynamic(p, why)).ok_or_else(|| format!("entry {idx} divides a count of heads by {c}"))
            }
            Op::Reduce(Reduce { kind: ReduceKind::Prod, .. }) if self.dims(value).is_some_and(|d| known_elements(&d) == 1) => {
                // The size of merged axes, `B * H` (tf2onnx's batched MatMul of an einsum):
                // the product of entries of a shape; one of them may count channels, the
                // others are sizes that follow none.
                let input = &node.input[0];
                let entries = self.shapes.shape_value(input).ok_or_else(|| format!("entry {idx} is a product of unknown sizes"))?;
                if !self.is_measurement(input) {
                    return Err(format!("entry {idx} is a product of a value computed by {}", node_label(node)));
                }
                let factors: Vec<(Result<Located, String>, Dim)> =
                    entries.iter().enumerate().map(|(j, size)| (self.locate(&me, input, j), size.clone())).collect();
                product_of_sizes(idx, factors)
            }
            Op::Binary(Binary::Max) => {
                // The broadcast of two shapes (`Max` of their entries): the entry both
                // measure, or the one that is not 1.
                let at = |v: &str| self.entry_at(v, idx);
                let (a, b) = (&node.input[0], &node.input[1]);
                let one = |v: &str| self.shapes.shape_value(v).and_then(|e| e.get(at(v)).and_then(Dim::known)) == Some(1);
                match (self.locate(&me, a, at(a)), self.locate(&me, b, at(b))) {
                    // Both count channels: the operator they are broadcast for (the batched
                    // MatMul of two head-tracked values) ties their channels, so they
                    // stay equal.
                    (Ok(Located::Dynamic(p, why)), Ok(Located::Dynamic(q, _))) if p.len() == q.len() => Ok(Located::Dynamic(p, why)),
                    (Ok(found @ Located::Dynamic(..)), _) if one(b) => Ok(found),
                    (_, Ok(found @ Located::Dynamic(..))) if one(a) => Ok(found),
                    _ => Err(format!("entry {idx} is computed by {}", node_label(node))),
                }
            }
            _ => Err(format!("entry {idx} is computed by {}", node_label(node))),
        }
    }

    /// Which entry of the integer value `v` gives entry `idx` of a result computed from it:
    /// the only one of a one-entry value (broadcast), else entry `idx`.
    fn entry_at(&self, v: &str, idx: usize) -> usize {
        if self.dims(v).map_or(1, |d| known_elements(&d)) == 1 {
            0
        } else {
            idx
        }
    }

    /// Whether `value` is a size read off a value's shape (`Shape`, an entry of it),
    /// moved by `Cast`/`Unsqueeze`/`Squeeze`/`Reshape`/`Identity`.
    fn is_measurement(&self, value: &str) -> bool {
        let Some((_, node)) = self.graph.producer_node(value) else {
            return false;
        };
        match Op::parse(self.graph, node) {
            Ok(Op::Shape { .. }) => true,
            Ok(Op::Gather { .. } | Op::Slice(_)) => {
                self.graph.producer_node(&node.input[0]).is_some_and(|(_, n)| self.is_op(n, |o| matches!(o, Op::Shape { .. })))
            }
            Ok(Op::Cast { .. } | Op::Unsqueeze { .. } | Op::Squeeze { .. } | Op::Reshape { .. } | Op::Unary(Unary::Identity)) => {
                self.is_measurement(&node.input[0])
            }
            _ => false,
        }
    }

    /// The number of entries of a shape-like value: 1 for a scalar, the length of a 1-D
    /// value of known length; `None` otherwise.
    fn vector_len(&self, value: &str) -> Option<usize> {
        match self.dims(value).as_deref() {
            Some([]) => Some(1),
            Some([Dim::Known(n)]) => usize::try_from(*n).ok(),
            _ => None,
        }
    }

    /// Whether `node` parses as an operator `is` accepts (a node that does not parse: no).
    pub(crate) fn is_op(&self, node: &NodeProto, is: impl Fn(&Op) -> bool) -> bool {
        Op::parse(self.graph, node).is_ok_and(|o| is(&o))
    }

    /// `value` as a location construction can edit: a node's 1-D int64 output of known length.
    fn computed_location(&self, value: &str) -> Option<ShapeLocation> {
        let computed = self.graph.producer_node(value).is_some_and(|(_, n)| !self.is_op(n, |o| *o == Op::Constant));
        let int64 = self.shapes.dtype(value) == Some(oto_onnx::DType::I64);
        match self.dims(value).as_deref() {
            Some([Dim::Known(n)]) if computed && int64 => {
                Some(ShapeLocation::Computed { value: value.to_string(), len: usize::try_from(*n).ok()? })
            }
            _ => None,
        }
    }

    /// Entry `entry` of `value` as a location construction can pin to its value in the
    /// model as analysed: a computed location ([`Ctx::computed_location`]) whose entry
    /// shape inference knows.
    fn pinned_location(&self, value: &str, entry: usize) -> Option<ShapeLocation> {
        let (len, scalar) = match self.computed_location(value) {
            Some(ShapeLocation::Computed { len, .. }) => (len, false),
            // A scalar computed the same way.
            _ => {
                let computed = self.graph.producer_node(value).is_some_and(|(_, n)| !self.is_op(n, |o| *o == Op::Constant));
                let int64 = self.shapes.dtype(value) == Some(oto_onnx::DType::I64);
                (computed && int64 && self.dims(value).is_some_and(|d| d.is_empty())).then_some((1, true))?
            }
        };
        let original = self.shapes.shape_value(value)?.get(entry)?.known()?;
        Some(ShapeLocation::Pinned { value: value.to_string(), len, scalar, entry, original })
    }

    /// Sizes read by `node`, which no tracked channels reach, at its input `k` (a
    /// `Reshape`'s target, a `Slice`'s bounds, a float computed by a `Cast` to a float
    /// type): an entry that is the size of a tracked axis (the width `E` read off a
    /// layer's input to reshape an attention output of its own width, a scale
    /// `(E / H) ** -0.5`) must not change with the channels that axis counts; it is pinned
    /// to its value in the model as analysed where construction can, else those channels
    /// are unprunable ([`Ctx::shape_entry`] of an entry that counts no channels).
    pub(crate) fn sizes_kept(&mut self, node: &NodeProto, k: usize) {
        let Some(input) = ops::input(node, k).filter(|v| !self.is_init(v)).map(str::to_string) else {
            return;
        };
        let Some(entries) = self.vector_len(&input).map(|n| n.min(64)) else {
            return;
        };
        for idx in 0..entries {
            self.shape_entry(node, &input, idx, Vec::new());
        }
    }

    /// Records that entry `entry` of the integer value `value` (an input of `node`)
    /// counts `parts`; blocks the classes that would change it when it cannot be rewritten.
    pub fn shape_entry(&mut self, node: &NodeProto, value: &str, entry: usize, parts: Vec<Part>) {
        let user = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| node_label(node));
        if parts.is_empty() {
            // An entry that counts no channels must not change with any: one computed
            // from the size of a tracked axis does, unless what it is divided by drops
            // with the same parts.
            match self.locate(&user, value, entry) {
                // Known in the model as analysed (a head size `E / H` read off the width
                // `E`), construction pins it to that.
                Ok(Located::Dynamic(measured, why)) => {
                    let pin = self.pinned_location(value, entry);
                    self.spaces.shape_ref(RefAt::Follows(measured, why, None, pin), entry, &user, parts)
                }
                Ok(Located::Quotient(loc, e, reader, counted)) => self.spaces.shape_ref(RefAt::Const(loc, true), e, &reader, counted),
                Ok(Located::Const(..)) => {}
                Err(why) => self.computed_from_sizes(value, entry, &user, why, parts),
            }
            return;
        }
        match self.locate(&user, value, entry) {
            Ok(Located::Quotient(.., counted)) => {
                let why = format!(
                    "entry {entry} is a size divided by the number of heads it counts ({} parts), not a count of channels",
                    counted.len()
                );
                self.spaces.shape_ref(RefAt::Fixed(why), entry, &user, parts)
            }
            Ok(Located::Const(loc, e, reader)) => {
                let indirect = reader != user;
                self.spaces.shape_ref(RefAt::Const(loc, indirect), e, &reader, parts)
            }
            // Only the classes that change the entry other than it changes by itself are
            // blocked (at solving): removing whole heads leaves a head-dim entry `E / H`
            // computed at run time as it is.
            Ok(Located::Dynamic(measured, why)) => {
                let (computed, pin) = (self.computed_location(value), self.pinned_location(value, entry));
                self.spaces.shape_ref(RefAt::Follows(measured, why, computed, pin), entry, &user, parts)
            }
            Err(why) => self.computed_from_sizes(value, entry, &user, why, parts),
        }
    }

    /// Entry `entry` of `value`, which [`Ctx::locate`] cannot place (why): where it is
    /// computed from sizes of tracked axes it changes with their channels, so it is
    /// pinned ([`RefAt::Computed`]); otherwise it is a size that follows no channels
    /// ([`RefAt::Fixed`]).
    fn computed_from_sizes(&mut self, value: &str, entry: usize, user: &str, why: String, parts: Vec<Part>) {
        match self.measured_parts(value, entry) {
            Some(measured) if !measured.is_empty() => {
                let pin = self.pinned_location(value, entry);
                let why = format!("is computed from the sizes of pruned axes in a way not followed ({why}), and cannot be pinned");
                self.spaces.shape_ref(RefAt::Computed(measured, why, pin), entry, user, parts)
            }
            // None measured, or a computation larger than the analysis follows (as
            // before: not known to change with channels).
            _ => self.spaces.shape_ref(RefAt::Fixed(why), entry, user, parts),
        }
    }

    /// The parts counted by the sizes of tracked axes that entry `entry` of the integer
    /// `value` is computed from: a `Shape` or `Size` of a tracked value anywhere in its
    /// computation, followed entry by entry through the shape arithmetic (`Concat`,
    /// `Slice` and `Gather` at constant positions, elementwise operators) and wholly
    /// through anything else; `None` when the computation is larger than the analysis
    /// follows (1024 steps).
    fn measured_parts(&self, value: &str, entry: usize) -> Option<Vec<Part>> {
        let mut parts = Vec::new();
        // (value, entry of it; `None`: every entry)
        let mut stack: Vec<(String, Option<usize>)> = vec![(value.to_string(), Some(entry))];
        let mut seen = HashSet::new();
        let mut budget = 1024usize;
        let len_of = |v: &str| self.vector_len(v);
        while let Some((v, at)) = stack.pop() {
            if !seen.insert((v.clone(), at)) {
                continue;
            }
            budget = budget.checked_sub(1)?;
            let Some((_, node)) = self.graph.producer_node(&v) else { continue };
            // Every entry of a short integer vector, one by one.
            if let (None, Some(n @ 1..=64)) = (at, len_of(&v)) {
                stack.extend((0..n).map(|i| (v.clone(), Some(i))));
                continue;
            }
            let whole = |stack: &mut Vec<(String, Option<usize>)>| {
                stack.extend(node.input.iter().filter(|i| !i.is_empty() && !self.is_init(i)).map(|i| (i.clone(), None)))
            };
            let consts = |i: usize| node.input.get(i).and_then(|x| ops::constant_ints(self.graph, Some(&self.shapes), x).ok().flatten());
            match Op::parse(self.graph, node).ok() {
                Some(op @ (Op::Shape { .. } | Op::Size)) => {
                    let Some(t) = node.input.first().and_then(|m| self.track(m)) else { continue };
                    let rank = i64::try_from(t.len()).unwrap_or(0);
                    let (start, end) = match op {
                        Op::Shape { start, end } => (start, end),
                        _ => (0, None),
                    };
                    let clamp = |a: i64| if a < 0 { a.saturating_add(rank) } else { a }.clamp(0, rank);
                    let lo = clamp(start);
                    let axes: Vec<i64> = match (&op, at) {
                        (Op::Shape { .. }, Some(i)) => vec![lo.saturating_add(i64::try_from(i).unwrap_or(rank))],
                        _ => (lo..clamp(end.unwrap_or(rank))).collect(),
                    };
                    for a in axes {
                        if let Some(axis) = usize::try_from(a).ok().and_then(|a| t.get(a)) {
                            parts.extend(count_parts(axis));
                        }
                    }
                }
                Some(Op::Concat { .. }) if at.is_some() => {
                    let (Some(i), mut from) = (at, 0usize) else { continue };
                    let mut found = false;
                    for x in node.input.iter().filter(|x| !x.is_empty()) {
                        let Some(n) = len_of(x) else { break };
                        if i < from + n {
                            if !self.is_init(x) {
                                stack.push((x.clone(), Some(i - from)));
                            }
                            found = true;
                            break;
                        }
                        from += n;
                    }
                    if !found {
                        whole(&mut stack);
                    }
                }
                Some(Op::Gather { .. }) if at.is_some() && len_of(&node.input[0]).is_some() => {
                    let n = len_of(&node.input[0]).unwrap_or(0) as i64;
                    let pick = consts(1).and_then(|ix| ix.get(if ix.len() == 1 { 0 } else { at.unwrap_or(0) }).copied());
                    match pick.map(|i| if i < 0 { i.saturating_add(n) } else { i }).and_then(|i| usize::try_from(i).ok()) {
                        Some(i) => stack.push((node.input[0].clone(), Some(i))),
                        None => whole(&mut stack),
                    }
                }
                Some(Op::Slice(_)) if at.is_some() && len_of(&node.input[0]).is_some() => {
                    let n = len_of(&node.input[0]).unwrap_or(0) as i64;
                    let steps_one = consts(4).is_none_or(|st| st.iter().all(|&x| x == 1));
                    match consts(1).and_then(|st| st.first().copied()).filter(|_| steps_one) {
                        Some(st) => {
                            let first = if st < 0 { st.saturating_add(n) } else { st }.clamp(0, n);
                            let i = first.saturating_add(i64::try_from(at.unwrap_or(0)).unwrap_or(n));
                            stack.push((node.input[0].clone(), usize::try_from(i).ok()));
                        }
                        None => whole(&mut stack),
                    }
                }
                Some(Op::Cast { .. } | Op::Unary(Unary::Identity) | Op::Unsqueeze { .. } | Op::Squeeze { .. } | Op::Reshape { .. })
                    if at.is_some() =>
                {
                    let i = if len_of(&node.input[0]) == Some(1) { 0 } else { at.unwrap_or(0) };
                    stack.push((node.input[0].clone(), Some(i)));
                }
                // Filled with a constant: its values measure nothing.
                Some(Op::ConstantOfShape) => {}
                Some(Op::Binary(_) | Op::Compare(_) | Op::Where | Op::Unary(_) | Op::Clip(_)) if at.is_some() => {
                    for x in node.input.iter().filter(|x| !x.is_empty() && !self.is_init(x)) {
                        let i = if len_of(x) == Some(1) { 0 } else { at.unwrap_or(0) };
                        stack.push((x.clone(), Some(i)));
                    }
                }
                _ => whole(&mut stack),
            }
        }
        Some(parts)
    }
}

/// Entry `idx` as the product of sizes read off shapes (`located`, with each size's value):
/// the one that counts channels, times the known sizes of the others (symbolic ones are
/// the dynamic part, as in `count_parts`); a count of heads times their width makes the
/// heads' positions ([`heads_times_width`]).
fn product_of_sizes(idx: usize, factors: Vec<(Result<Located, String>, Dim)>) -> Result<Located, String> {
    let mut found: Option<(Vec<Part>, String)> = None;
    let mut factor = 1usize;
    for (located, size) in factors {
        match located {
            Ok(Located::Quotient(..)) => return Err(format!("entry {idx} multiplies a size divided by the heads it counts")),
            Ok(Located::Dynamic(parts, why)) => {
                found = Some(match found {
                    None => (parts, why),
                    Some((first, _)) => (
                        heads_times_width(&first, &parts).ok_or_else(|| format!("entry {idx} multiplies two sizes that count channels"))?,
                        why,
                    ),
                })
            }
            _ => {
                if let Some(n) = size.known() {
                    let n = usize::try_from(n).map_err(|_| format!("entry {idx} multiplies a negative size"))?;
                    factor = factor.saturating_mul(n);
                }
            }
        }
    }
    let (parts, why) = found.ok_or_else(|| format!("entry {idx} is a product of sizes that follow no channels"))?;
    Ok(Located::Dynamic(parts.into_iter().map(|p| p.times(factor)).collect(), why))
}

/// The product of a count of heads and a count of positions inside every head (either
/// order), as the positions they make up: `Coarse(r, k, a)` times `Inner([s], k, b)` is
/// `Fixed(r, a * b, 1)` per head range `r`, where `s` is the head range of the same length
/// the width was measured on (the `V` of `probs @ V`, whose heads the product ties to the
/// query's). `None` for any other product.
fn heads_times_width(x: &[Part], y: &[Part]) -> Option<Vec<Part>> {
    let (heads, width) = match (x, y) {
        (h, [w @ Part::Inner(..)]) if h.iter().all(|p| matches!(p, Part::Coarse(..))) => (h, w),
        ([w @ Part::Inner(..)], h) if h.iter().all(|p| matches!(p, Part::Coarse(..))) => (h, w),
        _ => return None,
    };
    let Part::Inner(ranges, k, b, true) = width else { return None };
    if heads.len() != ranges.len() {
        return None;
    }
    let mut out = Vec::new();
    for (h, s) in heads.iter().zip(ranges) {
        let Part::Coarse(r, hk, a) = h else { return None };
        if hk != k || r.len != s.len {
            return None;
        }
        out.push(Part::Fixed(*r, a.checked_mul(*b)?, 1));
    }
    Some(out)
}

/// Positions of an initializer axis per base position of a linear segment.
pub(crate) fn per_position(s: &LinSeg) -> (usize, usize) {
    match s.scale {
        Scale::Unit => (s.repeat, 1),
        Scale::Coarse(k) => (s.repeat, k),
        Scale::Window { k, n } => (s.repeat.saturating_mul(n), k),
    }
}

/// The parts an integer entry counts for a value axis: every tracked factor, with the
/// known sizes of the other factors multiplied in (symbolic ones are the dynamic part):
/// a position of one factor counts once per position of the others (a K/V head of
/// `[kv, n_rep]` counts `n_rep`).
pub(crate) fn count_parts(axis: &AxisT) -> Vec<Part> {
    let mut parts = Vec::new();
    for (i, f) in axis.factors.iter().enumerate() {
        let Some(track) = &f.track else { continue };
        let others: usize = axis
            .factors
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, g)| g.size.known().and_then(|n| usize::try_from(n).ok()).unwrap_or(1).max(1))
            .fold(1usize, usize::saturating_mul);
        match track {
            Track::Segs(segs) => {
                for s in segs {
                    match s {
                        Seg::Tracked { range, scale: Scale::Unit, .. } => parts.push(Part::Fixed(*range, others, 1)),
                        Seg::Tracked { range, scale: Scale::Coarse(k), .. } => parts.push(Part::Coarse(*range, *k, others)),
                        Seg::Tracked { range, scale: Scale::Window { k, n }, .. } => {
                            parts.push(Part::Fixed(*range, others.saturating_mul(*n), *k))
                        }
                        Seg::Opaque(_) => {}
                    }
                }
            }
            Track::Inner { k, ranges, at, .. } => {
                let whole = *at == Some(0) && f.size == Dim::Known(*k as i64);
                parts.push(Part::Inner(ranges.clone(), *k, others, whole));
            }
            // The count of sub-blocks changes only if an element cuts into a block,
            // which the solver refuses for an entry that is not the whole block.
            Track::Sub { k, ranges, .. } => parts.push(Part::Inner(ranges.clone(), *k, others, false)),
        }
    }
    parts
}

/// The pieces of the segments that the axis positions `[start, start+len)` cover: each
/// segment with the offset and length (segment positions) of its covered part.
fn pieces(segs: &[Seg], start: usize, len: usize) -> impl Iterator<Item = (&Seg, usize, usize)> {
    let end = start + len;
    segs.iter()
        .scan(0usize, |at, s| {
            let first = *at;
            *at += s.axis_len();
            Some((s, first))
        })
        .filter_map(move |(s, at)| {
            let (a, b) = (at.max(start), (at + s.axis_len()).min(end));
            (a < b).then(|| (s, a - at, b - a))
        })
}

/// Whether the axis positions `[start, start+len)` of a segment list leave every window
/// segment's blocks whole (see [`Seg::cuts_whole`]).
pub(crate) fn window_whole(segs: &[Seg], start: usize, len: usize) -> bool {
    pieces(segs, start, len).all(|(s, off, n)| s.cuts_whole(off, n))
}

/// The segments `[start, start+len)` of a segment list (axis positions).
pub(crate) fn window(segs: &[Seg], start: usize, len: usize) -> Vec<Seg> {
    pieces(segs, start, len).map(|(s, off, n)| s.cut(off, n)).collect()
}

/// Builds a one-factor axis from segments, merging nothing.
pub(crate) fn seg_axis(segs: Vec<Seg>) -> AxisT {
    if segs.iter().all(|s| matches!(s, Seg::Opaque(_))) {
        let n: usize = segs.iter().map(Seg::axis_len).sum();
        return AxisT::plain(Dim::Known(n as i64));
    }
    AxisT::segs(segs)
}

/// Picks the sub-block from `start` (`step` positions) of the blocks of `k` positions of
/// `ranges` ([`Track::Sub`]): the inner factor split off with it, the one-factor axis of
/// `step` positions of the same blocks not yet placed, becomes those positions of every
/// block. False when there is no such axis.
pub(crate) fn pick_sub(axes: &mut [AxisT], k: usize, ranges: &[Range], start: usize, step: usize) -> bool {
    let partner = axes.iter_mut().find_map(|a| match a.factors.as_mut_slice() {
        [Factor { track: Some(Track::Inner { k: kk, ranges: rr, at: at @ None, .. }), size }]
            if *kk == k && rr.as_slice() == ranges && *size == Dim::Known(step as i64) =>
        {
            Some(at)
        }
        _ => None,
    });
    let Some(placed) = partner else {
        return false;
    };
    *placed = Some(start);
    true
}

/// The factor list of an axis, normalized: untracked size-1 factors dropped, a coarse
/// factor followed by an inner factor of the same block merged back into channels
/// (the heads' ranges, tied head by head to the inner factor's ranges: the attention
/// output's channel `h*D + d` is head `h` of the projection that produced `d`; an inner
/// factor that is a window of each block, GPT-NeoX's `v` of a per-head `[q | k | v]`,
/// becomes that window of every block; sub-blocks followed by the positions split off
/// with them, BLOOM's `[3, D]` flattened back, are that window of the block again).
/// Returns the ties to record.
pub(crate) fn normalize(factors: Vec<Factor>, size: &Dim) -> (AxisT, Vec<(Range, Range)>) {
    let mut fs: Vec<Factor> = factors.into_iter().filter(|f| f.track.is_some() || f.size != Dim::Known(1)).collect();
    let mut ties = Vec::new();
    let mut i = 0;
    while i + 1 < fs.len() {
        if let (Some(Track::Sub { k, ranges, zero, at, step }), Some(Track::Inner { k: k2, ranges: r2, zero: z2, at: None }), Some(n)) =
            (&fs[i].track, &fs[i + 1].track, fs[i].size.known().and_then(|n| usize::try_from(n).ok()))
        {
            if k == k2 && ranges == r2 && fs[i + 1].size == Dim::Known(*step as i64) {
                let track = Track::Inner { k: *k, ranges: ranges.clone(), zero: *zero && *z2, at: Some(*at) };
                fs[i] = Factor { size: Dim::Known(n.saturating_mul(*step) as i64), track: Some(track) };
                fs.remove(i + 1);
                // The merged window may now follow its coarse factor.
                i = i.saturating_sub(1);
                continue;
            }
        }
        let merged = match (&fs[i].track, &fs[i + 1].track) {
            (Some(Track::Segs(segs)), Some(Track::Inner { k, ranges, zero, at: Some(at) })) => {
                let window = fs[i + 1].size.known().and_then(|n| usize::try_from(n).ok()).filter(|n| *n >= 1 && at + n <= *k);
                let coarse: Option<Vec<(Range, bool)>> = segs
                    .iter()
                    .map(|s| match s {
                        Seg::Tracked { range, scale: Scale::Coarse(c), zero } if c == k => Some((*range, *zero)),
                        _ => None,
                    })
                    .collect();
                match (coarse, window) {
                    (Some(c), Some(n)) if c.len() == ranges.len() => {
                        for ((r, _), inner) in c.iter().zip(ranges) {
                            ties.push((*r, *inner));
                        }
                        // The block itself is channels; a window of it, `n` of every `k`.
                        let scale = if *at == 0 && n == *k { Scale::Unit } else { Scale::Window { k: *k, n } };
                        Some(c.into_iter().map(|(range, z)| Seg::Tracked { range, scale, zero: z && *zero }).collect::<Vec<_>>())
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match merged {
            Some(segs) => {
                let n: usize = segs.iter().map(Seg::axis_len).sum();
                fs[i] = Factor { size: Dim::Known(n as i64), track: Some(Track::Segs(segs)) };
                fs.remove(i + 1);
            }
            None => i += 1,
        }
    }
    if fs.iter().all(|f| f.track.is_none()) {
        return (AxisT::plain(size.clone()), ties);
    }
    (AxisT { factors: fs }, ties)
}

/// Elements of a tensor of declared dims `d`, saturating: the dims are the file's word, and
/// an absurd declaration must not overflow (the counts it feeds are only reported).
pub(crate) fn numel(d: &[usize]) -> u64 {
    d.iter().fold(1u64, |acc, &x| acc.saturating_mul(x as u64))
}

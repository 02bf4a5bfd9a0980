//! Normalization: the one pass every command runs right after loading, so that the
//! later stages see the same graph whichever exporter wrote the file.
//!
//! Exporters write parameters in many forms: `Constant` nodes, weights reached through
//! `Transpose`/`Unsqueeze`/`Cast` of initializers, integer subgraphs computing shape
//! lists, an `Identity` of another initializer where the TorchScript exporter merged
//! two equal values, initializers also listed as graph inputs (IR < 4), the variadic
//! `Sum`. [`normalize`] rewrites them, exactly:
//!
//! 1. calls of the file's own functions (`ModelProto.functions`) become the functions'
//!    bodies (module `functions`), so that what they hold is seen like any other node;
//!    `Constant` nodes (`value`, `value_float(s)`, `value_int(s)`) become initializers
//!    named by their output (string and sparse constants are left as they are); an `If`
//!    whose condition is a graph input (a merged decoder's `use_cache_branch`) is written
//!    as both its branches and oto's `Branches` node (module [`crate::branches`]), so that
//!    every later step sees both;
//! 2. initializers listed as graph inputs are removed from the inputs (they are weights;
//!    for IR >= 4 files [`NormalizeOptions::keep_overridable_inputs`] keeps them);
//! 3. `Sum` becomes a chain of `Add` (one input: `Identity`), `Max`/`Min` of more than
//!    two inputs a chain of binary ones; the last node keeps the output's name; a
//!    `Concat` of integer constants with run-time values (a shape list `[B, T, 384]`)
//!    that several nodes read gets one copy per reader: the dynamo exporter merges equal
//!    shape computations of different layers, and a shape entry one layer's group
//!    changes must not be read by another layer (construction gives each reader its
//!    own copy of a constant, not of a computed value); an integer initializer such a
//!    Concat reads at several positions (`[B, 2, 2, T, 64]`: two K/V heads repeated
//!    twice, one constant `2`) gets a copy per position, as the entries count different
//!    things;
//!
//!    3a. a `BatchNormalization`'s running mean or variance that is an initializer also
//!    read elsewhere (tf2onnx merges equal constants: a fresh Keras layer's ones serve as
//!    scale and variance) gets a copy of its own, so the scale and bias stay parameters;
//!    the initial states of `RNN`/`GRU`/`LSTM` nodes that are zero (a sliced
//!    `ConstantOfShape` of `[layers, batch, H]`, as the TorchScript exporter computes them)
//!    are omitted, zero being the default, with the nodes that computed only them; a float
//!    initializer of one repeated value read by several nodes (merged equal constants: the
//!    zero biases of a fresh model) gets a copy per reader;
//!
//!    3b. onnxruntime's fused element-wise and normalization operators
//!    (`SkipLayerNormalization`, `BiasGelu`, `FastGelu`...; the `com.microsoft` domain,
//!    written by its transformer optimizer) and the fusions of a file it saved optimized
//!    (`FusedConv`, `FusedGemm`, `FusedMatMul`; a `FusedMatMul` whose transposed operands
//!    have ranks the file does not declare waits for shape inference, after step 3c)
//!    become their standard ONNX form (see
//!    [`contrib`]), so that an optimized file is pruned as its plain export is; ONNX's
//!    experimental operators of opsets 1 to 9 (`ImageScaler`, `Affine`, `Scale`,
//!    `ScaledTanh`, `ParametricSoftplus`, `Crop`), which old model zoo files hold, likewise;
//!
//!    3c. an `Einsum` of two operands (`torch.einsum`, tf2onnx's Keras `EinsumDense` and
//!    `MultiHeadAttention`) becomes `Transpose` -> `Reshape` -> `MatMul` -> `Reshape` ->
//!    `Transpose` (module `einsum`), which the analysis follows, so a projection's kernel
//!    is then a reshaped weight like any other;
//!
//!    3d. opset 23's `Attention` and `RotaryEmbedding` (the torch exporter's
//!    `scaled_dot_product_attention` and its fused rotary embedding at `opset_version=23`)
//!    become the operators the specification defines them by (module `attention`), so their
//!    heads prune as at earlier opsets; their forms need ranks and head counts from shape
//!    inference, so this runs after step 3c;
//!
//!    3e. a `SplitToSequence` of constant sizes read only by `SequenceAt`s of constant
//!    indices (the dynamo exporter's `torch.split` without its optimizer) becomes the
//!    `Split` it is (module `sequence`);
//! 4. nodes computed from initializers alone are folded into initializers: the data
//!    moves (`Identity`, `Reshape`, `Squeeze`, `Unsqueeze`, `Flatten`, `Transpose`,
//!    `Cast`, `CastLike`, `Slice`, `Concat`) whatever their size, `Shape` and `Size` of
//!    a constant, and small (up to 65536 elements) `ConstantOfShape`, `Expand`, `Where`,
//!    `Gather` and integer arithmetic and reductions (`ReduceSum/Prod/Max/Min`, as
//!    tf2onnx computes a kernel's reshape target from its own `Shape`) on non-float
//!    tensors (repeating or picking a
//!    weight's elements, as an embedding lookup with constant indices does, would change
//!    what is trained), with the interpreter shape inference folds with
//!    ([`crate::shape`]); every opset form is read through [`crate::ops`]. The result is
//!    named by the node's output, except that a rearrangement of a weight of the file
//!    that nothing else reads replaces that weight under its own name (so groups are
//!    named after the user's parameters).
//!    An `Identity` of an initializer becomes its own initializer (a copy when the
//!    source is read elsewhere too): the exporters' de-duplication of equal values is
//!    not weight sharing. Other folds never copy a float initializer that something
//!    else also reads (one initializer read by several nodes is real weight tying; a
//!    folded `Shape` of it reads no values and does not count).
//!    A `Conv`, `ConvTranspose`, `Gemm` or `MatMul` weight computed from initializers by
//!    float arithmetic (weight normalization `g * v / ||v||`, BiT's weight
//!    standardization) folds into one weight named after the largest initializer it
//!    reads, when nothing else reads the computation or its float initializers: the
//!    layer computes the same and then trains, and prunes, its weight directly.
//!    An `If` whose condition inference knows (sizes compared in a scripted helper,
//!    DeBERTa's `if key_size != query_size`) is replaced by the nodes of the branch it
//!    takes, renamed under its output, with an `Identity` per output;
//!    An equal `Split` (no sizes: the dynamo exporter's `chunk` with `num_outputs`, or as
//!    many parts as outputs) of an axis whose length the shapes tell gets its sizes written
//!    out (input 1 from opset 13, the `split` attribute before): the same parts, and each
//!    can then lose its own channels (Res2Net's scales); a `Gather` of indices
//!    `0, 1, ..., n - 1` (shaped as the view) from a flattened tensor of `n` elements (the
//!    dynamo exporter's `as_strided` of a contiguous view: ConvNeXt's and Swin's pooled
//!    features) becomes the `Reshape` it is; a `Resize` (opset >= 18) whose constant sizes
//!    repeat the input's batch or channel count (`F.interpolate(x, size=...)` by dynamo)
//!    lists only the axes it changes in `axes`;
//! 5. initializers only the folded nodes read are removed, and nodes are written in
//!    topological order;
//! 6. a weight tied by transposition is tied again: the TorchScript exporter folds the
//!    `Transpose` of a tied weight (GPT-2's `lm_head`, the transpose of the token
//!    embedding `wte`) into an initializer of its own, which would be trained apart
//!    from the embedding and give it a group of its own. A rank-2 float initializer
//!    read only as `MatMul` input 1 whose values equal, bit for bit, the transpose of
//!    another initializer that a node reads becomes a `Transpose` of that initializer
//!    (the node's output keeps the initializer's name), as the dynamo exporter writes
//!    a tied weight. Cheap on files without ties: only initializers of transposed
//!    shapes and equal types are compared, first at a few sampled positions (which
//!    must also hold at least two different values: a constant matrix, e.g. all
//!    zeros, is never taken for a tie), then element by element with an early exit;
//!
//! 7. a fixed batch `N` (every real graph input's dimension 0 is the same `N >= 1`, as
//!    old model zoo files write it, mostly `N = 1`) becomes the symbolic dimension
//!    [`BATCH_DIM`] on the inputs and on the outputs whose dimension 0 is `N`, and every
//!    `Reshape` target whose entry 0 is `N` becomes `0` (copy the input's dimension 0)
//!    where the Reshape's input has the batch as its dimension 0 and the target's other
//!    entries account for all of its other dimensions; a target whose entry 0 is a
//!    multiple `N * k` of a sample's elements folded together (Swin's `[N * 64, 49, C]`
//!    windows, from an input whose dimension 0 is a multiple of the batch) gets `-1`
//!    there. A constant target whose input carries the batch on another axis
//!    (sequence-first attention, `[S, N, E]`) gets `-1` in the entry that holds it: an axis
//!    of its own, else the outer factor of the next axis (not the last), else the inner
//!    factor of the axis before (at a batch of 1 the sizes cannot tell
//!    these apart, so the shapes at a batch of 2 check them, and a command loading the
//!    file checks the values in onnxruntime). An `Expand` whose input carries the batch on
//!    an axis where its constant target holds that axis's size gets a 1 there. A target computed at run time (`x.view(B, H // 7, ...)` traced with `B` a
//!    number) has its first piece replaced instead, when that piece is a constant or a
//!    single entry and the `Concat` computes this target alone; a target without a 0
//!    entry takes the 0 even under `allowzero = 1` (the dynamo exporter's attention
//!    views), which is then dropped. Operators that do not broadcast (`GatherElements`,
//!    `ScatterElements`, `Concat` off its axis) get the batch on an input of one row read
//!    beside inputs that carry it: an Expand of one row to `N` takes its first target
//!    entry from the batch, a one-row initializer is read through an Expand to it
//!    (RoBERTa's token-type buffer). Rounds repeat until nothing changes, as a Reshape sees
//!    the batch only once the ones before it pass it on. Only where this is exact: every graph output then carries the batch as its
//!    dimension 0, no Reshape takes the batch in without giving it out, and every
//!    value's shape, with the batch set back to `N`, is the one it had (a constant of
//!    `N` rows broadcast against the batch, say, would not be). Otherwise the file keeps
//!    its fixed batch and [`Summary::batch_kept`] says why.
//!
//! Graph inputs and outputs, opset imports, metadata, doc strings and the `value_info`
//! of surviving values are kept; a value that is a graph output is never folded. IR 3
//! files whose initializers are no longer all inputs are marked IR 4 (the one change
//! IR 4 made). Other subgraphs (`If` bodies of conditions computed inside the model, `Loop` bodies) are
//! left as they are, and every value they read from the main graph stays.

use crate::branches::inline_branch;
pub(crate) use crate::branches::Names;
use crate::error::Result;
use crate::graph::node_label;
use crate::graph::{subgraph_reads, Graph, NodeExt};
use crate::model::Model;
use crate::op::{AspectPolicy, Coordinate, Op};
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::dimension::Value as DimValue;
use crate::proto::{type_proto, AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::shape::Dim;
use crate::shape::{self, Shapes, FOLD_LIMIT};
use crate::tensor::{checked_numel, shape_of, DType, Tensor, TensorData};
use std::collections::{HashMap, HashSet};
use std::path::Path;

mod attention;
mod contrib;
mod einsum;
mod functions;
mod packed;
mod sequence;

/// Choices of [`normalize`].
#[derive(Debug, Clone, Default)]
pub struct NormalizeOptions {
    /// IR >= 4 files may list an initializer as a graph input too: a default value the
    /// caller may override. By default such an input is removed and the initializer
    /// treated as a weight (and counted in [`Summary::initializer_inputs`]); with this
    /// set it stays an input and nothing computed from it is folded. IR < 4 files list
    /// every initializer as an input, so there they are always removed.
    pub keep_overridable_inputs: bool,
    /// Keep a fixed batch as it is, with this reason in [`Summary::batch_kept`] (a caller
    /// that found the symbolic batch computing something else, in onnxruntime, than the
    /// file at its own batch).
    pub keep_fixed_batch: Option<String>,
}

/// What [`normalize`] rewrote, counted per rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Calls of the file's own functions (`ModelProto.functions`: the TorchScript
    /// exporter's `export_modules_as_functions`) replaced by the function's body.
    pub functions_inlined: usize,
    /// Nodes without a name given one (`<op>_<position>`): the analysis and construction
    /// name the nodes whose constants they edit (the dynamo exporter leaves some unnamed).
    pub nodes_named: usize,
    /// `Constant` nodes turned into initializers.
    pub constants_lifted: usize,
    /// `Constant` nodes left as they are (strings, sparse values, graph outputs).
    pub constants_kept: usize,
    /// Initializers removed from the graph inputs (they are weights).
    pub initializer_inputs: usize,
    /// Initializers kept as overridable graph inputs ([`NormalizeOptions::keep_overridable_inputs`]).
    pub overridable_inputs: usize,
    /// `Sum` nodes rewritten as `Add` chains.
    pub sums: usize,
    /// `Max`/`Min` nodes of more than two inputs rewritten as chains of binary ones.
    pub variadic: usize,
    /// Zero initial states of recurrent layers omitted (zero is the default).
    pub zero_states_omitted: usize,
    /// BatchNormalization running statistics given a copy of their own (the initializer was
    /// also read elsewhere, as tf2onnx's merged constants are).
    pub statistics_untied: usize,
    /// Dropouts of a model exported in training mode (`training_mode` true, or the dynamo
    /// exporter's inlined random mask) made inference `Dropout`s.
    pub dropouts_made_inference: usize,
    /// Readers of a shared initializer of one repeated value given a copy of their own
    /// (exporters and onnxruntime merge equal constants, such as the zero biases of a fresh
    /// model).
    pub uniform_untied: usize,
    /// onnxruntime's fused operators (`SkipLayerNormalization`, `BiasGelu`...) written
    /// as standard ONNX.
    pub fused_rewritten: usize,
    /// ONNX's experimental operators of opsets 1 to 9 (`ImageScaler`, `Crop`...) written
    /// as standard ONNX.
    pub experimental_rewritten: usize,
    /// `Identity` nodes of an initializer replaced by an initializer of their own.
    pub identities: usize,
    /// Copies of shared `Concat` nodes of integer constants and run-time values added,
    /// one per reader.
    pub concats_untied: usize,
    /// Copies of integer initializers that a shape `Concat` reads at several positions,
    /// one per position after the first.
    pub shape_constants_untied: usize,
    /// `If` nodes whose condition is known (from sizes and constants) replaced by the
    /// branch they take.
    pub branches_inlined: usize,
    /// `If` nodes chosen by a graph input (a merged decoder) written as both branches
    /// ([`crate::branches`]).
    pub branches_flattened: usize,
    /// Equal `Split`s (no sizes: `num_outputs`, or as many parts as outputs) given their
    /// sizes, so that each part can lose its own channels.
    pub splits_sized: usize,
    /// `SplitToSequence`s read part by part by `SequenceAt`s of constant indices written as
    /// `Split` (the dynamo exporter's `torch.split` without its optimizer).
    pub sequence_splits: usize,
    /// `Gather`s of `0, 1, ..., n - 1` from a flattened tensor (the dynamo exporter's
    /// `as_strided` of a contiguous view) written as the `Reshape` they are.
    pub view_gathers: usize,
    /// `Resize`s whose sizes repeated the input's size on some axes (the batch, the
    /// channels) given `axes` listing only those that change.
    pub resize_axes: usize,
    /// `Einsum`s of two operands written as `Transpose`/`Reshape`/`MatMul`.
    pub einsums: usize,
    /// Projections packed as `[parts, heads, head_dim]` and taken apart after a transpose
    /// (timm's ViTs, ModernBERT) written as one slice per part, reshaped into heads.
    pub packed_projections: usize,
    /// `Cast`s to the element type their input already has that wrote a graph output
    /// (an exporter's `.to(dtype)` of a key/value cache it returns), dropped: the node
    /// before writes the output, so a cache is the `Concat` of its past.
    pub output_casts: usize,
    /// Opset 23's `Attention` and `RotaryEmbedding` written as the operators the ONNX
    /// specification defines them by (`MatMul`, `Softmax`...).
    pub attention_rewritten: usize,
    /// Layer weights computed from initializers by float arithmetic (weight normalization
    /// `g * v / ||v||`, weight standardization) folded into one initializer, named after
    /// the largest it reads.
    pub weights_reparametrized: usize,
    /// Other nodes computed from initializers alone, folded into initializers.
    pub folded: usize,
    /// Zero biases of layers without bias, as the dynamo exporter without its optimizer
    /// writes them (`Expand(CastLike(0, x), [out])`), dropped.
    pub zero_biases_dropped: usize,
    /// Initializers removed because only folded nodes read them.
    pub dead_initializers: usize,
    /// Operands `Expand(n, Shape(x))` of a binary operator with `x` read as `n`.
    pub broadcast_expands: usize,
    /// Initializers found equal to the transpose of another weight and replaced by a
    /// `Transpose` of it (step 6 of the module documentation).
    pub tied_transposes: usize,
    /// Whether the nodes were reordered into a topological order.
    pub reordered: bool,
    /// `(from, to)` when the IR version was raised (IR 3 files with initializers that
    /// are not inputs any more).
    pub ir_version_raised: Option<(i64, i64)>,
    /// The batch every real graph input fixed (its dimension 0), if they all fix the same.
    pub fixed_batch: Option<i64>,
    /// Whether that fixed batch was made the symbolic dimension [`BATCH_DIM`].
    pub batch_symbolic: bool,
    /// `Reshape` targets whose fixed batch entry became `0` (copy) or `-1`.
    pub batch_reshapes: usize,
    /// Inputs of operators that do not broadcast (`GatherElements`, `Concat`...) given the
    /// batch: an Expand's first target entry taken from it, or a one-row constant expanded.
    pub batch_expands: usize,
    /// Why the fixed batch was kept (making it symbolic would not be exact).
    pub batch_kept: Option<String>,
}

/// The name of the symbolic batch dimension that replaces a fixed batch.
pub const BATCH_DIM: &str = "batch";

impl Summary {
    /// Whether the pass left the model as it was.
    pub fn is_noop(&self) -> bool {
        self == &Summary {
            constants_kept: self.constants_kept,
            overridable_inputs: self.overridable_inputs,
            batch_kept: self.batch_kept.clone(),
            fixed_batch: if self.batch_symbolic { None } else { self.fixed_batch },
            ..Summary::default()
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let mut count = |n: usize, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        count(self.functions_inlined, "calls of the file's functions inlined");
        count(self.constants_lifted, "Constant nodes made initializers");
        count(self.nodes_named, "unnamed nodes given a name");
        count(self.initializer_inputs, "initializers removed from the graph inputs (treated as weights)");
        count(self.sums, "Sum nodes rewritten as Add");
        count(self.variadic, "Max/Min nodes split into binary ones");
        count(self.zero_states_omitted, "zero initial states of recurrent layers omitted");
        count(self.statistics_untied, "BatchNormalization statistics given their own initializer");
        count(self.dropouts_made_inference, "dropouts of a training-mode export made inference Dropouts");
        count(self.uniform_untied, "readers of a merged constant of one value given their own copy");
        count(self.packed_projections, "packed projections taken apart by heads written as one slice per part");
        count(self.output_casts, "Casts to their input's own type dropped before graph outputs");
        count(self.fused_rewritten, "onnxruntime fused operators written as standard ONNX");
        count(self.experimental_rewritten, "experimental operators (ImageScaler, Crop...) written as standard ONNX");
        count(self.einsums, "Einsum nodes written as MatMul");
        count(self.attention_rewritten, "Attention/RotaryEmbedding nodes written as the operators they are defined by");
        count(self.identities, "Identity nodes of initializers made initializers of their own");
        count(self.concats_untied, "copies of shared shape Concat nodes made, one per reader");
        count(self.shape_constants_untied, "copies of constants a shape Concat reads twice made, one per entry");
        count(self.branches_inlined, "If nodes with a known condition replaced by the branch they take");
        count(self.branches_flattened, "If nodes chosen by a graph input (a merged decoder) followed into both branches");
        count(self.splits_sized, "equal Splits given their sizes");
        count(self.sequence_splits, "SplitToSequence nodes read part by part written as Split");
        count(self.view_gathers, "Gathers of a whole flattened tensor in order written as Reshape");
        count(self.resize_axes, "Resizes given the axes they change (sizes held the batch or channels)");
        count(
            self.weights_reparametrized,
            "layer weights computed from initializers (weight normalization, standardization) folded into one",
        );
        count(self.folded, "constant nodes folded into initializers");
        count(self.zero_biases_dropped, "zero biases of layers without bias dropped");
        count(self.dead_initializers, "unused initializers removed");
        count(self.broadcast_expands, "Expands of an operand to the other operand's shape read as broadcasts");
        count(self.tied_transposes, "weights equal to the transpose of another made a Transpose of it (tied again)");
        count(self.constants_kept, "Constant nodes kept (strings, sparse values or graph outputs)");
        count(self.overridable_inputs, "initializers kept as overridable graph inputs");
        if self.reordered {
            parts.push("nodes sorted topologically".into());
        }
        if let Some((from, to)) = self.ir_version_raised {
            parts.push(format!("IR version {from} -> {to}"));
        }
        if self.batch_symbolic {
            let n = self.fixed_batch.unwrap_or(1);
            let expands = match self.batch_expands {
                0 => String::new(),
                e => format!(", {e} inputs of operators that do not broadcast expanded to it"),
            };
            parts.push(format!("fixed batch {n} made symbolic '{BATCH_DIM}' ({} Reshape targets copy it{expands})", self.batch_reshapes));
        }
        if let Some(why) = &self.batch_kept {
            let n = self.fixed_batch.map(|n| format!(" {n}")).unwrap_or_default();
            parts.push(format!("fixed batch{n} kept: {why}"));
        }
        if parts.is_empty() {
            write!(f, "nothing to normalize")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// Loads a model file and normalizes it with the default options: what every command
/// and the trainer read a model through.
pub fn load(path: impl AsRef<Path>) -> Result<(Model, Summary)> {
    normalize(Model::load(path)?, &NormalizeOptions::default())
}

/// Normalizes `model` (see the module documentation). Returns the model unchanged
/// (the same value) when there is nothing to rewrite.
pub fn normalize(model: Model, options: &NormalizeOptions) -> Result<(Model, Summary)> {
    let mut summary = Summary::default();
    let name = model.path().to_string_lossy().into_owned();
    let base = model.base_dir().map(Path::to_path_buf);
    let ir = model.proto.ir_version.unwrap_or(0);

    // Rewrites that need no graph view.
    let mut proto = model.proto.clone();
    summary.functions_inlined = functions::inline(&mut proto);
    summary.branches_flattened = crate::branches::flatten(&mut proto);
    let Some(graph) = proto.graph.as_mut() else {
        return Err(model.error("model", "has no graph"));
    };
    summary.nodes_named = name_nodes(graph);
    let outputs: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    let lifted = lift_constants(&model, graph, &outputs, &mut summary)?;
    let overridable = initializer_inputs(graph, ir, options, &mut summary);
    rewrite_variadic(graph, &mut summary);
    drop_broadcast_expands(graph, &mut summary);
    omit_zero_states(graph, &mut summary);
    inference_dropouts(graph, &mut summary, model.opset());
    untie_statistics(graph, &mut summary);
    untie_uniform_constants(&model, graph, &mut summary);
    let decomposed = contrib::decompose(graph, model.opset(), &HashMap::new());
    summary.fused_rewritten = decomposed.fused;
    summary.experimental_rewritten = decomposed.experimental;
    untie_shape_concats(graph, &mut summary);

    // Folding, on a validated view of the model so far.
    let staged_opset = model.opset();
    let mut staged = Model::from_proto(proto, &name, base.clone())?;
    let has = |op: &'static str| move |g: &GraphProto| g.node.iter().any(|n| is_default_domain(n) && n.op() == op);
    // Branches of known conditions, again while inlining makes more conditions known
    // (one layer's branch gives the next layer's sizes).
    (staged, summary.branches_inlined) =
        in_rounds(staged, &name, &base, has("If"), |view, shapes| known_branches(view, &shapes), inline_known_branches)?;
    // Einsums of two operands as MatMuls (needs the shapes of their operands).
    if staged.proto.graph.as_ref().is_some_and(has("Einsum")) {
        let rewrites = {
            let view = Graph::new(&staged)?;
            einsum::plan(&view, &shape::infer(&view)?)
        };
        if !rewrites.is_empty() {
            let mut proto = staged.proto;
            if let Some(graph) = proto.graph.as_mut() {
                summary.einsums = einsum::apply(graph, rewrites);
            }
            staged = Model::from_proto(proto, &name, base.clone())?;
        }
    }
    // Opset 23's Attention and RotaryEmbedding (their forms need the operands' ranks and
    // head counts; a rotary embedding's output is the attention's input, of a rank
    // inference tells only once it is written out).
    (staged, summary.attention_rewritten) = in_rounds(
        staged,
        &name,
        &base,
        attention::pending,
        |_, shapes| shapes,
        |graph, shapes| attention::decompose(graph, &shapes, staged_opset),
    )?;
    // Sequences of a split read part by part, as Splits (the split axis's length comes from
    // inference; the layers after one split have shapes only once it is a Split).
    (staged, summary.sequence_splits) =
        in_rounds(staged, &name, &base, has("SplitToSequence"), |view, shapes| sequence::plan(view, &shapes), sequence::apply)?;
    // Packed [parts, heads, head_dim] projections, as slices reshaped into heads (needs the
    // projection's width and the target's entries).
    (staged, summary.packed_projections) = in_rounds(
        staged,
        &name,
        &base,
        packed::pending,
        |view, shapes| packed::plan(view, &shapes),
        |graph, planned| packed::apply(graph, planned, staged_opset),
    )?;
    // FusedMatMuls with transposed operands of ranks the file does not declare (onnxruntime
    // saves no value_info), with the ranks inference gives (one FusedMatMul's output may be
    // the next one's operand).
    let ranks = |view: &Graph<'_>, shapes: Shapes| -> HashMap<String, usize> {
        let pending = contrib::pending_matmul_operands(view.proto);
        pending.into_iter().filter_map(|v| Some((v.clone(), shapes.shape(&v)?.len()))).collect()
    };
    let fused_matmuls = |graph: &mut GraphProto, ranks: HashMap<String, usize>| contrib::decompose(graph, staged_opset, &ranks).fused;
    let pending_matmuls = |g: &GraphProto| !contrib::pending_matmul_operands(g).is_empty();
    let rewritten;
    (staged, rewritten) = in_rounds(staged, &name, &base, pending_matmuls, ranks, fused_matmuls)?;
    summary.fused_rewritten += rewritten;
    let (plan, splits, gathers, resizes, casts) = {
        let view = Graph::new(&staged)?;
        let shapes = shape::infer(&view)?;
        let plan = Folder::new(&staged, &view, &shapes, &overridable, &lifted).plan()?;
        (plan, equal_splits(&view, &shapes), view_gathers(&view, &shapes), resize_axes(&view, &shapes), noop_output_casts(&view, &shapes))
    };
    let mut proto = staged.proto;
    let Some(graph) = proto.graph.as_mut() else {
        return Err(model.error("model", "has no graph"));
    };
    plan.apply(graph, &mut summary);
    size_splits(graph, &splits, &mut summary);
    reshape_view_gathers(graph, &gathers, &mut summary);
    resize_only_changed_axes(graph, &resizes, &mut summary);
    drop_output_casts(graph, &casts, &mut summary);
    if ir < 4 && graph.initializer.iter().any(|t| !graph.input.iter().any(|i| i.name == t.name)) {
        proto.ir_version = Some(4);
        summary.ir_version_raised = Some((ir, 4));
    }

    let mut out = Model::from_proto(proto, &name, base.clone())?;
    tie_transposes(&mut out, &mut summary)?;
    let order = Graph::new(&out)?.order().to_vec();
    if order.iter().enumerate().any(|(i, &k)| i != k) {
        let mut proto = out.proto;
        if let Some(g) = proto.graph.as_mut() {
            let mut nodes: Vec<Option<NodeProto>> = std::mem::take(&mut g.node).into_iter().map(Some).collect();
            g.node = order.iter().filter_map(|&k| nodes.get_mut(k).and_then(Option::take)).collect();
        }
        summary.reordered = true;
        out = Model::from_proto(proto, &name, base.clone())?;
    }
    let out = symbolic_batch(out, &name, base, options.keep_fixed_batch.as_deref(), &mut summary)?;
    if summary.is_noop() {
        return Ok((model, summary));
    }
    Ok((out, summary))
}

/// Gives every node without a name (or with an empty one) a name of its own,
/// `<op>_<position>`; returns how many.
fn name_nodes(graph: &mut GraphProto) -> usize {
    if graph.node.iter().all(|n| n.name.as_deref().is_some_and(|s| !s.is_empty())) {
        return 0;
    }
    let mut names = Names::of(graph);
    let mut named = 0;
    for (i, node) in graph.node.iter_mut().enumerate() {
        if node.name.as_deref().is_none_or(str::is_empty) {
            node.name = Some(names.fresh(&format!("{}_{i}", node.op())));
            named += 1;
        }
    }
    named
}

/// Rewrites planned on the shapes of the model so far, in rounds while `pending` finds
/// something to rewrite and the last round rewrote some (a rewrite can make known the
/// shapes the next one needs). Returns the model and how many `apply` rewrote.
fn in_rounds<P>(
    mut staged: Model,
    name: &str,
    base: &Option<std::path::PathBuf>,
    pending: impl Fn(&GraphProto) -> bool,
    plan: impl Fn(&Graph<'_>, Shapes) -> P,
    apply: impl Fn(&mut GraphProto, P) -> usize,
) -> Result<(Model, usize)> {
    let mut total = 0;
    while staged.proto.graph.as_ref().is_some_and(&pending) {
        let planned = {
            let view = Graph::new(&staged)?;
            let shapes = shape::infer(&view)?;
            plan(&view, shapes)
        };
        let mut proto = staged.proto;
        let rewritten = proto.graph.as_mut().map_or(0, |graph| apply(graph, planned));
        staged = Model::from_proto(proto, name, base.clone())?;
        if rewritten == 0 {
            break;
        }
        total += rewritten;
    }
    Ok((staged, total))
}

/// An equal `Split` whose sizes the shapes tell: its first output, its sizes, and whether
/// they go in as input 1 (opset 13 on) or as the `split` attribute.
struct EqualSplit {
    first_output: String,
    sizes: Vec<i64>,
    as_input: bool,
}

/// Every equal `Split` (no sizes given) of a known axis length: the dynamo exporter's
/// `chunk` (`num_outputs`), whose parts could not lose different numbers of channels.
fn equal_splits(view: &Graph<'_>, shapes: &Shapes) -> Vec<EqualSplit> {
    let mut out = Vec::new();
    for (_, node) in view.nodes() {
        if !is_default_domain(node) || node.op() != "Split" {
            continue;
        }
        let Ok(Op::Split(split)) = Op::parse(view, node) else { continue };
        let Ok(resolved) = split.resolve(view, node, Some(shapes)) else { continue };
        if resolved.sizes.is_some() {
            continue;
        }
        let Some(dims) = node.input.first().and_then(|x| shapes.shape(x)) else { continue };
        let rank = dims.len() as i64;
        let axis = if resolved.axis < 0 { resolved.axis + rank } else { resolved.axis };
        let Some(len) = usize::try_from(axis).ok().and_then(|a| dims.get(a)).and_then(Dim::known) else { continue };
        let (Ok(sizes), Some(first)) = (resolved.sizes_for(len), node.output.first()) else { continue };
        out.push(EqualSplit { first_output: first.clone(), sizes, as_input: crate::ops::node_opset(view, node) >= 13 });
    }
    out
}

/// A `Gather` that only reshapes: the dynamo exporter writes `as_strided` of a contiguous
/// view (torchvision's ConvNeXt and Swin after their average pool) as `Gather(Reshape(x,
/// [-1]), indices)` with constant indices `0, 1, ..., n - 1` of the view's shape, which
/// fixes the batch in the indices and hides the channels from the analysis.
struct ViewGather {
    /// The Gather's output.
    output: String,
    /// What to reshape: the flattened tensor, or what the flatten read when its shape is
    /// static and holds the same elements.
    source: String,
    /// The view's shape (the indices' dimensions).
    dims: Vec<i64>,
}

/// Every [`ViewGather`]: axis 0 of a rank-1 tensor of known length `n`, indices an integer
/// initializer holding `0..n` in order.
fn view_gathers(view: &Graph<'_>, shapes: &Shapes) -> Vec<ViewGather> {
    let mut out = Vec::new();
    for (_, node) in view.nodes() {
        if !is_default_domain(node) || node.op() != "Gather" || node.attr_int("axis").ok().flatten().unwrap_or(0) != 0 {
            continue;
        }
        let (Some(data), Some(indices), Some(output)) = (node.input.first(), node.input.get(1), node.output.first()) else { continue };
        let Some(t) = view.initializer(indices) else { continue };
        let Ok(values) = view.model.tensor(t) else { continue };
        if !matches!(values.dtype(), DType::I64 | DType::I32) || values.shape.is_empty() || values.shape.contains(&0) {
            continue;
        }
        let n = values.numel();
        let ordered = values.to_f64_vec().iter().enumerate().all(|(k, &v)| v == k as f64);
        let known_len = shapes.static_shape(data).is_some_and(|d| d.len() == 1 && usize::try_from(d[0]).ok() == Some(n));
        if !ordered || !known_len {
            continue;
        }
        let flattened_from =
            view.producer_node(data).map(|(_, p)| p).filter(|p| is_default_domain(p) && p.op() == "Reshape").and_then(|p| p.input.first());
        let whole = |x: &String| {
            shapes.static_shape(x).is_some_and(|d| {
                d.iter().map(|&v| usize::try_from(v).unwrap_or(usize::MAX)).try_fold(1usize, |a, v| a.checked_mul(v)) == Some(n)
            })
        };
        let source = flattened_from.filter(|x| whole(x)).unwrap_or(data).clone();
        let dims = values.shape.iter().map(|&d| d as i64).collect();
        out.push(ViewGather { output: output.clone(), source, dims });
    }
    out
}

/// Writes each [`ViewGather`] as `Reshape(source, dims)`; its indices go when nothing else
/// reads them.
fn reshape_view_gathers(graph: &mut GraphProto, gathers: &[ViewGather], summary: &mut Summary) {
    if gathers.is_empty() {
        return;
    }
    let mut names = Names::of(graph);
    let mut added = Vec::new();
    let mut dropped = Vec::new();
    for g in gathers {
        let Some(node) = graph.node.iter_mut().find(|n| n.output.first() == Some(&g.output)) else { continue };
        let shape = names.fresh(&format!("{}_shape", g.output));
        added.push(Tensor::from_i64s(g.dims.clone()).to_proto(&shape));
        dropped.push(node.input.get(1).cloned().unwrap_or_default());
        node.op_type = Some("Reshape".into());
        node.input = vec![g.source.clone(), shape];
        node.attribute.clear();
        summary.view_gathers += 1;
    }
    let read: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializer.retain(|t| t.name.as_ref().is_none_or(|n| !dropped.contains(n) || read.contains(n)));
    graph.initializer.extend(added);
}

/// A `Resize` (opset >= 18) whose constant `sizes` repeat the input's own size on some
/// axes (the dynamo exporter writes `F.interpolate(x, size=(h, w))` as sizes
/// `[N, C, h, w]`, the batch and the channel count fixed in them), and the axes it resizes.
struct ResizeAxes {
    /// The Resize's output.
    output: String,
    /// The axes whose size changes, and their sizes.
    axes: Vec<i64>,
    sizes: Vec<i64>,
}

/// Every [`ResizeAxes`]: sizes for every axis, a static input, the default aspect policy
/// (`stretch`) and not `tf_crop_and_resize` (whose region would need the axes too). An axis
/// resized to its own size is left as it is by any mode (the sample positions are the
/// input's own), so listing only the others in `axes` computes the same.
fn resize_axes(view: &Graph<'_>, shapes: &Shapes) -> Vec<ResizeAxes> {
    let mut out = Vec::new();
    for (_, node) in view.nodes() {
        if !is_default_domain(node) || node.op() != "Resize" || crate::ops::node_opset(view, node) < 18 {
            continue;
        }
        let Ok(Op::Resize(r)) = Op::parse(view, node) else { continue };
        if r.axes.is_some() || r.coordinate == Coordinate::TfCropAndResize || r.policy != AspectPolicy::Stretch {
            continue;
        }
        let (Some(x), Some(sizes), Some(output)) = (node.input.first(), node.input.get(3), node.output.first()) else { continue };
        let (Some(xd), Ok(Some(sizes))) = (shapes.static_shape(x), view.constant_ints(sizes)) else { continue };
        if sizes.len() != xd.len() {
            continue;
        }
        let (axes, sizes): (Vec<i64>, Vec<i64>) =
            sizes.iter().zip(&xd).enumerate().filter(|(_, (s, d))| s != d).map(|(i, (&s, _))| (i as i64, s)).unzip();
        if axes.is_empty() || axes.len() == xd.len() {
            continue;
        }
        out.push(ResizeAxes { output: output.clone(), axes, sizes });
    }
    out
}

/// `Cast`s that write a graph output from a value of the type they cast to, made by a
/// node (not an input, an initializer or another output) that no subgraph reads by name:
/// `(output, input)` pairs.
fn noop_output_casts(view: &Graph<'_>, shapes: &Shapes) -> Vec<(String, String)> {
    let mut subgraph_reads = HashSet::new();
    for (_, node) in view.nodes() {
        crate::graph::subgraph_reads(node, &mut subgraph_reads);
    }
    let mut out = Vec::new();
    for (_, node) in view.nodes() {
        if !is_default_domain(node) || node.op() != "Cast" {
            continue;
        }
        let (Some(x), Some(y)) = (node.input.first(), node.output.first()) else { continue };
        let to = node.attr_int("to").ok().flatten().and_then(|t| i32::try_from(t).ok()).and_then(DType::from_onnx);
        let made_by_node = view.producer_node(x).is_some();
        if view.is_output(y) && !view.is_output(x) && made_by_node && !subgraph_reads.contains(x) && to.is_some() && shapes.dtype(x) == to {
            out.push((y.clone(), x.clone()));
        }
    }
    out
}

/// Drops the `Cast`s of [`noop_output_casts`]: the node that made the input writes the
/// output, and the input's other readers read it.
fn drop_output_casts(graph: &mut GraphProto, casts: &[(String, String)], summary: &mut Summary) {
    for (output, input) in casts {
        let Some(at) = graph.node.iter().position(|n| n.op_type.as_deref() == Some("Cast") && n.output.first() == Some(output)) else {
            continue;
        };
        graph.node.remove(at);
        for n in graph.node.iter_mut() {
            for v in n.output.iter_mut().chain(n.input.iter_mut()).filter(|v| *v == input) {
                *v = output.clone();
            }
        }
        graph.value_info.retain(|v| v.name.as_ref() != Some(input));
        summary.output_casts += 1;
    }
}

/// Gives each [`ResizeAxes`] its `axes` and the sizes of those axes only.
fn resize_only_changed_axes(graph: &mut GraphProto, resizes: &[ResizeAxes], summary: &mut Summary) {
    if resizes.is_empty() {
        return;
    }
    let mut names = Names::of(graph);
    let mut added = Vec::new();
    for r in resizes {
        let Some(node) = graph.node.iter_mut().find(|n| n.output.first() == Some(&r.output)) else { continue };
        let sizes = names.fresh(&format!("{}_sizes", r.output));
        added.push(Tensor::from_i64s(r.sizes.clone()).to_proto(&sizes));
        if let Some(slot) = node.input.get_mut(3) {
            *slot = sizes;
        }
        node.attribute.push(crate::builder::Attr::Ints(r.axes.clone()).to_proto("axes"));
        summary.resize_axes += 1;
    }
    graph.initializer.extend(added);
}

/// Gives the Splits of [`equal_splits`] their sizes (the same parts, written out).
fn size_splits(graph: &mut GraphProto, splits: &[EqualSplit], summary: &mut Summary) {
    if splits.is_empty() {
        return;
    }
    let mut names = Names::of(graph);
    let mut added = Vec::new();
    for s in splits {
        let Some(node) = graph.node.iter_mut().find(|n| n.output.first() == Some(&s.first_output)) else { continue };
        node.attribute.retain(|a| !matches!(a.name.as_deref(), Some("num_outputs" | "split")));
        if s.as_input {
            let name = names.fresh(&format!("{}_sizes", s.first_output));
            added.push(Tensor::from_i64s(s.sizes.clone()).to_proto(&name));
            node.input.truncate(1);
            node.input.push(name);
        } else {
            node.attribute.push(AttributeProto {
                name: Some("split".into()),
                r#type: Some(AttributeType::Ints as i32),
                ints: s.sizes.clone(),
                ..Default::default()
            });
        }
        summary.splits_sized += 1;
    }
    graph.initializer.extend(added);
}

/// The bit patterns of a float tensor's elements, read where they are stored (raw or
/// external bytes are not decoded or copied).
enum Bits<'t> {
    Raw(bytes::Bytes, usize),
    F32(&'t [f32]),
    F64(&'t [f64]),
    /// f16 and bf16 stored widened in `int32_data`.
    Narrow(&'t [i32]),
}

impl<'t> Bits<'t> {
    /// The elements of a float tensor holding `numel` of them; `None` for other types
    /// or data of the wrong length (reported by the later stages).
    fn of(model: &Model, t: &'t TensorProto, numel: usize) -> Result<Option<Bits<'t>>> {
        let Some(dtype) = dtype_of(t).filter(|d| d.is_float()) else { return Ok(None) };
        let bits = if crate::model::is_external(t) || t.raw_data.is_some() {
            let Some(bytes) = model.tensor_bytes(t)? else { return Ok(None) };
            (Some(bytes.len()) == numel.checked_mul(dtype.size())).then_some(Bits::Raw(bytes, dtype.size()))
        } else {
            match dtype {
                DType::F32 => (t.float_data.len() == numel).then_some(Bits::F32(&t.float_data)),
                DType::F64 => (t.double_data.len() == numel).then_some(Bits::F64(&t.double_data)),
                _ => (t.int32_data.len() == numel).then_some(Bits::Narrow(&t.int32_data)),
            }
        };
        Ok(bits)
    }

    /// Element `i`'s bit pattern (`i` < the element count given to [`Bits::of`]).
    fn get(&self, i: usize) -> u64 {
        match self {
            Bits::Raw(b, size) => {
                let at = i * size;
                b.get(at..at + size).map_or(0, |s| s.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
            }
            Bits::F32(v) => v.get(i).map_or(0, |x| u64::from(x.to_bits())),
            Bits::F64(v) => v.get(i).map_or(0, |x| x.to_bits()),
            Bits::Narrow(v) => v.get(i).map_or(0, |&x| u64::from(x as u16)),
        }
    }
}

/// Linear positions, in a matrix `[a, b]`, sampled before a full comparison.
fn sample_positions(a: usize, b: usize) -> Vec<usize> {
    const SAMPLES: usize = 8;
    let numel = a * b;
    (0..SAMPLES).map(|k| k * (numel / SAMPLES)).chain([numel - 1, 1.min(numel - 1)]).collect()
}

/// Whether `w` ([a, b]) equals the transpose of `e` ([b, a]) bit for bit, every element
/// compared, with an early exit.
fn transposed_equal(w: &Bits, e: &Bits, a: usize, b: usize) -> bool {
    (0..a * b).all(|i| w.get(i) == e.get((i % b) * a + i / b))
}

/// Step 6 of the module documentation: initializers equal to the transpose of another
/// weight become a `Transpose` of it. Each matrix is read at 2 x 10 sampled positions
/// once (as a possible tied weight and as a possible source, in the source's layout);
/// only pairs whose samples agree are compared in full.
fn tie_transposes(model: &mut Model, summary: &mut Summary) -> Result<()> {
    let ties: Vec<(String, String)> = {
        let Some(g) = model.proto.graph.as_ref() else { return Ok(()) };
        // Per value: (readers, whether every reader reads it as MatMul input 1).
        let mut readers: HashMap<&str, (usize, bool)> = HashMap::new();
        let mut outer = HashSet::new();
        for n in &g.node {
            subgraph_reads(n, &mut outer);
            for (k, v) in n.input.iter().enumerate() {
                let r = readers.entry(v.as_str()).or_insert((0, true));
                r.0 += 1;
                r.1 &= k == 1 && n.op() == "MatMul" && is_default_domain(n);
            }
        }
        let io: HashSet<&str> = g.input.iter().chain(&g.output).filter_map(|v| v.name.as_deref()).collect();
        // Rank-2 float initializers read by a node: (index, rows, columns).
        let mut matrices = Vec::new();
        for (k, t) in g.initializer.iter().enumerate() {
            let name = t.name.as_deref().unwrap_or("");
            let [r, c] = t.dims.as_slice() else { continue };
            let (Ok(r), Ok(c)) = (usize::try_from(*r), usize::try_from(*c)) else { continue };
            let float = dtype_of(t).is_some_and(DType::is_float);
            if float && r > 0 && c > 0 && readers.contains_key(name) && !io.contains(name) && !outer.contains(name) {
                matrices.push((k, r, c));
            }
        }
        // Possible tied weights (read only as MatMul weights, not constant at the samples)
        // keyed by their samples; possible sources keyed by the same positions transposed.
        type Key = (i32, usize, usize, Vec<u64>);
        let mut sources: HashMap<Key, Vec<usize>> = HashMap::new();
        let mut tied: Vec<(usize, Key)> = Vec::new();
        for &(k, r, c) in &matrices {
            let t = &g.initializer[k];
            let Some(numel) = r.checked_mul(c) else { continue };
            let Some(bits) = Bits::of(model, t, numel)? else { continue };
            let dtype = t.data_type.unwrap_or(0);
            // As a source [r, c] of a weight [c, r]: its samples in the weight's layout.
            let as_source = sample_positions(c, r).iter().map(|&i| bits.get((i % r) * c + i / r)).collect();
            sources.entry((dtype, c, r, as_source)).or_default().push(k);
            let name = t.name.as_deref().unwrap_or("");
            if readers.get(name).is_some_and(|x| x.1) {
                let samples: Vec<u64> = sample_positions(r, c).iter().map(|&i| bits.get(i)).collect();
                if samples.iter().any(|&v| v != samples[0]) {
                    tied.push((k, (dtype, r, c, samples)));
                }
            }
        }
        let (mut replaced, mut used) = (HashSet::new(), HashSet::new());
        let mut ties = Vec::new();
        for (k, key) in &tied {
            let Some(candidates) = sources.get(key) else { continue };
            if used.contains(k) {
                continue;
            }
            let (a, b) = (key.1, key.2);
            let w = &g.initializer[*k];
            let Some(wb) = Bits::of(model, w, a * b)? else { continue };
            for &j in candidates {
                if j == *k || replaced.contains(&j) {
                    continue;
                }
                let e = &g.initializer[j];
                let Some(eb) = Bits::of(model, e, a * b)? else { continue };
                if transposed_equal(&wb, &eb, a, b) {
                    replaced.insert(*k);
                    used.insert(j);
                    ties.push((w.name.clone().unwrap_or_default(), e.name.clone().unwrap_or_default()));
                    break;
                }
            }
        }
        ties
    };
    if ties.is_empty() {
        return Ok(());
    }
    let Some(g) = model.proto.graph.as_mut() else { return Ok(()) };
    let mut names = Names::of(g);
    let tied: HashSet<&str> = ties.iter().map(|(w, _)| w.as_str()).collect();
    g.initializer.retain(|t| !t.name.as_deref().is_some_and(|n| tied.contains(n)));
    g.value_info.retain(|v| !v.name.as_deref().is_some_and(|n| tied.contains(n)));
    let nodes: Vec<NodeProto> = ties
        .iter()
        .map(|(w, e)| NodeProto {
            op_type: Some("Transpose".into()),
            name: Some(names.fresh(&format!("{w}_tied_transpose"))),
            input: vec![e.clone()],
            output: vec![w.clone()],
            attribute: vec![crate::proto::AttributeProto {
                name: Some("perm".into()),
                r#type: Some(crate::proto::attribute_proto::AttributeType::Ints as i32),
                ints: vec![1, 0],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    g.node.splice(0..0, nodes);
    summary.tied_transposes = ties.len();
    Ok(())
}

/// The first dimension of a declared tensor type, if any.
fn dim0(v: &ValueInfoProto) -> Option<&DimValue> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(tt) => tt.shape.as_ref()?.dim.first()?.value.as_ref(),
        _ => None,
    }
}

fn set_dim0(v: &mut ValueInfoProto, d: DimValue) {
    if let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        if let Some(first) = tt.shape.as_mut().and_then(|s| s.dim.first_mut()) {
            first.value = Some(d);
        }
    }
}

/// Step 7 of the module documentation: a fixed batch made symbolic where exact.
fn symbolic_batch(model: Model, name: &str, base: Option<std::path::PathBuf>, keep: Option<&str>, summary: &mut Summary) -> Result<Model> {
    let (reals, n): (Vec<String>, i64) = {
        let view = Graph::new(&model)?;
        let firsts: Vec<Option<&DimValue>> = view.real_inputs().map(dim0).collect();
        let n = match firsts.first() {
            Some(Some(DimValue::DimValue(n))) if *n >= 1 => *n,
            _ => return Ok(model),
        };
        if !firsts.iter().all(|d| *d == Some(&DimValue::DimValue(n))) {
            return Ok(model);
        }
        (view.real_inputs().filter_map(|v| v.name.clone()).collect(), n)
    };
    if reals.is_empty() {
        return Ok(model);
    }
    summary.fixed_batch = Some(n);
    if let Some(why) = keep {
        summary.batch_kept = Some(why.to_string());
        return Ok(model);
    }
    match batch_rewrite(&model, &reals, n, name, base)? {
        Ok((out, reshapes, expands)) => {
            summary.batch_symbolic = true;
            summary.batch_reshapes = reshapes;
            summary.batch_expands = expands;
            Ok(out)
        }
        Err(why) => {
            summary.batch_kept = Some(why);
            Ok(model)
        }
    }
}

/// The model with the batch made symbolic, the number of Reshape targets rewritten and of
/// inputs expanded to the batch,
/// or why that would not be exact.
fn batch_rewrite(
    model: &Model,
    reals: &[String],
    n: i64,
    name: &str,
    base: Option<std::path::PathBuf>,
) -> Result<std::result::Result<(Model, usize, usize), String>> {
    let fixed = DimValue::DimValue(n);
    let before = {
        let view = Graph::new(model)?;
        shape::infer(&view).ok()
    };
    let mut proto = model.proto.clone();
    let Some(g) = proto.graph.as_mut() else {
        return Err(model.error("model", "has no graph"));
    };
    let sym = DimValue::DimParam(BATCH_DIM.to_string());
    for v in g.input.iter_mut().filter(|v| v.name.as_ref().is_some_and(|n| reals.contains(n))) {
        set_dim0(v, sym.clone());
    }
    for v in g.output.iter_mut().filter(|v| dim0(v) == Some(&fixed)) {
        set_dim0(v, sym.clone());
    }
    // Declared intermediate shapes hold the fixed batch, at dimension 0 or folded into
    // another (`[16, 64]`, batch times sequence): every computed value's goes (onnxruntime
    // plans its buffers with them), the weights' stay.
    let stored: HashSet<String> = g.initializer.iter().filter_map(|t| t.name.clone()).collect();
    g.value_info.retain(|v| v.name.as_ref().is_some_and(|n| stored.contains(n)) && dim0(v) != Some(&fixed));
    let mut staged = Model::from_proto(proto, name, base.clone())?;
    let batch = Dim::sym(BATCH_DIM);
    let (mut rewritten, mut expanded) = (0usize, 0usize);
    // Rounds until no target changes: a Reshape sees the batch only once the Reshapes
    // before it pass it on. Each round rewrites targets that the next rounds leave alone.
    for _round in 0..=staged.proto.graph.as_ref().map_or(0, |g| g.node.len()) {
        // (node index, input slot, new constant) for every Reshape whose target carries the
        // batch: the target itself when constant, else the constant first piece of the
        // `Concat` that computes it (`x.view(B, H // 7, 7, ...)` traced with `B` a number).
        let mut targets: Vec<(usize, usize, Vec<i64>)> = Vec::new();
        // Reshapes with `allowzero = 1` whose new entry 0 is a 0 that must copy the batch.
        let mut copy_zero: Vec<usize> = Vec::new();
        // Inputs with the batch N that an operator without broadcasting reads beside the
        // batch, and how each gets it.
        let mut expands: Vec<Unbroadcast> = Vec::new();
        // The Reshapes and Expands given a new target this round, and the [`batch_entry`]
        // ones, which wait for those upstream of them (whose shapes this round's inference
        // does not know yet: a target's -1 may still hold the batch).
        let mut changed: HashSet<usize> = HashSet::new();
        let mut late: Vec<(usize, Vec<i64>)> = Vec::new();
        {
            let view = Graph::new(&staged)?;
            let shapes = match shape::infer(&view) {
                Ok(s) => s,
                Err(e) => return Ok(Err(format!("shapes with a symbolic batch cannot be inferred: {e}"))),
            };
            for (k, node) in view.nodes() {
                if let Some(new) = expand_target_with_batch(&view, &shapes, node, n)? {
                    targets.push((k, 1, new));
                    changed.insert(k);
                    continue;
                }
                // Every node parsed when the shapes were inferred just above.
                let Op::Reshape { allowzero } = Op::parse(&view, node)? else { continue };
                let Some(target_value) = node.input.get(1) else { continue };
                let constant = view.constant_ints(target_value)?;
                let computed = || -> Option<Vec<i64>> { shapes.shape_value(target_value)?.iter().map(Dim::known).collect() };
                let Some(target) = constant.clone().or_else(computed) else { continue };
                let Some(xd) = shapes.shape(&node.input[0]) else { continue };
                // A constant target of positive sizes: the entry that holds the batch
                // where the input carries it on any axis, on its own or with the sizes
                // it was merged with, gets -1 (sequence-first attention, `[S, N, E]`).
                let exact_zero = xd.first() == Some(&batch) && target.first() == Some(&n);
                if let (Some(_), false) = (&constant, exact_zero) {
                    if let Some(q) = batch_entry(xd, &target, n, &batch) {
                        let mut new = target.clone();
                        new[q] = -1;
                        late.push((k, new));
                        continue;
                    }
                }
                // Entry 0 becomes 0 (copy the batch) where the input's dimension 0 is the batch;
                // -1 where it is a multiple of it (`[batch * 64, 49, 96]`, windows of an image)
                // and the target, all constant, holds N samples' elements with entry 0 the
                // multiple of N: then the batch goes where it came from.
                let Some(entry0) = (match xd.first() {
                    Some(d) if *d == batch && target.first() == Some(&n) => Some(0),
                    Some(d) if d.symbols().contains(&BATCH_DIM) => folded_batch(xd, &target, n, &batch),
                    _ => None,
                }) else {
                    continue;
                };
                let rest: Option<Vec<i64>> = xd[1..].iter().map(Dim::known).collect();
                // `allowzero` only tells what a 0 entry means: a target without one reads
                // the same either way, and its Reshape may take the 0 of the batch.
                let zero_free = !target.contains(&0);
                let exact = entry0 == -1
                    || (!allowzero || zero_free)
                        && rest.is_some_and(|rest| {
                            let have: Option<i64> = rest.iter().try_fold(1i64, |a, &b| a.checked_mul(b));
                            let mut want = Some(1i64);
                            let mut free = false;
                            for (i, &t) in target.iter().enumerate().skip(1) {
                                let d = match t {
                                    -1 => {
                                        free = true;
                                        1
                                    }
                                    0 => rest.get(i - 1).copied().unwrap_or(-1),
                                    t => t,
                                };
                                want = want.and_then(|w| if d >= 1 { w.checked_mul(d) } else { None });
                            }
                            match (have, want) {
                                (Some(h), Some(w)) if free => h % w == 0,
                                (Some(h), Some(w)) => h == w,
                                _ => false,
                            }
                        });
                if !exact {
                    let label = node_label(node);
                    return Ok(Err(format!(
                        "{label} mixes the batch into other axes (target {target:?} for input shape {})",
                        show_dims(Some(xd))
                    )));
                }
                if allowzero && entry0 == 0 {
                    copy_zero.push(k);
                }
                changed.insert(k);
                if constant.is_some() {
                    let mut new = target.clone();
                    new[0] = entry0;
                    targets.push((k, 1, new));
                    continue;
                }
                match first_piece(&view, &shapes, target_value, target[0])? {
                Some((concat, mut piece)) => {
                    piece[0] = entry0;
                    targets.push((concat, 0, piece));
                }
                None => {
                    return Ok(Err(format!(
                        "{} takes the batch {n} as entry 0 of a target computed at run time ('{target_value}'), not from a constant it could rewrite",
                        node_label(node)
                    )))
                }
            }
            }
            let waiting: Vec<usize> = changed.iter().copied().chain(late.iter().map(|(k, _)| *k)).collect();
            let after = downstream_of(&view, &waiting);
            targets.extend(late.into_iter().filter(|(k, _)| !after.contains(k)).map(|(k, new)| (k, 1, new)));
        }
        if targets.is_empty() {
            // Operators that do not broadcast (GatherElements, Concat...) need the batch on
            // every input that has it on one: an Expand of a constant to N rows gets its
            // first entry from the batch; any other such input keeps the batch fixed.
            let view = Graph::new(&staged)?;
            let shapes = match shape::infer(&view) {
                Ok(s) => s,
                Err(e) => return Ok(Err(format!("shapes with a symbolic batch cannot be inferred: {e}"))),
            };
            match unbroadcast_batch(&view, &shapes, n)? {
                Ok(found) => expands = found,
                Err(why) => return Ok(Err(why)),
            }
        }
        let mut proto = staged.proto;
        let Some(g) = proto.graph.as_mut() else {
            return Err(model.error("model", "has no graph"));
        };
        let mut names = Names::of(g);
        if let (Some(input), false) = (reals.first(), expands.is_empty()) {
            let index = names.fresh("batch_index");
            g.initializer.push(Tensor::from_i64s(vec![0]).to_proto(&index));
            let shape = names.fresh(&format!("{input}_shape"));
            let first = names.fresh(&format!("{input}_batch"));
            let mut added =
                vec![node_of("Shape", &[input.as_str()], &shape, &[]), node_of("Gather", &[shape.as_str(), index.as_str()], &first, &[])];
            for edit in &expands {
                let (k, slot, head, rest) = match edit {
                    Unbroadcast::Target(k, rest) => (*k, 1, Vec::new(), rest),
                    Unbroadcast::Rows(k, slot, axis, rest) => (*k, *slot, vec![1; *axis], rest),
                };
                let Some(old) = g.node.get(k).and_then(|n| n.input.get(slot)).cloned() else { continue };
                let mut pieces = Vec::new();
                if !head.is_empty() {
                    let ones = names.fresh(&format!("{old}_head"));
                    g.initializer.push(Tensor::from_i64s(head).to_proto(&ones));
                    pieces.push(ones);
                }
                pieces.push(first.clone());
                let tail = names.fresh(&format!("{old}_rest"));
                g.initializer.push(Tensor::from_i64s(rest.clone()).to_proto(&tail));
                pieces.push(tail);
                let target = names.fresh(&format!("{old}_batch"));
                let axis =
                    AttributeProto { name: Some("axis".into()), r#type: Some(AttributeType::Int as i32), i: Some(0), ..Default::default() };
                let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
                added.push(node_of("Concat", &pieces, &target, &[axis]));
                let new_input = match edit {
                    Unbroadcast::Target(..) => target,
                    Unbroadcast::Rows(..) => {
                        let rows = names.fresh(&format!("{old}_rows"));
                        added.push(node_of("Expand", &[old.as_str(), target.as_str()], &rows, &[]));
                        rows
                    }
                };
                if let Some(input) = g.node.get_mut(k).and_then(|n| n.input.get_mut(slot)) {
                    *input = new_input;
                }
            }
            // They read a graph input and constants only: first in topological order.
            added.extend(std::mem::take(&mut g.node));
            g.node = added;
        }
        for (k, slot, new) in &targets {
            let Some(old) = g.node.get(*k).and_then(|n| n.input.get(*slot)).cloned() else { continue };
            let readers = g.node.iter().filter(|n| n.input.contains(&old)).count();
            let is_output = g.output.iter().any(|o| o.name.as_deref() == Some(old.as_str()));
            let stored = g.initializer.iter().any(|t| t.name.as_deref() == Some(old.as_str()));
            // A constant with this one reader: rewritten in place; otherwise (a constant read
            // elsewhere too, a computed entry) a constant of its own.
            let target = if stored && readers == 1 && !is_output { old.clone() } else { names.fresh(&format!("{old}_batch")) };
            g.initializer.retain(|t| t.name.as_deref() != Some(target.as_str()));
            g.initializer.push(Tensor::from_i64s(new.clone()).to_proto(&target));
            if let Some(input) = g.node.get_mut(*k).and_then(|n| n.input.get_mut(*slot)) {
                *input = target;
            }
        }
        for k in &copy_zero {
            if let Some(node) = g.node.get_mut(*k) {
                node.attribute.retain(|a| a.name.as_deref() != Some("allowzero"));
            }
        }
        staged = Model::from_proto(proto, name, base.clone())?;
        if targets.is_empty() && expands.is_empty() {
            break;
        }
        rewritten += targets.len();
        expanded += expands.len();
    }
    let out = staged;
    {
        let view = Graph::new(&out)?;
        let shapes = match shape::infer(&view) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("shapes with a symbolic batch cannot be inferred: {e}"))),
        };
        for o in view.proto.output.iter().filter_map(|o| o.name.as_deref()) {
            match shapes.shape(o) {
                Some(d) if d.first() == Some(&batch) => {}
                d => return Ok(Err(format!("graph output '{o}' would not carry the batch (its shape would be {})", show_dims(d)))),
            }
        }
        // A Reshape that takes the batch in and gives none out fits only the batch N (a
        // target computed from sizes that do not follow it): with N = 1 the check below
        // cannot see it, as a batch of 1 broadcasts.
        for (_, node) in view.nodes() {
            if node.op() != "Reshape" || !is_default_domain(node) {
                continue;
            }
            let holds_batch = |v: &str| shapes.shape(v).is_some_and(|d| d.iter().any(|x| x.symbols().contains(&BATCH_DIM)));
            let (Some(x), Some(y)) = (node.input.first(), node.output.first()) else { continue };
            if holds_batch(x) && shapes.shape(y).is_some() && !holds_batch(y) {
                return Ok(Err(format!(
                    "{} takes the batch into a shape that does not follow it ({} -> {})",
                    node_label(node),
                    show_dims(shapes.shape(x)),
                    show_dims(shapes.shape(y))
                )));
            }
        }
        // Every value that had the batch N as its dimension 0 must now carry the symbolic
        // batch there (a batch of 1 broadcasts whatever the batch: only from N = 2 on).
        if let (Some(before), true) = (&before, n >= 2) {
            let mut lost: Vec<(&String, &[Dim])> = shapes
                .types
                .iter()
                .filter(|(v, t)| {
                    view.initializer(v).is_none()
                        && t.dtype.is_some_and(DType::is_float)
                        && before.shape(v).and_then(<[Dim]>::first) == Some(&Dim::Known(n))
                })
                .filter_map(|(v, t)| Some((v, t.shape.as_deref()?)))
                .filter(|(_, d)| d.first() != Some(&batch))
                .collect();
            lost.sort_by(|a, b| a.0.cmp(b.0));
            if let Some((value, d)) = lost.first() {
                return Ok(Err(format!("value '{value}' would keep the fixed batch {n} (its shape would be {})", show_dims(Some(d)))));
            }
        }
    }
    // At another concrete batch every size is a number again: shape inference then checks
    // what it could not with a symbol (a broadcast of 16 rows against 32, a Reshape whose
    // element counts differ), as onnxruntime would at that batch.
    let other = if n == 2 { 3 } else { 2 };
    let mut concrete = out.proto.clone();
    if let Some(g) = concrete.graph.as_mut() {
        for v in g.input.iter_mut().filter(|v| v.name.as_ref().is_some_and(|n| reals.contains(n))) {
            set_dim0(v, DimValue::DimValue(other));
        }
        g.output.iter_mut().for_each(|o| set_dim0(o, DimValue::DimParam(BATCH_DIM.to_string())));
    }
    let concrete = Model::from_proto(concrete, name, out.base_dir().map(Path::to_path_buf))?;
    if let Err(e) = shape::infer(&Graph::new(&concrete)?) {
        return Ok(Err(format!("at a batch of {other}: {e}")));
    }
    Ok(Ok((out, rewritten, expanded)))
}

/// `Some(-1)` when a Reshape of an input of shape `xd` (its dimension 0 a multiple of the
/// batch, every other known) to the constant `target` (no `0` or `-1` entries) keeps `n`
/// samples' elements and entry 0 is a multiple of `n`: entry 0 then holds the batch.
fn folded_batch(xd: &[Dim], target: &[i64], n: i64, batch: &Dim) -> Option<i64> {
    let per_sample = Dim::product(xd).ok()?.div_exact(batch)?.known()?;
    if target.iter().any(|&t| t < 1) || target.first().is_none_or(|t| t % n != 0) {
        return None;
    }
    let elements = target.iter().try_fold(1i64, |a, &b| a.checked_mul(b))?;
    (Some(elements) == per_sample.checked_mul(n)).then_some(-1)
}

/// The nodes that depend on any of `nodes` (through the values they read); one of `nodes`
/// is among them only when it depends on another.
fn downstream_of(view: &Graph<'_>, nodes: &[usize]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut pending: Vec<usize> = nodes.to_vec();
    while let Some(i) = pending.pop() {
        for output in &view.node(i).output {
            for u in view.consumers(output) {
                if seen.insert(u.node) {
                    pending.push(u.node);
                }
            }
        }
    }
    seen
}

/// The entry of a Reshape's constant target `target` (sizes at the fixed batch `n`, all
/// positive) that holds the batch, when the input `xd` carries it on one axis `p`, as
/// `k * batch` with every other size known. In the row-major order of the elements the
/// batch starts after the `P` elements of the axes before `p` (or, merged with `k`, after
/// `k` times that: a merged axis may hold it as its outer or inner factor). Taken in this
/// order: an axis of its own (size `n`, starting after `P`); the outer factor of the next
/// axis (`[S, N * H, D]` from `[S, N, E]`), unless that is the last axis (the features);
/// the inner factor of the axis ending there (`[S * N, E]` from `[S, N, H, D]`). Which
/// choice fits is not decided by the sizes at a batch of 1: the shapes at a batch of 2
/// and, when a command loads the file, onnxruntime check what comes out.
fn batch_entry(xd: &[Dim], target: &[i64], n: i64, batch: &Dim) -> Option<usize> {
    let p = xd.iter().position(|d| d.symbols().contains(&BATCH_DIM))?;
    let k = xd[p].div_exact(batch)?.known()?;
    let known = |dims: &[Dim]| dims.iter().try_fold(1i64, |a, d| a.checked_mul(d.known()?));
    let (outer, inner) = (known(&xd[..p])?, known(&xd[p + 1..])?);
    if k < 1 || n < 1 || target.iter().any(|&t| t < 1) {
        return None;
    }
    let total = target.iter().try_fold(1i64, |a, &t| a.checked_mul(t))?;
    if Some(total) != outer.checked_mul(k)?.checked_mul(n)?.checked_mul(inner) {
        return None;
    }
    let mut prefix = Vec::with_capacity(target.len() + 1);
    prefix.push(1i64);
    for &t in target {
        prefix.push(prefix.last()?.checked_mul(t)?);
    }
    let starts: Vec<i64> = if k == 1 { vec![outer] } else { vec![outer, outer.checked_mul(k)?] };
    let last = target.len() - 1;
    let own = starts.iter().find_map(|&start| (0..target.len()).find(|&q| prefix[q] == start && target[q] == n));
    let next = || starts.iter().find_map(|&start| (0..last).find(|&q| prefix[q] == start && target[q] % n == 0));
    let previous = || starts.iter().find_map(|&start| (0..target.len()).find(|&q| Some(prefix[q + 1]) == start.checked_mul(n)));
    own.or_else(next).or_else(previous)
}

/// The `Concat` (node index) computing the Reshape target `target` and its constant first
/// piece (or, where the first piece is one computed entry, `[n]` to replace it), when
/// that piece starts with entry 0 of the target, `n`, and the Concat computes nothing else
/// (its output is read once, by the Reshape): rewriting the piece then changes this
/// target alone.
fn first_piece(view: &Graph<'_>, shapes: &Shapes, target: &str, n: i64) -> Result<Option<(usize, Vec<i64>)>> {
    let Some((k, concat)) = view.producer_node(target) else { return Ok(None) };
    if concat.op() != "Concat" || !is_default_domain(concat) {
        return Ok(None);
    }
    let readers = view.proto.node.iter().filter(|m| m.input.iter().any(|i| i == target)).count();
    let is_output = view.proto.output.iter().any(|o| o.name.as_deref() == Some(target));
    let Some(first) = concat.input.first() else { return Ok(None) };
    if readers != 1 || is_output {
        return Ok(None);
    }
    match view.constant_ints(first)? {
        Some(piece) if view.initializer(first).is_some() && piece.first() == Some(&n) => Ok(Some((k, piece))),
        // A single computed entry (`B * nW` with `B` a number): replaced by a constant.
        _ if shapes.shape(first) == Some(&[Dim::Known(1)][..]) => Ok(Some((k, vec![n]))),
        _ => Ok(None),
    }
}

/// A node of the default domain with one output.
fn node_of(op: &str, inputs: &[&str], output: &str, attribute: &[AttributeProto]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(output.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attribute.to_vec(),
        ..Default::default()
    }
}

/// How an input of an operator that does not broadcast gets the batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Unbroadcast {
    /// The Expand (node index) of a one-row value takes its first target entry from the
    /// batch; the other entries are these.
    Target(usize, Vec<i64>),
    /// Input `slot` of the node (index), an initializer with one row along the batch's
    /// axis (the third field), is read through an Expand to `[1.., batch, rest...]` (ones
    /// before the axis, `rest` all ones after it).
    Rows(usize, usize, usize, Vec<i64>),
}

/// Inputs of operators that do not broadcast (`GatherElements`, `ScatterElements`,
/// `Concat` off its axis) whose dimension 0 is the fixed batch `n` where another input's
/// is the symbolic batch: `Ok` with how each gets the batch (an Expand of one row to `n`
/// takes the batch instead, a one-row initializer is expanded to it), else `Err` naming
/// the node. Also the initial states of a recurrent layer (`RNN`, `GRU`, `LSTM`) stored
/// for the batch 1 that the sequence no longer has (the dynamo exporter's zeros).
fn unbroadcast_batch(view: &Graph<'_>, shapes: &Shapes, n: i64) -> Result<std::result::Result<Vec<Unbroadcast>, String>> {
    let mut out: Vec<Unbroadcast> = Vec::new();
    let holds_batch = |d: &Dim| d.symbols().contains(&BATCH_DIM);
    for (k, node) in view.nodes() {
        if !is_default_domain(node) {
            continue;
        }
        if matches!(node.op(), "RNN" | "GRU" | "LSTM") {
            // Layout 0: X [seq, batch, in], states [directions, batch, hidden]; layout 1:
            // the batch first in both.
            let axis = if node.attr_int_or("layout", 0).unwrap_or(0) == 0 { 1 } else { 0 };
            let carried = shapes.shape(&node.input[0]).and_then(|d| d.get(axis)).is_some_and(holds_batch);
            for slot in [5, 6] {
                let Some(v) = node.input.get(slot).filter(|v| !v.is_empty() && carried) else { continue };
                // A state sized without the batch's symbol was sized for the fixed batch (on
                // its own, or folded with other axes: sequencer2d's rows times the batch).
                let Some(d) = shapes.shape(v).filter(|d| d.len() == 3 && !holds_batch(&d[axis])) else { continue };
                if n != 1 || d[axis] != Dim::Known(n) || view.initializer(v).is_none() || d.iter().any(|x| x.known().is_none()) {
                    return Ok(Err(format!(
                        "{} reads the initial state '{v}' sized for the batch fixed at {n} beside a sequence that carries the batch",
                        node_label(node)
                    )));
                }
                out.push(Unbroadcast::Rows(k, slot, axis, vec![1; 2 - axis]));
            }
            continue;
        }
        let (count, axis) = match node.op() {
            "GatherElements" => (2, node.attr_int_or("axis", 0).unwrap_or(0)),
            "ScatterElements" => (3, node.attr_int_or("axis", 0).unwrap_or(0)),
            "Concat" => (node.input.len(), node.attr_int_or("axis", 0).unwrap_or(0)),
            _ => continue,
        };
        let inputs: Vec<&String> = node.input.iter().take(count).collect();
        let dims: Vec<Option<&[Dim]>> = inputs.iter().map(|v| shapes.shape(v)).collect();
        let rank = dims.iter().flatten().map(|d| d.len()).max().unwrap_or(0) as i64;
        if rank == 0 || axis == 0 || axis == -rank || !dims.iter().flatten().any(|d| d.first().is_some_and(holds_batch)) {
            continue;
        }
        for (slot, (v, d)) in inputs.iter().zip(&dims).enumerate() {
            let Some(d) = d.filter(|d| d.first() == Some(&Dim::Known(n))) else { continue };
            let known_rest: Option<Vec<i64>> = d[1..].iter().map(Dim::known).collect();
            let expand = view.producer_node(v).and_then(|(e, expand)| {
                if expand.op() != "Expand" || !is_default_domain(expand) {
                    return None;
                }
                let target: Vec<i64> = shapes.shape_value(expand.input.get(1)?)?.iter().map(Dim::known).collect::<Option<_>>()?;
                let x = shapes.shape(expand.input.first()?)?;
                let one_row = x.len() < target.len() || x.first() == Some(&Dim::Known(1));
                (target.first() == Some(&n) && one_row).then(|| Unbroadcast::Target(e, target[1..].to_vec()))
            });
            // Ones after the batch: the initializer's own sizes broadcast, so the target
            // names no channel count (a class token's width is cut with its channels).
            let rows = (n == 1 && view.initializer(v).is_some() && known_rest.is_some())
                .then(|| Unbroadcast::Rows(k, slot, 0, vec![1; d.len().saturating_sub(1)]));
            match expand.or(rows) {
                Some(r) => out.push(r),
                None => {
                    return Ok(Err(format!(
                        "{} reads '{v}' with the batch fixed at {n} beside inputs that carry the batch, and does not broadcast",
                        node_label(node)
                    )))
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(Ok(out))
}

/// The new constant target of an `Expand` whose input carries the batch (possibly folded:
/// Swin V2's `49 * batch` windows) on an axis where the constant target holds that axis's
/// size at the fixed batch `n`: a 1 there, which keeps the input's size at any batch (the
/// same at `n`). `None` when the node is no such Expand.
fn expand_target_with_batch(view: &Graph<'_>, shapes: &Shapes, node: &NodeProto, n: i64) -> Result<Option<Vec<i64>>> {
    if !is_default_domain(node) || node.op() != "Expand" {
        return Ok(None);
    }
    let (Some(x), Some(target_value)) = (node.input.first(), node.input.get(1)) else { return Ok(None) };
    let Some(target) = view.constant_ints(target_value)? else { return Ok(None) };
    let (Some(xd), Some(at_n)) = (shapes.shape(x), shapes.bound_shape(x, &HashMap::from([(BATCH_DIM.to_string(), n)]))) else {
        return Ok(None);
    };
    let Some(offset) = target.len().checked_sub(xd.len()) else { return Ok(None) };
    let mut new = target.clone();
    for (i, d) in xd.iter().enumerate() {
        if d.symbols().contains(&BATCH_DIM) && at_n.get(i) == Some(&target[offset + i]) && target[offset + i] != 1 {
            new[offset + i] = 1;
        }
    }
    Ok((new != target).then_some(new))
}

/// `[batch, 3, 224, 224]`, or `unknown`.
fn show_dims(d: Option<&[Dim]>) -> String {
    d.map_or_else(|| "unknown".into(), |d| format!("[{}]", d.iter().map(Dim::to_string).collect::<Vec<_>>().join(", ")))
}

fn is_default_domain(node: &NodeProto) -> bool {
    matches!(node.domain.as_deref().unwrap_or(""), "" | "ai.onnx")
}

/// Turns `Constant` nodes into initializers named by their output; returns their names.
fn lift_constants(model: &Model, graph: &mut GraphProto, outputs: &HashSet<String>, summary: &mut Summary) -> Result<HashSet<String>> {
    let mut kept = Vec::with_capacity(graph.node.len());
    let mut lifted = HashSet::new();
    for node in std::mem::take(&mut graph.node) {
        if node.op() != "Constant" || !is_default_domain(&node) {
            kept.push(node);
            continue;
        }
        match constant_initializer(model, &node, outputs)? {
            Some(t) => {
                lifted.extend(t.name.clone());
                graph.initializer.push(t);
                summary.constants_lifted += 1;
            }
            None => {
                summary.constants_kept += 1;
                kept.push(node);
            }
        }
    }
    graph.node = kept;
    Ok(lifted)
}

/// The initializer a `Constant` node stands for; `None` for the forms kept as nodes
/// (strings, sparse values, a graph output, a malformed node left for later stages).
fn constant_initializer(model: &Model, node: &NodeProto, outputs: &HashSet<String>) -> Result<Option<TensorProto>> {
    let [out] = node.output.as_slice() else { return Ok(None) };
    let [attr] = node.attribute.as_slice() else { return Ok(None) };
    if out.is_empty() || outputs.contains(out) {
        return Ok(None);
    }
    fn read<T>(model: &Model, node: &NodeProto, r: std::result::Result<T, String>) -> Result<T> {
        r.map_err(|m| model.error(crate::graph::node_label(node), m))
    }
    let scalar = |data: TensorData| Tensor { shape: vec![], data };
    let list = |data: TensorData| Tensor { shape: vec![data.len()], data };
    let tensor = match attr.name.as_deref().unwrap_or("") {
        "value" => {
            let Some(t) = read(model, node, node.attr_tensor("value"))? else {
                return Err(model.error(crate::graph::node_label(node), "attribute 'value' holds no tensor"));
            };
            let mut t = t.clone();
            t.name = Some(out.clone());
            return Ok(Some(t));
        }
        "value_float" => scalar(TensorData::F32(vec![read(model, node, node.attr_float("value_float"))?.unwrap_or(0.0)])),
        "value_floats" => list(TensorData::F32(read(model, node, node.attr_floats("value_floats"))?.unwrap_or_default())),
        "value_int" => scalar(TensorData::I64(vec![read(model, node, node.attr_int("value_int"))?.unwrap_or(0)])),
        "value_ints" => list(TensorData::I64(read(model, node, node.attr_ints("value_ints"))?.unwrap_or_default())),
        _ => return Ok(None),
    };
    Ok(Some(tensor.to_proto(out)))
}

/// Removes initializers from the graph inputs (IR < 4 files list them all), unless the
/// options keep them in an IR >= 4 file; returns the names kept as overridable inputs.
fn initializer_inputs(graph: &mut GraphProto, ir: i64, options: &NormalizeOptions, summary: &mut Summary) -> HashSet<String> {
    let inits: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let listed: HashSet<String> =
        graph.input.iter().filter_map(|v| v.name.as_deref()).filter(|n| inits.contains(n)).map(str::to_string).collect();
    if listed.is_empty() {
        return HashSet::new();
    }
    if ir >= 4 && options.keep_overridable_inputs {
        summary.overridable_inputs = listed.len();
        return listed;
    }
    graph.input.retain(|v| !v.name.as_ref().is_some_and(|n| listed.contains(n)));
    summary.initializer_inputs = listed.len();
    HashSet::new()
}

/// Gives every reader of a float initializer whose elements are all equal (at least two)
/// but the first a copy of its own. Exporters and onnxruntime's optimizer merge equal
/// constants: in a freshly initialized model every zero bias of a size is one tensor, read
/// by the query, key and value projections and the layer norms alike, which would tie
/// their channels. A tensor of one repeated value holds nothing learned, so the copies
/// compute the same and train as the layers the file describes. Initializers kept as
/// graph inputs (overridable) are left shared, and a `Shape` or `Size` reads no values, so
/// it needs no copy.
fn untie_uniform_constants(model: &Model, graph: &mut GraphProto, summary: &mut Summary) {
    let reads_values = |n: &NodeProto| !(is_default_domain(n) && matches!(n.op(), "Shape" | "Size"));
    let mut reads: HashMap<&str, usize> = HashMap::new();
    for n in graph.node.iter().filter(|n| reads_values(n)) {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *reads.entry(i.as_str()).or_default() += 1;
        }
    }
    let inputs: HashSet<&str> = graph.input.iter().filter_map(|v| v.name.as_deref()).collect();
    // One repeated value: compared element by element on the stored bytes (raw or
    // external data, mapped, not decoded: a tied embedding is read by several nodes too),
    // stopping at the first difference; values in typed fields are decoded.
    let one_value = |t: &TensorProto, dtype: DType| match model.tensor_bytes(t) {
        Ok(Some(bytes)) => {
            let size = dtype.size();
            bytes.len() > size && bytes.len() % size == 0 && bytes.chunks_exact(size).all(|c| c == &bytes[..size])
        }
        Ok(None) => model.tensor(t).is_ok_and(|v| {
            let values = v.to_f64_vec();
            values.len() > 1 && values.iter().all(|&x| x.to_bits() == values[0].to_bits())
        }),
        Err(_) => false,
    };
    // Decoded (external data read in), so that the copies are written inline.
    let uniform: HashMap<String, Tensor> = graph
        .initializer
        .iter()
        .filter(|t| t.name.as_deref().is_some_and(|n| reads.get(n).copied().unwrap_or(0) > 1 && !inputs.contains(n)))
        .filter(|t| t.data_type.and_then(DType::from_onnx).is_some_and(|d| d.is_float() && one_value(t, d)))
        .filter_map(|t| Some((t.name.clone()?, model.tensor(t).ok()?)))
        .collect();
    if uniform.is_empty() {
        return;
    }
    let mut names = Names::of(graph);
    let mut seen: HashSet<String> = HashSet::new();
    let mut copies: Vec<TensorProto> = Vec::new();
    for n in graph.node.iter_mut().filter(|n| reads_values(n)) {
        let stem = n.name.clone().filter(|s| !s.is_empty()).or_else(|| n.output.first().cloned()).unwrap_or_default();
        for input in n.input.iter_mut() {
            let Some(t) = uniform.get(input.as_str()) else { continue };
            if seen.insert(input.clone()) {
                continue;
            }
            let name = names.fresh(&format!("{stem}/{input}"));
            copies.push(t.to_proto(&name));
            *input = name;
            summary.uniform_untied += 1;
        }
    }
    graph.initializer.extend(copies);
}

/// Gives a `BatchNormalization`'s running mean and variance (inputs 3 and 4) their own
/// copies where the initializer is also read elsewhere: tf2onnx merges equal constants, so
/// a freshly initialized Keras layer reads one tensor of ones as its scale and its variance
/// and one of zeros as its bias and its mean; the statistics are buffers that training
/// updates apart from the trained scale and bias, which must stay parameters.
fn untie_statistics(graph: &mut GraphProto, summary: &mut Summary) {
    let is_bn = |n: &NodeProto| is_default_domain(n) && n.op() == "BatchNormalization";
    if !graph.node.iter().any(is_bn) {
        return;
    }
    let mut reads: HashMap<String, usize> = HashMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *reads.entry(i.clone()).or_default() += 1;
        }
    }
    for o in graph.output.iter().filter_map(|o| o.name.clone()) {
        *reads.entry(o).or_default() += 1;
    }
    let mut names = Names::of(graph);
    let mut copies: Vec<TensorProto> = Vec::new();
    for i in 0..graph.node.len() {
        if !is_bn(&graph.node[i]) {
            continue;
        }
        for (k, what) in [(3usize, "running_mean"), (4, "running_var")] {
            let Some(v) = graph.node[i].input.get(k).filter(|v| !v.is_empty()).cloned() else { continue };
            if reads.get(&v).copied().unwrap_or(0) < 2 {
                continue;
            }
            let Some(t) = graph.initializer.iter().find(|t| t.name.as_deref() == Some(v.as_str())) else { continue };
            let name =
                names.fresh(&format!("{}/{what}", graph.node[i].name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| v.clone())));
            let mut copy = t.clone();
            copy.name = Some(name.clone());
            copies.push(copy);
            if let Some(r) = reads.get_mut(&v) {
                *r -= 1;
            }
            graph.node[i].input[k] = name;
            summary.statistics_untied += 1;
        }
    }
    graph.initializer.extend(copies);
}

/// Dropout as a model exported in training mode writes it (a forgotten `model.eval()`;
/// Hugging Face's `from_config` and torchvision's builders return models in training
/// mode): a `Dropout` whose `training_mode` is a true constant, and the dynamo exporter's
/// inlined form `x * (Cast(RandomUniformLike(..) < keep) / keep)` (its mask of the export's
/// fixed shape). Both become an inference `Dropout` of ratio `1 - keep`, which drops nothing
/// when the model is run and drops again when oto trains it: the file as meant, not a
/// random function of one batch size. A mask drawn once per sample (stochastic depth, a
/// template `[N, 1, 1, 1]`) has no ONNX operator and becomes an `Identity`. The nodes that
/// computed only the mask are removed.
fn inference_dropouts(graph: &mut GraphProto, summary: &mut Summary, opset: i64) {
    let scalar = |graph: &GraphProto, name: &str| -> Option<f64> {
        let t = graph.initializer.iter().find(|t| t.name.as_deref() == Some(name))?;
        let v = Tensor::from_proto(t, None).ok()?.to_f64_vec();
        (v.len() == 1).then(|| v[0])
    };
    for i in 0..graph.node.len() {
        let n = &graph.node[i];
        if !(is_default_domain(n) && n.op() == "Dropout") {
            continue;
        }
        let Some(mode) = n.input.get(2).filter(|v| !v.is_empty()) else { continue };
        if scalar(graph, mode).is_some_and(|v| v != 0.0) {
            graph.node[i].input.truncate(2);
            summary.dropouts_made_inference += 1;
        }
    }
    let producer: HashMap<String, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().filter(|o| !o.is_empty()).map(move |o| (o.clone(), i))).collect();
    let made = |graph: &GraphProto, v: &str, op: &str| -> Option<usize> {
        let &i = producer.get(v)?;
        let n = &graph.node[i];
        (is_default_domain(n) && n.op() == op).then_some(i)
    };
    // The keep probability of a mask `Cast(RandomUniformLike(..) < keep) / keep`, and
    // whether it is one draw per sample (stochastic depth: a constant template `[N, 1, ...]`).
    let keep_of = |graph: &GraphProto, mask: &str| -> Option<(f64, bool)> {
        let div = &graph.node[made(graph, mask, "Div")?];
        let keep = scalar(graph, div.input.get(1)?)?;
        let cast = &graph.node[made(graph, div.input.first()?, "Cast")?];
        let less = &graph.node[made(graph, cast.input.first()?, "Less")?];
        let uniform = &graph.node[made(graph, less.input.first()?, "RandomUniformLike")?];
        let bound = |name: &str, default: f32| uniform.attr_float(name).ok().flatten().unwrap_or(default);
        let unit = bound("low", 0.0) == 0.0 && bound("high", 1.0) == 1.0;
        let template = uniform.input.first().and_then(|t| graph.initializer.iter().find(|i| i.name.as_deref() == Some(t.as_str())));
        let per_sample = template.is_some_and(|t| t.dims.len() > 1 && t.dims[1..].iter().all(|&d| d == 1));
        (unit && scalar(graph, less.input.get(1)?) == Some(keep) && keep > 0.0 && keep <= 1.0).then_some((keep, per_sample))
    };
    let outputs: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    let mut masks = Vec::new();
    let mut names = Names::of(graph);
    let mut ratios = Vec::new();
    for i in 0..graph.node.len() {
        let n = &graph.node[i];
        if !(is_default_domain(n) && n.op() == "Mul" && n.input.len() == 2) {
            continue;
        }
        let found = [(0usize, 1usize), (1, 0)]
            .into_iter()
            .find_map(|(x, m)| Some((n.input[x].clone(), n.input[m].clone(), keep_of(graph, &n.input[m])?)));
        let Some((x, mask, (keep, per_sample))) = found else { continue };
        let readers = graph.node.iter().filter(|o| o.input.contains(&mask)).count();
        if readers != 1 || outputs.contains(&mask) {
            continue;
        }
        let ratio = (1.0 - keep) as f32;
        let stem = n.name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| n.output[0].clone());
        let node = &mut graph.node[i];
        node.attribute.clear();
        if per_sample {
            // Stochastic depth has no ONNX operator (a Dropout would drop elements, not
            // samples): the branch is kept whole, as in inference.
            node.op_type = Some("Identity".into());
            node.input = vec![x];
        } else if opset >= 12 {
            node.op_type = Some("Dropout".into());
            let name = names.fresh(&format!("{stem}/ratio"));
            ratios.push(Tensor::new(vec![], TensorData::F32(vec![ratio])).map(|t| t.to_proto(&name)));
            node.input = vec![x, name];
        } else {
            node.op_type = Some("Dropout".into());
            node.input = vec![x];
            node.attribute.push(crate::builder::Attr::Float(ratio).to_proto("ratio"));
        }
        masks.push(mask);
        summary.dropouts_made_inference += 1;
    }
    graph.initializer.extend(ratios.into_iter().flatten());
    remove_dead_producers(graph, &producer, &outputs, masks);
}

/// Omits the initial states of `RNN`/`GRU`/`LSTM` nodes that are zero (the default of an
/// omitted state): exporters compute them as `ConstantOfShape([layers, batch, H])` sliced
/// per layer, whose `H` would otherwise have to change with the layer's units (and one
/// such constant serves every layer). The nodes that computed only them are removed.
fn omit_zero_states(graph: &mut GraphProto, summary: &mut Summary) {
    let recurrent = |n: &NodeProto| is_default_domain(n) && matches!(n.op(), "RNN" | "GRU" | "LSTM");
    if !graph.node.iter().any(recurrent) {
        return;
    }
    let producer: HashMap<String, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().filter(|o| !o.is_empty()).map(move |o| (o.clone(), i))).collect();
    let outputs: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    fn all_zero(t: &TensorProto) -> bool {
        Tensor::from_proto(t, None).is_ok_and(|t| t.to_f64_vec().iter().all(|&v| v == 0.0))
    }
    // Whether `value` is all zeros: a zero initializer or ConstantOfShape, moved or
    // selected by operators that keep every value, or zeros concatenated (a bidirectional
    // layer's two states, as tf2onnx writes Keras's `Bidirectional`).
    fn zero(graph: &GraphProto, producer: &HashMap<String, usize>, value: &str, depth: usize) -> bool {
        if depth > 16 {
            return false;
        }
        if let Some(t) = graph.initializer.iter().find(|t| t.name.as_deref() == Some(value)) {
            return all_zero(t);
        }
        let Some(n) = producer.get(value).map(|&i| &graph.node[i]) else { return false };
        if !is_default_domain(n) {
            return false;
        }
        match n.op() {
            "ConstantOfShape" => match n.attribute.iter().find(|a| a.name.as_deref() == Some("value")) {
                None => true,
                Some(a) => a.t.as_ref().is_some_and(all_zero),
            },
            "Slice" | "Gather" | "Reshape" | "Squeeze" | "Unsqueeze" | "Transpose" | "Expand" | "Identity" | "Cast" | "Tile"
            | "Flatten" => n.input.first().is_some_and(|x| zero(graph, producer, x, depth + 1)),
            "Concat" => n.input.iter().all(|x| x.is_empty() || zero(graph, producer, x, depth + 1)),
            _ => false,
        }
    }
    let mut omitted: Vec<String> = Vec::new();
    for i in 0..graph.node.len() {
        if !recurrent(&graph.node[i]) {
            continue;
        }
        let states: &[usize] = if graph.node[i].op() == "LSTM" { &[5, 6] } else { &[5] };
        for &k in states {
            let Some(v) = graph.node[i].input.get(k).filter(|v| !v.is_empty()).cloned() else { continue };
            if !outputs.contains(&v) && zero(graph, &producer, &v, 0) {
                graph.node[i].input[k] = String::new();
                omitted.push(v);
                summary.zero_states_omitted += 1;
            }
        }
    }
    remove_dead_producers(graph, &producer, &outputs, omitted);
}

/// Removes the nodes that computed only `values` (which nothing reads any more), and what
/// computed only their inputs in turn; `producer` indexes `graph`'s nodes by output.
fn remove_dead_producers(graph: &mut GraphProto, producer: &HashMap<String, usize>, outputs: &HashSet<String>, values: Vec<String>) {
    let mut dead: HashSet<usize> = HashSet::new();
    let mut pending = values;
    while let Some(v) = pending.pop() {
        let Some(&i) = producer.get(&v) else { continue };
        if dead.contains(&i) {
            continue;
        }
        let n = &graph.node[i];
        let read = |o: &String| {
            outputs.contains(o) || graph.node.iter().enumerate().any(|(j, m)| !dead.contains(&j) && j != i && m.input.contains(o))
        };
        if n.output.iter().any(read) || !n.attribute.iter().all(|a| a.g.is_none() && a.graphs.is_empty()) {
            continue;
        }
        dead.insert(i);
        pending.extend(n.input.iter().filter(|x| !x.is_empty()).cloned());
    }
    if !dead.is_empty() {
        let mut index = 0usize;
        graph.node.retain(|_| {
            index += 1;
            !dead.contains(&(index - 1))
        });
    }
}

/// `x op Expand(n, Shape(x))` as `x op n`, for the broadcasting binary operators: the
/// Expand only broadcasts `n` to `x`'s shape, which the operator does itself, so the
/// result is the same (values, shape, type). `F.normalize(x)` is exported so, `x /
/// max(norm(x), eps).expand_as(x)`: read as written, the divisor is a tensor as wide as
/// `x`'s channels that does not follow them; read as a broadcast norm, the channels of
/// `x` are followed through the division. Expands and Shapes left unread are removed
/// (unless a subgraph could read them).
fn drop_broadcast_expands(graph: &mut GraphProto, summary: &mut Summary) {
    let producer: HashMap<String, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().filter(|o| !o.is_empty()).map(move |o| (o.clone(), i))).collect();
    let made_by = |value: &str, op: &str| {
        producer.get(value).map(|&i| &graph.node[i]).filter(|n| is_default_domain(n) && n.op() == op && !n.input.is_empty())
    };
    // The `n` an Expand broadcasts to the shape of `x`: `Expand(n, Shape(x))`, the Shape whole.
    let broadcast_of = |e: &str, x: &str| -> Option<String> {
        let expand = made_by(e, "Expand")?;
        let shape = made_by(expand.input.get(1)?, "Shape")?;
        let whole = shape.attribute.iter().all(|a| !matches!(a.name.as_deref(), Some("start" | "end")));
        (whole && shape.input[0] == x && !expand.input[0].is_empty()).then(|| expand.input[0].clone())
    };
    let mut rewrites = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        let binary = is_default_domain(node) && matches!(node.op(), "Add" | "Sub" | "Mul" | "Div" | "Pow") && node.input.len() == 2;
        if !binary {
            continue;
        }
        for k in 0..2 {
            if let Some(n) = broadcast_of(&node.input[k], &node.input[1 - k]) {
                rewrites.push((i, k, node.input[k].clone(), n));
            }
        }
    }
    if rewrites.is_empty() {
        return;
    }
    let mut freed = Vec::new();
    for (i, k, expanded, n) in rewrites {
        graph.node[i].input[k] = n;
        freed.push(expanded);
        summary.broadcast_expands += 1;
    }
    let subgraphs = graph.node.iter().any(|n| n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()));
    if !subgraphs {
        let outputs: HashSet<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
        remove_dead_producers(graph, &producer, &outputs, freed);
    }
}

/// Rewrites `Sum` as a chain of `Add` and `Max`/`Min` of more than two inputs as chains
/// of binary nodes (exact: the same operations in the same order).
fn rewrite_variadic(graph: &mut GraphProto, summary: &mut Summary) {
    let wanted = |n: &NodeProto| {
        let ok = is_default_domain(n) && n.output.len() == 1 && !n.input.is_empty() && n.input.iter().all(|i| !i.is_empty());
        ok && (n.op() == "Sum" || matches!(n.op(), "Max" | "Min") && n.input.len() > 2)
    };
    if !graph.node.iter().any(wanted) {
        return;
    }
    let mut names = Names::of(graph);
    let mut out = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if !wanted(&node) {
            out.push(node);
            continue;
        }
        let (binary, counter) = match node.op() {
            "Sum" => ("Add", &mut summary.sums),
            op => (if op == "Max" { "Max" } else { "Min" }, &mut summary.variadic),
        };
        *counter += 1;
        let like = |op: &str, input: Vec<String>, output: String, name: Option<String>| {
            let mut n = node.clone();
            n.op_type = Some(op.to_string());
            n.input = input;
            n.output = vec![output];
            n.name = name;
            n.attribute.clear();
            n
        };
        let result = node.output[0].clone();
        if node.input.len() == 1 {
            out.push(like("Identity", node.input.clone(), result, node.name.clone()));
            continue;
        }
        let mut acc = node.input[0].clone();
        let last = node.input.len() - 1;
        for (k, x) in node.input.iter().enumerate().skip(1) {
            let (value, name) = if k == last {
                (result.clone(), node.name.clone())
            } else {
                let stem = node.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(&result).to_string();
                (names.fresh(&format!("{result}_{binary}{k}")), Some(names.fresh(&format!("{stem}_{binary}{k}"))))
            };
            out.push(like(binary, vec![acc, x.clone()], value.clone(), name));
            acc = value;
        }
    }
    graph.node = out;
}

/// The branch each `If` takes when inference knows its condition (a comparison of sizes,
/// such as DeBERTa's `if key_size != query_size` in a scripted helper, equal by
/// construction): keyed by the If's first output, true for `then_branch`.
fn known_branches(view: &Graph<'_>, shapes: &Shapes) -> HashMap<String, bool> {
    let value = |name: &str| -> Option<bool> {
        if let Some(v) = shapes.shape_values.get(name) {
            return match v.as_slice() {
                [Dim::Known(x)] => Some(*x != 0),
                _ => None,
            };
        }
        let t = shapes.constants.get(name).cloned().or_else(|| view.constant(name).ok().flatten())?;
        match t.to_f64_vec().as_slice() {
            [x] => Some(*x != 0.0),
            _ => None,
        }
    };
    view.nodes()
        .filter(|(_, n)| is_default_domain(n) && n.op() == "If")
        .filter_map(|(_, n)| Some((n.output.first()?.clone(), value(n.input.first()?)?)))
        .collect()
}

/// Replaces each `If` of [`known_branches`] by the nodes of the branch it takes (exact:
/// the same computation on every input the model accepts). The branch's values and
/// initializers get names of their own under the If's first output, and an `Identity`
/// gives each branch output the If output's name. An If whose branch holds subgraphs of
/// its own, or sparse initializers, is left as it is.
fn inline_known_branches(graph: &mut GraphProto, taken: HashMap<String, bool>) -> usize {
    if taken.is_empty() {
        return 0;
    }
    let mut count = 0;
    let mut names = Names::of(graph);
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let choice = (is_default_domain(&node) && node.op() == "If").then(|| node.output.first().and_then(|o| taken.get(o))).flatten();
        let attr = match choice {
            Some(true) => "then_branch",
            Some(false) => "else_branch",
            None => {
                nodes.push(node);
                continue;
            }
        };
        let branch = node.attribute.iter().find(|a| a.name.as_deref() == Some(attr)).and_then(|a| a.g.as_ref());
        let Some(branch) = branch.filter(|b| b.output.len() == node.output.len()) else {
            nodes.push(node);
            continue;
        };
        let stem = node.output[0].clone();
        let Some(inlined) = inline_branch(branch, &mut names, |v| format!("{stem}/{v}"), |n| format!("{stem}/{n}")) else {
            nodes.push(node);
            continue;
        };
        graph.initializer.extend(inlined.initializers);
        nodes.extend(inlined.nodes);
        for (b, o) in inlined.outputs.iter().zip(&node.output) {
            nodes.push(crate::graph::identity(names.fresh(&format!("{o}/identity")), b, o));
        }
        count += 1;
    }
    graph.node = nodes;
    count
}

/// Gives every reader after the first of a shared `Concat` of integer initializers and
/// run-time values (a shape list such as `[B, T, 384]` that the dynamo exporter computes
/// once for every layer) its own copy of the node (exact: the same inputs, the same
/// operation). A Concat of constants alone is folded instead (step 4), and one whose
/// output is a graph output is left as it is.
fn untie_shape_concats(graph: &mut GraphProto, summary: &mut Summary) {
    let ints: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| matches!(DType::from_onnx(t.data_type.unwrap_or(0)), Some(DType::I64 | DType::I32)))
        .filter_map(|t| t.name.clone())
        .collect();
    let outputs: HashSet<&str> = graph.output.iter().filter_map(|o| o.name.as_deref()).collect();
    let wanted = |n: &NodeProto| {
        is_default_domain(n)
            && n.op() == "Concat"
            && n.output.len() == 1
            && !outputs.contains(n.output[0].as_str())
            && n.input.iter().any(|i| ints.contains(i.as_str()))
            && n.input.iter().any(|i| !i.is_empty() && !ints.contains(i.as_str()))
    };
    // An integer initializer read at several positions: a copy for each after the first
    // (only a repeated one is looked up and cloned).
    let mut names = Names::of(graph);
    let mut copies: Vec<TensorProto> = Vec::new();
    for node in graph.node.iter_mut().filter(|n| wanted(n)) {
        let mut seen: HashSet<String> = HashSet::new();
        for input in node.input.iter_mut() {
            if !ints.contains(input.as_str()) || seen.insert(input.clone()) {
                continue;
            }
            let Some(t) = graph.initializer.iter().find(|t| t.name.as_deref() == Some(input.as_str())) else { continue };
            let mut copy = t.clone();
            let name = names.fresh(&format!("{input}_copy"));
            copy.name = Some(name.clone());
            *input = name;
            copies.push(copy);
            summary.shape_constants_untied += 1;
        }
    }
    graph.initializer.extend(copies);
    let shared: HashSet<String> = graph.node.iter().filter(|n| wanted(n)).map(|n| n.output[0].clone()).collect();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|i| shared.contains(i.as_str())) {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let shared: HashMap<String, NodeProto> = graph
        .node
        .iter()
        .filter(|n| wanted(n) && readers.get(n.output[0].as_str()).is_some_and(|&r| r > 1))
        .map(|n| (n.output[0].clone(), n.clone()))
        .collect();
    if shared.is_empty() {
        return;
    }
    let mut first_read: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        for k in 0..node.input.len() {
            let Some(concat) = shared.get(&node.input[k]) else { continue };
            // The first reader keeps the original; every later one reads a copy.
            if first_read.insert(node.input[k].clone()) {
                continue;
            }
            let mut copy = concat.clone();
            let value = names.fresh(&format!("{}_copy", concat.output[0]));
            let stem = concat.name.as_deref().filter(|s| !s.is_empty()).unwrap_or(&concat.output[0]).to_string();
            copy.name = Some(names.fresh(&format!("{stem}_copy")));
            copy.output = vec![value.clone()];
            node.input[k] = value;
            out.push(copy);
            summary.concats_untied += 1;
        }
        out.push(node);
    }
    graph.node = out;
}

/// How a foldable operator is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Same elements, new shape: the initializer is copied as it is stored.
    Reshape,
    /// Moves or converts elements exactly, each at most once: folded whatever the size.
    Move,
    /// Reads only the input's shape.
    Meta,
    /// Creates, repeats or selects elements exactly: folded when the result is small and
    /// no input is a float tensor (repeating a weight's elements would untie them).
    Small,
    /// Integer arithmetic: folded when every operand is an integer and the result small.
    Integer,
}

fn kind(op: &Op) -> Option<Kind> {
    use crate::op::{Binary as B, Compare as C, ReduceKind as R, Unary as U};
    Some(match op {
        Op::Unary(U::Identity) | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Flatten { .. } => Kind::Reshape,
        Op::Transpose { .. } | Op::Cast { .. } | Op::CastLike | Op::Slice(_) | Op::Concat { .. } => Kind::Move,
        Op::Shape { .. } | Op::Size => Kind::Meta,
        Op::ConstantOfShape | Op::Expand | Op::Where | Op::Gather { .. } => Kind::Small,
        Op::Binary(B::Add | B::Sub | B::Mul | B::Div | B::Mod | B::Max | B::Min)
        | Op::Unary(U::Neg | U::Abs | U::Sign | U::Not)
        | Op::Compare(C::Equal | C::Less | C::Greater | C::LessOrEqual | C::GreaterOrEqual | C::And | C::Or | C::Xor)
        | Op::Range
        | Op::Reduce(crate::op::Reduce { kind: R::Sum | R::Prod | R::Max | R::Min, .. }) => Kind::Integer,
        _ => return None,
    })
}

/// Operators whose result is their input 0 rearranged (the other inputs are integer
/// parameters): folded on a weight read nowhere else, the result keeps the weight's
/// name.
fn rearranges_input0(op: &Op) -> bool {
    shape::keeps_entries(op) || matches!(op, Op::Transpose { .. } | Op::Slice(_))
}

/// Drops the bias of a `Conv`, `ConvTranspose` or `Gemm` that folding made from the
/// exporter's literals alone and that is all zeros: the dynamo exporter without its
/// optimizer fills a layer without bias so (`Expand(CastLike(0, x), [out])`), and as a
/// parameter it would be trained and counted where the model has none. The tensor goes
/// with it. (A zero bias the file holds as a weight is the model's, and stays.)
fn drop_zero_biases(
    graph: &mut GraphProto,
    made: &[TensorProto],
    from_literals: &HashSet<String>,
    read: &mut HashSet<String>,
    summary: &mut Summary,
) {
    let zeros: HashSet<String> = made
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| from_literals.contains(n)) && dtype_of(t).is_some_and(DType::is_float))
        .filter(|t| Tensor::from_proto(t, None).is_ok_and(|v| v.to_f64_vec().iter().all(|&x| x == 0.0)))
        .filter_map(|t| t.name.clone())
        .collect();
    if zeros.is_empty() {
        return;
    }
    for n in graph.node.iter_mut().filter(|n| is_default_domain(n) && matches!(n.op(), "Conv" | "ConvTranspose" | "Gemm")) {
        if n.input.len() == 3 && zeros.contains(&n.input[2]) {
            read.insert(n.input.pop().unwrap_or_default());
            summary.zero_biases_dropped += 1;
        }
    }
}

fn dtype_of(t: &TensorProto) -> Option<DType> {
    DType::from_onnx(t.data_type.unwrap_or(0))
}

/// Layer weights computed from initializers by float arithmetic: weight normalization
/// (`torch.nn.utils.parametrizations.weight_norm`: `g * v / ||v||`, wav2vec2's positional
/// convolution, HiFi-GAN's), weight standardization (BiT's convolutions: the weight's
/// rows through a batch or instance normalization), or any chain of arithmetic, norms,
/// normalizations and data moves ending at a `Conv`, `ConvTranspose`, `Gemm` or `MatMul`
/// weight. Folded into one initializer, the
/// layer computes the same and trains its weight directly, which the analysis can prune
/// (a reparametrization is a training device; at the compact model's inference the
/// weight is a constant either way). Only where nothing else reads the computation or
/// its float initializers, so no shared weight is untied.
#[derive(Default)]
struct Reparametrized {
    /// Nodes of the computations, by index in `GraphProto.node`.
    nodes: HashSet<usize>,
    /// The node writing each weight -> the name the folded weight takes: the largest
    /// float initializer of its computation (the direction `v`).
    named: HashMap<usize, String>,
}

impl Reparametrized {
    fn find(graph: &Graph<'_>, overridable: &HashSet<String>, outer_reads: &HashSet<String>) -> Reparametrized {
        let mut found = Reparametrized::default();
        for (_, layer) in graph.nodes() {
            if !is_default_domain(layer) || !matches!(layer.op(), "Conv" | "ConvTranspose" | "Gemm" | "MatMul") {
                continue;
            }
            let Some(weight) = layer.input.get(1).filter(|w| !w.is_empty()) else { continue };
            if let Some((last, cone, name)) = Self::computation(graph, weight, overridable, outer_reads) {
                if cone.iter().all(|i| !found.nodes.contains(i)) {
                    found.nodes.extend(cone);
                    found.named.insert(last, name);
                }
            }
        }
        found
    }

    /// The nodes computing `weight` from initializers alone (with float arithmetic among
    /// them), the one writing it, and the name the folded weight takes; `None` when it is
    /// not such a computation, or when anything outside it reads a value or a float
    /// initializer of it.
    fn computation(
        graph: &Graph<'_>,
        weight: &str,
        overridable: &HashSet<String>,
        outer_reads: &HashSet<String>,
    ) -> Option<(usize, HashSet<usize>, String)> {
        use crate::op::{Binary as B, Reduce, ReduceKind as R, Unary as U};
        let (last, _) = graph.producer_node(weight)?;
        let (mut cone, mut leaves, mut stack) = (HashSet::new(), HashMap::new(), vec![weight.to_string()]);
        let mut arithmetic = false;
        while let Some(v) = stack.pop() {
            if let Some(t) = graph.initializer(&v) {
                if overridable.contains(&v) {
                    return None;
                }
                leaves.insert(v, t);
                continue;
            }
            let (i, node) = graph.producer_node(&v)?;
            if !cone.insert(i) {
                continue;
            }
            let op = Op::parse(graph, node).ok()?;
            arithmetic |= match op {
                Op::Binary(B::Add | B::Sub | B::Mul | B::Div | B::Pow)
                | Op::Unary(U::Sqrt | U::Reciprocal | U::Neg | U::Abs | U::Exp | U::Log)
                | Op::Reduce(Reduce { kind: R::Sum | R::Mean | R::L1 | R::L2 | R::SumSquare | R::Max | R::Min, .. })
                | Op::BatchNormalization
                | Op::InstanceNormalization => true,
                _ if matches!(kind(&op), Some(Kind::Reshape | Kind::Move)) || op == Op::Expand => false,
                _ => return None,
            };
            // (a training-mode BatchNormalization's running statistics, if read by nothing)
            let unread = |v: &String| v.is_empty() || (graph.consumers(v).is_empty() && !graph.is_output(v) && !outer_reads.contains(v));
            if !is_default_domain(node) || node.output.is_empty() || !node.output[1..].iter().all(unread) {
                return None;
            }
            stack.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
        }
        // Nothing but the computation reads its values; the layer alone reads the weight.
        let inside = |v: &str| !graph.is_output(v) && !outer_reads.contains(v) && graph.consumers(v).iter().all(|u| cone.contains(&u.node));
        let values_inside = cone.iter().all(|&i| {
            let out = &graph.node(i).output[0];
            if i == last {
                graph.consumers(out).len() == 1 && !graph.is_output(out) && !outer_reads.contains(out)
            } else {
                inside(out)
            }
        });
        let floats: Vec<(&String, &&TensorProto)> = leaves.iter().filter(|(_, t)| dtype_of(t).is_some_and(DType::is_float)).collect();
        if !arithmetic || !values_inside || !floats.iter().all(|(v, _)| inside(v)) {
            return None;
        }
        let numel = |t: &TensorProto| shape::numel_of(&t.dims).unwrap_or(usize::MAX);
        let (name, _) = floats.iter().max_by(|(a, p), (b, q)| numel(p).cmp(&numel(q)).then_with(|| b.cmp(a)))?;
        Some((last, cone, (*name).clone()))
    }
}

/// The most elements a value of a weight's computation may have to be folded (67M: a
/// 4096 x 16384 layer).
const REPARAMETRIZED_LIMIT: usize = 1 << 26;

/// Decides, in topological order, which nodes fold and into what.
struct Folder<'a, 'm> {
    model: &'a Model,
    graph: &'a Graph<'m>,
    shapes: &'a Shapes,
    overridable: &'a HashSet<String>,
    /// Initializers that were `Constant` nodes (their names are node outputs, not the file's weight names).
    lifted: &'a HashSet<String>,
    /// Values read inside subgraphs: shared with the subgraph, never copied or renamed.
    outer_reads: HashSet<String>,
    /// Initializers made so far, by name.
    made: HashMap<String, TensorProto>,
    /// Names of `made` in the order they were first made.
    order: Vec<String>,
    /// Folded values now held by an initializer of another name (the weight they rearrange).
    alias: HashMap<String, String>,
    /// Folded nodes that read only their input's shape (`Shape`, `Size`): they no longer
    /// read the value, so they do not make a weight shared.
    shape_readers: HashSet<usize>,
    /// Folded values computed from the file's literals alone (one-element `Constant`s, see
    /// [`Folder::is_literal`]) and integers: no weight is in them.
    from_literals: HashSet<String>,
    /// Layer weights computed from initializers by float arithmetic ([`Reparametrized`]).
    reparametrized: Reparametrized,
}

/// The folds decided: what [`Plan::apply`] does to the graph.
struct Plan {
    folded: HashSet<usize>,
    /// New initializers, and new contents of existing ones (same name).
    made: Vec<TensorProto>,
    /// Value name -> the initializer that now holds it.
    alias: HashMap<String, String>,
    /// Initializers read by folded nodes: removed when nothing else reads them.
    read: HashSet<String>,
    /// Made initializers computed from the file's literals alone (no weight in them).
    from_literals: HashSet<String>,
    identities: usize,
    others: usize,
    /// Layer weights whose computation from initializers was folded ([`Reparametrized`]).
    reparametrized: usize,
}

impl<'a, 'm> Folder<'a, 'm> {
    fn new(
        model: &'a Model,
        graph: &'a Graph<'m>,
        shapes: &'a Shapes,
        overridable: &'a HashSet<String>,
        lifted: &'a HashSet<String>,
    ) -> Self {
        let mut outer_reads = HashSet::new();
        for n in &graph.proto.node {
            subgraph_reads(n, &mut outer_reads);
        }
        let reparametrized = Reparametrized::find(graph, overridable, &outer_reads);
        Folder {
            model,
            graph,
            shapes,
            overridable,
            lifted,
            outer_reads,
            made: HashMap::new(),
            order: Vec::new(),
            alias: HashMap::new(),
            shape_readers: HashSet::new(),
            from_literals: HashSet::new(),
            reparametrized,
        }
    }

    /// The initializer name holding `value` (itself unless folded under another name).
    fn resolve<'v>(&'v self, value: &'v str) -> &'v str {
        self.alias.get(value).map_or(value, String::as_str)
    }

    /// The initializer holding `value`, if it is a constant (not an overridable input).
    fn constant(&self, value: &str) -> Option<&TensorProto> {
        let name = self.resolve(value);
        if let Some(t) = self.made.get(name) {
            return Some(t);
        }
        if self.overridable.contains(name) {
            return None;
        }
        self.graph.initializer(name)
    }

    /// Whether `value` (held by `t`) is a literal, not a weight: a one-element `Constant`
    /// of the file, or one computed from such alone (a literal cast to another type).
    fn is_literal(&self, value: &str, t: &TensorProto) -> bool {
        let name = self.resolve(value);
        (self.lifted.contains(name) || self.from_literals.contains(name)) && t.dims.iter().product::<i64>() == 1
    }

    /// Whether `value` (held by `t`) is a literal of value zero.
    fn is_zero_literal(&self, value: &str, t: &TensorProto) -> bool {
        self.is_literal(value, t) && self.model.tensor(t).is_ok_and(|v| v.to_f64_vec().iter().all(|&x| x == 0.0))
    }

    /// Whether `value` is read only as the bias of a `Conv`, `ConvTranspose` or `Gemm`.
    fn only_a_bias(&self, value: &str) -> bool {
        let readers = self.graph.consumers(value);
        !readers.is_empty()
            && !self.graph.is_output(value)
            && !self.outer_reads.contains(value)
            && readers.iter().all(|u| {
                let n = &self.graph.proto.node[u.node];
                u.input == 2 && is_default_domain(n) && matches!(n.op(), "Conv" | "ConvTranspose" | "Gemm")
            })
    }

    /// Whether a value is read by exactly one node and nothing else (a folded `Shape` of it
    /// does not count: tf2onnx computes a weight's reshape target from the weight's shape).
    fn single_use(&self, value: &str) -> bool {
        let readers = self.graph.consumers(value).iter().filter(|u| !self.shape_readers.contains(&u.node)).count();
        readers == 1 && !self.graph.is_output(value) && !self.outer_reads.contains(value)
    }

    fn plan(mut self) -> Result<Plan> {
        let graph = self.graph;
        let (mut folded, mut read, mut identities, mut others) = (HashSet::new(), HashSet::new(), 0, 0);
        for (i, node) in graph.nodes() {
            // A node that does not parse is not folded (the stages after report it).
            let Ok(op) = Op::parse(graph, node) else { continue };
            let Some(mut t) = self.fold(i, node, &op)? else { continue };
            folded.insert(i);
            let from_literals = node.input.iter().filter(|v| !v.is_empty()).all(|v| {
                self.constant(v).is_none_or(|c| {
                    !dtype_of(c).is_some_and(DType::is_float) || self.is_literal(v, c) || self.from_literals.contains(self.resolve(v))
                })
            });
            if from_literals {
                self.from_literals.insert(node.output[0].clone());
            }
            if kind(&op) == Some(Kind::Meta) {
                self.shape_readers.insert(i);
            }
            read.extend(node.input.iter().filter(|s| !s.is_empty()).map(|s| self.resolve(s).to_string()));
            if op == Op::Unary(crate::op::Unary::Identity) {
                identities += 1;
            } else {
                others += 1;
            }
            let out = node.output[0].clone();
            let source = self.resolve(&node.input[0]).to_string();
            let named_weight = self.graph.initializer(&source).is_some() && !self.lifted.contains(&source);
            let name = if let Some(weight) = self.reparametrized.named.get(&i) {
                // The layer's weight, named after the parameter it is computed from.
                self.alias.insert(out, weight.clone());
                weight.clone()
            } else if rearranges_input0(&op) && named_weight && self.single_use(&node.input[0]) && !self.outer_reads.contains(&out) {
                let name = source;
                self.alias.insert(out, name.clone());
                name
            } else {
                out
            };
            if let Some(old) = self.constant(&name) {
                t.doc_string = old.doc_string.clone();
            }
            t.name = Some(name.clone());
            if self.made.insert(name.clone(), t).is_none() {
                self.order.push(name);
            }
        }
        // Chains of renames point at their final name.
        let alias = self.alias.keys().map(|k| (k.clone(), self.resolve(k).to_string())).collect();
        let made = self.order.iter().filter_map(|n| self.made.remove(n)).collect();
        let from_literals = std::mem::take(&mut self.from_literals);
        // Counted once every node of a computation folded (the last one names the weight).
        let reparametrized = self.reparametrized.named.keys().filter(|i| folded.contains(*i)).count();
        Ok(Plan { folded, made, alias, read, from_literals, identities, others, reparametrized })
    }

    /// The initializer `node` (at `index`) folds into (named by its output), or `None` when
    /// it does not fold.
    fn fold(&self, index: usize, node: &NodeProto, op: &Op) -> Result<Option<TensorProto>> {
        let reparametrized = self.reparametrized.nodes.contains(&index);
        // (an operator of a custom domain is `Op::Other`: not folded)
        // (a weight's computation evaluates its float arithmetic as `Integer` folds do theirs)
        let Some(kind) = kind(op).or(reparametrized.then_some(Kind::Integer)) else { return Ok(None) };
        // A weight's computation may leave other outputs unread (checked whole).
        let out = match node.output.as_slice() {
            [out] => out,
            [out, ..] if reparametrized => out,
            _ => return Ok(None),
        };
        if out.is_empty() || self.graph.is_output(out) || node.input.first().is_none_or(String::is_empty) {
            return Ok(None);
        }
        let mut inputs: Vec<Option<&TensorProto>> = Vec::with_capacity(node.input.len());
        for (k, name) in node.input.iter().enumerate() {
            // A CastLike reads only the type of its input 1 (the type inference gives).
            if name.is_empty() || (*op == Op::CastLike && k == 1) {
                inputs.push(None);
                continue;
            }
            match self.constant(name) {
                Some(t) => inputs.push(Some(t)),
                None => return Ok(None),
            }
        }
        let (Some(dtype), Some(dims)) = (self.shapes.dtype(out), self.shapes.static_shape(out)) else { return Ok(None) };
        let Some(out_shape) = dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>() else { return Ok(None) };
        let Ok(numel) = checked_numel(&out_shape) else { return Ok(None) };
        let Some(input_types) = inputs.iter().flatten().copied().map(dtype_of).collect::<Option<Vec<DType>>>() else { return Ok(None) };
        let small = numel <= FOLD_LIMIT;
        let fits = match kind {
            Kind::Reshape | Kind::Move | Kind::Meta => true,
            // A float input only as the dynamo exporter without its optimizer fills a layer
            // without bias: a zero literal expanded into a bias, which is then dropped
            // ([`drop_zero_biases`]). Any other float constant made here would be trained as
            // a weight where the model has a constant (Swin V2's `zeros_like` key bias).
            Kind::Small => {
                small
                    && node.input.iter().zip(&inputs).all(|(name, t)| {
                        t.is_none_or(|t| {
                            !dtype_of(t).is_some_and(DType::is_float) || (self.is_zero_literal(name, t) && self.only_a_bias(out))
                        })
                    })
            }
            Kind::Integer => small && !dtype.is_float() && input_types.iter().all(|d| !d.is_float()),
        };
        // (a weight's computation is evaluated in f64 with index tables: bounded)
        if !(fits || reparametrized && numel <= REPARAMETRIZED_LIMIT) {
            return Ok(None);
        }
        // A copy of a float initializer that something else reads too would untie a
        // shared weight (Identity excepted: see the module documentation). A weight's
        // computation was checked whole: its initializers are read inside it alone.
        if *op != Op::Unary(crate::op::Unary::Identity) && kind != Kind::Meta && !reparametrized {
            for (name, t) in node.input.iter().zip(&inputs) {
                if t.is_some_and(|t| dtype_of(t).is_some_and(DType::is_float) && !self.is_literal(name, t)) && !self.single_use(name) {
                    return Ok(None);
                }
            }
        }
        let tensor = match kind {
            Kind::Reshape => {
                let Some(Some(src)) = inputs.first() else { return Ok(None) };
                let same_count = shape_of(src).ok().and_then(|s| checked_numel(&s).ok()) == Some(numel);
                if !same_count || dtype_of(src) != Some(dtype) {
                    return Ok(None);
                }
                let mut t = (*src).clone();
                t.name = Some(out.clone());
                t.dims = dims;
                t.doc_string = None;
                return Ok(Some(t));
            }
            Kind::Meta => match self.shapes.shape_value(out).map(|v| v.iter().map(|d| d.known()).collect::<Option<Vec<i64>>>()) {
                Some(Some(v)) => Tensor::new(out_shape.clone(), TensorData::I64(v)),
                _ => None,
            },
            _ => match self.shapes.constants.get(out) {
                Some(t) => Some(t.clone()),
                None => {
                    let mut values = Vec::with_capacity(inputs.len());
                    for t in &inputs {
                        values.push(match t {
                            Some(t) => Some(self.model.tensor(t)?),
                            None => None,
                        });
                    }
                    shape::eval_node(self.graph, node, op, &values, &out_shape, dtype, self.shapes)
                }
            },
        };
        Ok(tensor.filter(|t| t.shape == out_shape && t.dtype() == dtype).map(|t| t.to_proto(out)))
    }
}

impl Plan {
    /// Removes the folded nodes, adds their initializers (or replaces the weights they
    /// rearrange), points readers of renamed values at their initializer, and drops the
    /// initializers and declared types nothing reads any more.
    fn apply(mut self, graph: &mut GraphProto, summary: &mut Summary) {
        summary.identities = self.identities;
        summary.folded = self.others;
        summary.weights_reparametrized = self.reparametrized;
        if self.folded.is_empty() {
            return;
        }
        let mut index = 0usize;
        graph.node.retain(|_| {
            index += 1;
            !self.folded.contains(&(index - 1))
        });
        for n in graph.node.iter_mut() {
            for input in n.input.iter_mut() {
                if let Some(name) = self.alias.get(input.as_str()) {
                    *input = name.clone();
                }
            }
        }
        drop_zero_biases(graph, &self.made, &self.from_literals, &mut self.read, summary);
        let mut live: HashSet<String> = graph.output.iter().chain(&graph.input).filter_map(|v| v.name.clone()).collect();
        for n in &graph.node {
            live.extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
            subgraph_reads(n, &mut live);
        }
        let dead = |t: &TensorProto| t.name.as_ref().is_some_and(|n| self.read.contains(n) && !live.contains(n));
        // Weights folded under their own name change in place (and lose a stale declared type).
        let mut replaced: HashMap<String, TensorProto> = HashMap::new();
        let mut added = Vec::new();
        for t in std::mem::take(&mut self.made) {
            let name = t.name.clone().unwrap_or_default();
            if graph.initializer.iter().any(|i| i.name.as_deref() == Some(name.as_str())) {
                replaced.insert(name, t);
            } else {
                added.push(t);
            }
        }
        for t in graph.initializer.iter_mut() {
            if let Some(new) = t.name.as_ref().and_then(|n| replaced.get(n)) {
                *t = new.clone();
            }
        }
        let before = graph.initializer.len();
        graph.initializer.retain(|t| !dead(t));
        summary.dead_initializers = before - graph.initializer.len();
        graph.initializer.extend(added.into_iter().filter(|t| !dead(t)));
        let mut produced: HashSet<String> = graph.initializer.iter().filter_map(|t| t.name.clone()).collect();
        produced.extend(graph.input.iter().filter_map(|v| v.name.clone()));
        produced.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
        graph.value_info.retain(|v| v.name.as_ref().is_some_and(|n| produced.contains(n) && !replaced.contains_key(n)));
    }
}

//! Runs an ONNX graph as libtorch operations with autograd.
//!
//! [`Executor::new`] compiles the graph once: every node becomes a kernel (its
//! attributes parsed, opset-aware), initializers become trainable parameters, buffers
//! (BatchNorm running statistics) or constants, and the value lifetimes are computed
//! so that intermediate tensors are dropped after their last use.
//!
//! [`Mode::Train`] uses batch statistics in BatchNormalization (and updates the running
//! statistics with PyTorch's momentum convention) and makes Dropout active;
//! [`Mode::Eval`] computes what onnxruntime computes.

pub mod convert;
mod ops;

use crate::error::{Error, Result};
use convert::{kind_of, to_tch};
use oto_onnx::op::Op;
use oto_onnx::proto::{tensor_shape_proto::dimension, type_proto, ValueInfoProto};
use oto_onnx::{node_label, DType, Graph, Model};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use tch::{Device, Tensor};

pub use ops::supported_ops;

/// Whether the graph runs for training or for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics in BatchNormalization (running statistics updated), Dropout active.
    Train,
    /// Running statistics, no Dropout: what onnxruntime computes.
    Eval,
}

/// A trainable weight: a floating-point initializer, named by the initializer.
pub struct Parameter {
    /// The initializer name.
    pub name: String,
    /// The value: a leaf tensor on the executor's device that requires a gradient
    /// (unless frozen), in the initializer's element type.
    pub tensor: Tensor,
    /// Whether training leaves it unchanged.
    pub frozen: bool,
}

/// A non-trainable state tensor that training updates (BatchNorm running mean/var).
pub struct Buffer {
    /// The initializer name.
    pub name: String,
    /// The value on the executor's device.
    pub tensor: Tensor,
}

/// A graph input: name, element type and declared dimensions (`None`: symbolic/unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    /// The input name.
    pub name: String,
    /// Its element type.
    pub dtype: DType,
    /// Declared dimensions; `None` for a symbolic or unknown one. `None` overall when the rank is unknown.
    pub dims: Option<Vec<Option<i64>>>,
    /// For the past of a key/value cache ([`oto_onnx::Graph::cache_inputs`]), the axis
    /// its Concat extends: data without an array for it feed it empty along that axis
    /// (no past: the model reads whole sequences, as in training).
    pub cache_axis: Option<usize>,
}

/// Where a value is kept during a forward pass.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Stored in the executor (parameter, buffer or constant) at this index of `stored`.
    Stored(usize),
    /// Computed during the pass, at this index of the value table.
    Dynamic(usize),
}

/// What a stored tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredKind {
    Parameter(usize),
    Buffer(usize),
    Constant,
}

struct Stored {
    tensor: Tensor,
    /// Integer entries known on the host (small integer constants), so kernels that
    /// read axes or shapes need no device round trip.
    host_ints: Option<Vec<i64>>,
}

struct PlannedNode {
    label: String,
    inputs: Vec<Option<Slot>>,
    outputs: Vec<Option<usize>>,
    kernel: ops::Kernel,
    /// Dynamic slots whose last reader is this node (dropped after it runs).
    release: Vec<usize>,
}

/// A compiled ONNX graph on a device.
pub struct Executor {
    model_path: PathBuf,
    device: Device,
    stored: Vec<Stored>,
    params: Vec<Parameter>,
    buffers: Vec<Buffer>,
    nodes: Vec<PlannedNode>,
    dynamic_slots: usize,
    inputs: Vec<(GraphInput, usize)>,
    outputs: Vec<(String, Slot)>,
    /// Initializer name -> stored index, for parameters and buffers.
    by_name: HashMap<String, usize>,
    /// Initializer name -> stored index, for float initializers kept as constants (read
    /// only as an operator's setting), which [`Executor::train_also`] can make parameters.
    float_constants: HashMap<String, usize>,
    /// Synchronized BatchNorm's process group (see [`Executor::set_batch_norm_sync`]).
    batch_norm_sync: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
}

/// Float initializers with an element this large are masks or sentinels (e.g. an
/// additive attention mask of `finfo.min`), never trained weights.
const MASK_MAGNITUDE: f64 = 1e30;
/// Integer constants up to this many elements stay on the host as well (shapes, axes).
const HOST_INTS_LIMIT: usize = 1 << 12;

/// Whether a float initializer read at input `k` of `op` stays a constant there: an
/// operator's setting ([`Op::reads_setting`]), or the data of a shape operator (float
/// tables such as a rotary embedding's `inv_freq` reach the model through Reshape,
/// Expand, Slice... and are buffers, not weights).
fn reads_constant(op: &Op, k: usize) -> bool {
    op.reads_setting(k)
        || matches!(op, Op::Reshape { .. } | Op::Expand | Op::Tile | Op::Slice(_) | Op::Squeeze { .. } | Op::Unsqueeze { .. })
}

impl Executor {
    /// Compiles `model` as training and evaluation on a job's data run it: a merged
    /// decoder (an `If` chosen by a graph input, flattened by normalization: see
    /// `oto_onnx::branches`) as its first pass, the branch without the cache inputs
    /// ([`oto_onnx::branches::specialize`]); any other model as [`Executor::new`] does.
    pub fn first_pass(model: &Model, device: Device) -> Result<Executor> {
        match oto_onnx::branches::specialize(model)? {
            Some(branch) => Executor::new(&branch, device),
            None => Executor::new(model, device),
        }
    }

    /// Compiles `model` for `device`: parses every node (unsupported operators and
    /// invalid attributes are errors naming the node), uploads the initializers.
    pub fn new(model: &Model, device: Device) -> Result<Executor> {
        let graph = Graph::new(model)?;
        let proto = graph.proto;
        let model_path = model.path().to_path_buf();

        // Which initializers are BatchNorm running statistics, and how every initializer is read.
        let mut bn_stats: HashSet<&str> = HashSet::new();
        let mut constant_only: HashMap<&str, bool> = HashMap::new();
        let counted = oto_onnx::cost::parameter_names(&graph);
        for node in &proto.node {
            // A node that does not parse is reported when it is compiled below.
            let op = Op::parse(&graph, node).ok();
            for (k, input) in node.input.iter().enumerate().filter(|(_, i)| !i.is_empty()) {
                if op == Some(Op::BatchNormalization) && (k == 3 || k == 4) {
                    bn_stats.insert(input);
                }
                let entry = constant_only.entry(input.as_str()).or_insert(true);
                *entry &= op.as_ref().is_some_and(|op| reads_constant(op, k));
            }
        }

        let mut stored = Vec::new();
        let mut params = Vec::new();
        let mut buffers = Vec::new();
        let mut slots: HashMap<String, Slot> = HashMap::new();
        let mut by_name = HashMap::new();
        let mut float_constants = HashMap::new();
        for init in &proto.initializer {
            let name = init.name.clone().unwrap_or_default();
            if slots.contains_key(&name) {
                continue;
            }
            let value = model.tensor(init)?;
            let tensor = to_tch(&value, device).map_err(|m| Error::torch(format!("uploading initializer '{name}'"), m))?;
            let dtype = value.dtype();
            let kind = if !dtype.is_float() {
                StoredKind::Constant
            } else if bn_stats.contains(name.as_str()) {
                buffers.push(Buffer { name: name.clone(), tensor: tensor.shallow_clone() });
                StoredKind::Buffer(buffers.len() - 1)
            } else if is_weight(&value, constant_only.get(name.as_str()).copied().unwrap_or(true), counted.contains(name.as_str())) {
                let tensor = tensor.set_requires_grad(true);
                params.push(Parameter { name: name.clone(), tensor: tensor.shallow_clone(), frozen: false });
                StoredKind::Parameter(params.len() - 1)
            } else {
                StoredKind::Constant
            };
            let host_ints = small_ints(&value);
            let tensor = match kind {
                StoredKind::Parameter(i) => params[i].tensor.shallow_clone(),
                _ => tensor,
            };
            if kind == StoredKind::Constant && dtype.is_float() {
                float_constants.insert(name.clone(), stored.len());
            }
            if kind != StoredKind::Constant {
                by_name.insert(name.clone(), stored.len());
            }
            slots.insert(name, Slot::Stored(stored.len()));
            stored.push(Stored { tensor, host_ints });
        }

        // Graph inputs (not initializers).
        let mut dynamic_slots = 0usize;
        let mut inputs = Vec::new();
        let caches = graph.cache_inputs();
        for vi in graph.real_inputs() {
            let name = vi.name.clone().unwrap_or_default();
            let input = graph_input(&graph, vi, &caches)?;
            slots.insert(name, Slot::Dynamic(dynamic_slots));
            inputs.push((input, dynamic_slots));
            dynamic_slots += 1;
        }

        // Nodes: Constant nodes become stored constants, the others kernels.
        let mut nodes = Vec::new();
        for (_, node) in graph.nodes() {
            let label = node_label(node);
            if matches!(Op::parse(&graph, node), Ok(Op::Constant)) {
                let Some(out) = node.output.first() else {
                    continue;
                };
                let value = graph.constant(out)?.ok_or_else(|| model.error(&label, "Constant node has no value"))?;
                let tensor = to_tch(&value, device).map_err(|m| Error::torch(format!("uploading the value of {label}"), m))?;
                slots.insert(out.clone(), Slot::Stored(stored.len()));
                stored.push(Stored { tensor, host_ints: small_ints(&value) });
                continue;
            }
            let kernel = ops::compile(&graph, node, device).map_err(|m| Error::Unsupported {
                model: model_path.clone(),
                node: label.clone(),
                message: m,
            })?;
            let node_inputs = node
                .input
                .iter()
                .map(|i| {
                    if i.is_empty() {
                        Ok(None)
                    } else {
                        slots.get(i).copied().map(Some).ok_or_else(|| model.error(&label, format!("reads '{i}' before it is computed")))
                    }
                })
                .collect::<oto_onnx::Result<Vec<_>>>()?;
            let outputs = node
                .output
                .iter()
                .map(|o| {
                    if o.is_empty() {
                        return None;
                    }
                    slots.insert(o.clone(), Slot::Dynamic(dynamic_slots));
                    dynamic_slots += 1;
                    Some(dynamic_slots - 1)
                })
                .collect();
            nodes.push(PlannedNode { label, inputs: node_inputs, outputs, kernel, release: Vec::new() });
        }

        let outputs = proto
            .output
            .iter()
            .map(|o| {
                let name = o.name.clone().unwrap_or_default();
                // Sequences, maps and optionals would come back as a plain tensor: refuse them.
                if let Some(value) = o.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                    if !matches!(value, type_proto::Value::TensorType(_)) {
                        return Err(model
                            .error(format!("graph output '{name}'"), "is not a tensor (the executor computes tensors only)")
                            .into());
                    }
                }
                let slot = slots.get(&name).copied().ok_or_else(|| model.error(format!("graph output '{name}'"), "is not computed"))?;
                Ok((name, slot))
            })
            .collect::<Result<Vec<_>>>()?;

        // Value lifetimes: a dynamic slot is released by its last reader (or by its
        // producer when nothing reads it); graph outputs are kept.
        let kept: HashSet<usize> = outputs.iter().filter_map(|(_, s)| if let Slot::Dynamic(d) = s { Some(*d) } else { None }).collect();
        let mut last_use: Vec<Option<usize>> = vec![None; dynamic_slots];
        for (position, planned) in nodes.iter().enumerate() {
            for slot in planned.inputs.iter().flatten() {
                if let Slot::Dynamic(d) = slot {
                    last_use[*d] = Some(position);
                }
            }
            for d in planned.outputs.iter().flatten() {
                last_use[*d].get_or_insert(position);
            }
        }
        for (position, planned) in nodes.iter().enumerate() {
            for d in planned.outputs.iter().flatten() {
                if last_use[*d].is_none() {
                    last_use[*d] = Some(position);
                }
            }
        }
        for (d, position) in last_use.iter().enumerate() {
            if let Some(p) = position {
                if !kept.contains(&d) {
                    nodes[*p].release.push(d);
                }
            }
        }

        Ok(Executor {
            model_path,
            device,
            stored,
            params,
            buffers,
            nodes,
            dynamic_slots,
            inputs,
            outputs,
            by_name,
            float_constants,
            batch_norm_sync: None,
        })
    }

    /// The device every tensor lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// With a process group, BatchNormalization in training mode normalizes with the
    /// statistics of the whole global batch (every rank's samples: synchronized BatchNorm,
    /// differentiable through the ranks); without, with this process's samples (as DDP).
    pub fn set_batch_norm_sync(&mut self, group: Option<std::sync::Arc<crate::dist::ProcessGroup>>) {
        self.batch_norm_sync = group;
    }

    /// Whether BatchNorm is synchronized over a process group.
    pub fn batch_norm_synced(&self) -> bool {
        self.batch_norm_sync.is_some()
    }

    /// The graph inputs, in graph order.
    pub fn inputs(&self) -> impl Iterator<Item = &GraphInput> {
        self.inputs.iter().map(|(i, _)| i)
    }

    /// The graph output names, in graph order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(|(n, _)| n.as_str())
    }

    /// Every parameter (trainable or frozen), in initializer order.
    pub fn parameters(&self) -> &[Parameter] {
        &self.params
    }

    /// The buffers (BatchNorm running statistics), in initializer order.
    pub fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    /// The parameters training updates (not frozen).
    pub fn trainable(&self) -> impl Iterator<Item = &Parameter> {
        self.params.iter().filter(|p| !p.frozen)
    }

    /// Trains the named float initializers too, where they were kept as constants for
    /// being read only as an operator's setting: a pruning group's producers are zeroed
    /// by training, and a class token broadcast by `Expand` is one (an `Expand`'s data is
    /// a constant table more often: rotary frequencies). Other names are left as they are.
    pub fn train_also<S: AsRef<str>>(&mut self, names: &[S]) {
        for name in names {
            let Some(index) = self.float_constants.remove(name.as_ref()) else { continue };
            let tensor = self.stored[index].tensor.detach().set_requires_grad(true);
            self.stored[index].tensor = tensor.shallow_clone();
            self.params.push(Parameter { name: name.as_ref().to_string(), tensor, frozen: false });
            self.by_name.insert(name.as_ref().to_string(), index);
        }
    }

    /// Freezes the named parameters (no gradient, never updated). Unknown names are an error.
    pub fn freeze<S: AsRef<str>>(&mut self, names: &[S]) -> Result<()> {
        for name in names {
            let name = name.as_ref();
            let p = self.params.iter_mut().find(|p| p.name == name).ok_or_else(|| {
                Error::Config(format!("cannot freeze '{name}': {} has no trainable initializer of that name", self.model_path.display()))
            })?;
            p.frozen = true;
            p.tensor = p.tensor.detach().set_requires_grad(false);
            if let Some(&index) = self.by_name.get(name) {
                self.stored[index].tensor = p.tensor.shallow_clone();
            }
        }
        Ok(())
    }

    /// Parameters and buffers by initializer name (shallow handles to the live tensors).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.tensor.shallow_clone()))
            .chain(self.buffers.iter().map(|b| (b.name.clone(), b.tensor.shallow_clone())))
            .collect()
    }

    /// Overwrites parameters and buffers with `values` (by name; shape and element type
    /// must match). Names not in the model are an error.
    pub fn load_state(&mut self, values: &[(String, Tensor)]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, value) in values {
            let index = *self
                .by_name
                .get(name)
                .ok_or_else(|| Error::Config(format!("'{name}' is not a parameter or buffer of {}", self.model_path.display())))?;
            let target = &self.stored[index].tensor;
            if target.size() != value.size() {
                return Err(Error::Config(format!("'{name}': shape {:?} does not match the model's {:?}", value.size(), target.size())));
            }
            let mut target = target.shallow_clone();
            let value = value
                .f_to_device(self.device)
                .and_then(|v| v.f_to_kind(target.kind()))
                .map_err(|e| Error::torch(format!("loading '{name}'"), e))?;
            target.f_copy_(&value).map_err(|e| Error::torch(format!("loading '{name}'"), e))?;
        }
        Ok(())
    }

    /// Runs the graph on `inputs` (one tensor per graph input, in graph order) and
    /// returns the graph outputs in order. Inputs are moved to the executor's device.
    /// Gradients are recorded unless called under [`tch::no_grad`].
    pub fn forward(&self, inputs: &[Tensor], mode: Mode) -> Result<Vec<Tensor>> {
        self.forward_inspecting(inputs, mode, &mut |_, _, _| {})
    }

    /// The first node, in execution order, through which libtorch cannot differentiate
    /// twice (a backward formula without a derivative of its own), as an
    /// [`Error::Unsupported`] naming it; `None` when every node has a double backward.
    /// Runs the graph on `inputs` and, at every node, differentiates that node alone twice
    /// (a sum of squares of its outputs with respect to its floating-point inputs): a
    /// diagnosis for Hessian-vector products ([`crate::hessian`]) that failed.
    pub fn double_backward_gap(&self, inputs: &[Tensor], mode: Mode) -> Result<Option<Error>> {
        let mut gap = None;
        tch::with_grad(|| {
            self.forward_inspecting(inputs, mode, &mut |label, kernel, ctx| {
                if gap.is_none() {
                    if let Some(message) = double_backward_fails(kernel, ctx) {
                        gap = Some(Error::Unsupported {
                            model: self.model_path.clone(),
                            node: label.to_string(),
                            message: format!(
                                "libtorch cannot differentiate this operator twice ({message}), so Hessian-vector products cannot pass through it"
                            ),
                        });
                    }
                }
            })
        })?;
        Ok(gap)
    }

    /// [`Executor::forward`], calling `inspect` with each node's label, kernel and
    /// inputs before the node runs.
    fn forward_inspecting(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        inspect: &mut dyn FnMut(&str, &ops::Kernel, &ops::Ctx<'_>),
    ) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            let names: Vec<&str> = self.inputs.iter().map(|(i, _)| i.name.as_str()).collect();
            return Err(Error::Input {
                name: names.join(", "),
                message: format!("the model has {} inputs but {} tensors were given", names.len(), inputs.len()),
            });
        }
        let mut values: Vec<Option<Tensor>> = (0..self.dynamic_slots).map(|_| None).collect();
        for ((spec, slot), tensor) in self.inputs.iter().zip(inputs) {
            check_input(spec, tensor)?;
            let tensor = if tensor.device() == self.device { tensor.shallow_clone() } else { tensor.to_device(self.device) };
            values[*slot] = Some(tensor);
        }
        for planned in &self.nodes {
            let fail = |message: String| Error::Op { model: self.model_path.clone(), node: planned.label.clone(), message };
            let mut args: Vec<Option<Tensor>> = Vec::with_capacity(planned.inputs.len());
            let mut host: Vec<Option<&[i64]>> = Vec::with_capacity(planned.inputs.len());
            for slot in &planned.inputs {
                match slot {
                    None => {
                        args.push(None);
                        host.push(None);
                    }
                    Some(Slot::Stored(i)) => {
                        args.push(Some(self.stored[*i].tensor.shallow_clone()));
                        host.push(self.stored[*i].host_ints.as_deref());
                    }
                    Some(Slot::Dynamic(d)) => {
                        let t =
                            values[*d].as_ref().ok_or_else(|| fail(format!("input value {d} was released before use (executor bug)")))?;
                        args.push(Some(t.shallow_clone()));
                        host.push(None);
                    }
                }
            }
            align_devices(&mut args).map_err(&fail)?;
            let ctx =
                ops::Ctx { inputs: &args, host: &host, training: mode == Mode::Train, batch_norm_sync: self.batch_norm_sync.as_deref() };
            inspect(&planned.label, &planned.kernel, &ctx);
            let results = (planned.kernel)(&ctx).map_err(|e| fail(e.0))?;
            for (out, value) in planned.outputs.iter().zip(results.into_iter().map(Some).chain(std::iter::repeat_with(|| None))) {
                if let Some(d) = out {
                    match value {
                        Some(v) => values[*d] = Some(v),
                        None => return Err(fail(format!("produced fewer outputs than the node declares (output slot {d})"))),
                    }
                }
            }
            for d in &planned.release {
                values[*d] = None;
            }
        }
        self.outputs
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Stored(i) => Ok(self.stored[*i].tensor.shallow_clone()),
                Slot::Dynamic(d) => {
                    values[*d].take().ok_or_else(|| Error::Input { name: name.clone(), message: "graph output was not computed".into() })
                }
            })
            .collect()
    }

    /// A copy of `model` whose initializers hold this executor's parameters and
    /// buffers (each in its original element type); everything else is unchanged.
    pub fn updated_model(&self, model: &Model) -> Result<Model> {
        let mut proto = model.proto.clone();
        let values: HashMap<String, Tensor> = self.state().into_iter().collect();
        if let Some(graph) = proto.graph.as_mut() {
            for init in graph.initializer.iter_mut() {
                let name = init.name.clone().unwrap_or_default();
                let Some(value) = values.get(&name) else {
                    continue;
                };
                let code = init.data_type.unwrap_or(0);
                let dtype = DType::from_onnx(code)
                    .ok_or_else(|| model.error(format!("initializer '{name}'"), "has an unsupported element type"))?;
                let value = value.f_to_kind(kind_of(dtype)).map_err(|e| Error::torch(format!("writing back '{name}'"), e))?;
                let tensor = convert::from_tch(&value).map_err(|m| Error::torch(format!("writing back '{name}'"), m))?;
                let mut new = tensor.to_proto(&name);
                new.doc_string = init.doc_string.clone();
                *init = new;
            }
        }
        let path = model.path().to_string_lossy().into_owned();
        Ok(Model::from_proto(proto, &path, model.base_dir().map(|p| p.to_path_buf()))?)
    }
}

/// libtorch's message when `kernel` on `ctx`'s inputs cannot be differentiated twice:
/// the inputs become fresh leaves, `s = sum(outputs^2)`, `g = ds/dinputs` with a graph,
/// then `d(sum(g^2))/dinputs`. `None` when that works (or nothing is differentiable).
fn double_backward_fails(kernel: &ops::Kernel, ctx: &ops::Ctx<'_>) -> Option<String> {
    let leaves: Vec<Option<Tensor>> = ctx
        .inputs
        .iter()
        .map(|t| t.as_ref().map(|t| if t.is_floating_point() { t.detach().set_requires_grad(true) } else { t.shallow_clone() }))
        .collect();
    let probe = ops::Ctx { inputs: &leaves, host: ctx.host, training: ctx.training, batch_norm_sync: None };
    let outputs = kernel(&probe).ok()?;
    let leaves: Vec<&Tensor> = leaves.iter().flatten().filter(|t| t.requires_grad()).collect();
    let squares = |ts: &mut dyn Iterator<Item = &Tensor>| -> Option<Tensor> {
        ts.filter(|t| t.defined() && t.requires_grad() && t.is_floating_point())
            .map(|t| t.to_kind(tch::Kind::Double).square().sum(tch::Kind::Double))
            .reduce(|a, b| a + b)
    };
    let first = squares(&mut outputs.iter())?;
    if leaves.is_empty() {
        return None;
    }
    let message = |e: tch::TchError| ops::OpError::from(e).0;
    let grads = match Tensor::f_run_backward(&[first], &leaves, true, true) {
        Ok(g) => g,
        Err(e) => return Some(message(e)),
    };
    let second = squares(&mut grads.iter())?;
    Tensor::f_run_backward(&[second], &leaves, false, false).err().map(message)
}

/// Whether a float initializer is trained: one [`oto_onnx::cost::parameter_count`] counts
/// (`counted`: a one-element tensor only where a layer learns it, such as a one-channel bias
/// or PReLU's single slope, not a literal of the file like the TorchScript exporter's
/// `[1.0]` in `1 / sqrt(d)`), and not a scalar, a mask or sentinel, or one read only as an
/// operator's setting (a bound, a fill value, a shape).
fn is_weight(value: &oto_onnx::Tensor, constant_only: bool, counted: bool) -> bool {
    if !counted || value.shape.is_empty() || constant_only || value.numel() == 0 {
        return false;
    }
    !value.to_f64_vec().iter().any(|v| !v.is_finite() || v.abs() >= MASK_MAGNITUDE)
}

fn small_ints(value: &oto_onnx::Tensor) -> Option<Vec<i64>> {
    if value.numel() > HOST_INTS_LIMIT {
        return None;
    }
    value.to_i64_vec()
}

/// Moves inputs kept on the host (shape computations) to the device of the others.
fn align_devices(args: &mut [Option<Tensor>]) -> std::result::Result<(), String> {
    let Some(device) = args.iter().flatten().map(Tensor::device).find(|d| *d != Device::Cpu) else {
        return Ok(());
    };
    for t in args.iter_mut().flatten() {
        if t.device() != device {
            *t = t.f_to_device(device).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A graph input as the executor feeds it; `caches` are the graph's [`Graph::cache_inputs`].
fn graph_input(graph: &Graph<'_>, vi: &ValueInfoProto, caches: &HashMap<String, usize>) -> Result<GraphInput> {
    let name = vi.name.clone().unwrap_or_default();
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(graph.model.error(format!("graph input '{name}'"), "is not a tensor").into());
    };
    let code = t.elem_type.unwrap_or(0);
    let dtype = DType::widened_from_onnx(code).ok_or_else(|| {
        graph.model.error(
            format!("graph input '{name}'"),
            format!("has element type {}, which oto does not handle", oto_onnx::tensor::onnx_type_name(code)),
        )
    })?;
    let dims = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(dimension::Value::DimValue(v)) if v > 0 => Some(v),
                _ => None,
            })
            .collect()
    });
    let cache_axis = caches.get(&name).copied();
    Ok(GraphInput { name, dtype, dims, cache_axis })
}

/// Checks a tensor against a graph input's declared element type and dimensions.
pub fn check_input(spec: &GraphInput, tensor: &Tensor) -> Result<()> {
    let kind = tensor.kind();
    if kind != kind_of(spec.dtype) {
        return Err(Error::Input { name: spec.name.clone(), message: format!("expected element type {:?}, got {kind:?}", spec.dtype) });
    }
    if let Some(dims) = &spec.dims {
        let actual = tensor.size();
        let matches = actual.len() == dims.len() && dims.iter().zip(&actual).all(|(d, a)| d.is_none_or(|d| d == *a));
        if !matches {
            return Err(Error::Input {
                name: spec.name.clone(),
                message: format!("expected shape {}, got {actual:?}", describe_dims(dims)),
            });
        }
    }
    Ok(())
}

/// `[?, 3, 64, 64]`-style description of declared dimensions.
pub fn describe_dims(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.map_or("?".to_string(), |d| d.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kernel: ops::Kernel) -> Option<String> {
        let x = Tensor::from_slice(&[-4.0f64, -0.5, 0.25, 2.0, 5.0]);
        double_backward_fails(&kernel, &ops::Ctx { inputs: &[Some(x)], host: &[None], training: false, batch_norm_sync: None })
    }

    /// libtorch's `hardsigmoid` has no double backward (the executor's HardSigmoid is a
    /// clamp, which has): the probe reports libtorch's message for it, nothing for tanh.
    #[test]
    fn double_backward_probe_finds_missing_second_derivatives() {
        let message = run(Box::new(|ctx: &ops::Ctx<'_>| Ok(vec![ctx.input(0)?.f_hardsigmoid()?]))).unwrap();
        assert!(message.contains("hardsigmoid_backward"), "{message}");
        assert_eq!(run(Box::new(|ctx: &ops::Ctx<'_>| Ok(vec![ctx.input(0)?.f_tanh()?]))), None);
        // A node whose output does not depend on a float input has nothing to probe.
        assert_eq!(run(Box::new(|ctx: &ops::Ctx<'_>| Ok(vec![ctx.input(0)?.f_sign()?]))), None);
    }
}

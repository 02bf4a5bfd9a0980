//! `oto prune`: the one-shot train-and-prune job, with a progress bar, Ctrl-C handling
//! (checkpoint, then exit 130) and `--resume`.

use crate::error::input_error;
use crate::job::config::JobSpec;
use crate::job::report::summary_table;
use crate::job::{self, Event, Observer, Setup};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Arguments of `oto prune`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  oto prune --model graphs/zoo/demo_cnn.onnx --data examples/data/digits_train.npz \\
            --val examples/data/digits_test.npz --target-sparsity 0.5 --epochs 8 --lr 0.05 --out pruned/
      train with HESSO so that half of the prunable channels become zero, then cut them
  oto prune --config examples/digits.toml
      the same job from a TOML file (keys named like the options, plus [hesso] and [cric_settings])
  oto prune --config examples/digits.toml --target-macs 0.25
      a budget in the user's terms: a model with a quarter of the MACs (or --target-params R)
  oto prune --model bert.onnx --data tokens.npz --target-sparsity 0.3 --optimizer adamw --lr 3e-5
      data without labels: distill from the original model's outputs
  oto prune --model bert/model.onnx --text corpus.txt --target-sparsity 0.3 --steps 200
      raw text, tokenized by bert/tokenizer.json; labels from a tab-separated second column, else distillation
  oto prune --model resnet.onnx --images photos/ --val-split 0.1 --target-sparsity 0.5
      an image folder (one sub-folder per class), resized to the model's input, ImageNet normalization
  oto prune --resume pruned/
      continue an interrupted job (Ctrl-C writes a checkpoint and exits with code 130)

Outputs in --out: model.onnx (compact), model.sparse.onnx (--save-sparse), groups.json,
report.json, report.md, curve.png, checkpoint/. Exit code 0 success, 1 runtime failure
(e.g. the loss became NaN; the last good checkpoint is kept), 2 bad input, 130 interrupted.")]
pub struct Args {
    /// The trained ONNX model.
    #[arg(long, value_name = "MODEL.onnx")]
    pub model: Option<PathBuf>,
    /// Training data: .npz or .safetensors, one array per model input (+ `labels`).
    #[arg(long, value_name = "TRAIN")]
    pub data: Option<PathBuf>,
    /// Held-out data for the metric and the verification (default: the training data).
    #[arg(long, value_name = "VAL")]
    pub val: Option<PathBuf>,
    /// Fraction of the prunable structures to remove, in [0, 1) [default: 0.5].
    #[arg(long, allow_negative_numbers = true)]
    pub target_sparsity: Option<f64>,
    /// Keep this fraction of the model's MACs, in (0, 1] (a budget instead of --target-sparsity).
    #[arg(long, value_name = "R", allow_negative_numbers = true, conflicts_with_all = ["target_sparsity", "target_params"])]
    pub target_macs: Option<f64>,
    /// Keep this fraction of the model's parameters, in (0, 1] (a budget instead of --target-sparsity).
    #[arg(long, value_name = "R", allow_negative_numbers = true, conflicts_with_all = ["target_sparsity"])]
    pub target_params: Option<f64>,
    /// The largest share of any group's elements to remove, in (0, 1]: no layer collapses [default: 0.9].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub max_group_sparsity: Option<f64>,
    /// Training length in epochs [default: 10].
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<f64>,
    /// Training length in optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Samples per batch [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base optimizer: sgd, adam or adamw [default: sgd].
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate [default: 0.01 for sgd, 1e-3 for adam(w)].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Learning-rate schedule: cosine, step or constant [default: cosine].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Linear learning-rate warm-up steps [default: 0].
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Once pruning has finished: continue the learning-rate schedule, or restart it over
    /// the steps left, from --lr or --restart-lr (for a model the job trains from scratch)
    /// [default: continue].
    #[arg(long, value_name = "continue|restart")]
    pub lr_after_pruning: Option<String>,
    /// With --lr-after-pruning restart: the rate the restart starts from [default: --lr].
    #[arg(long, value_name = "LR", allow_negative_numbers = true)]
    pub restart_lr: Option<f64>,
    /// With --lr-after-pruning restart: its linear warm-up, as a share of the steps left
    /// (0 to 1) [default: 0].
    #[arg(long, value_name = "SHARE", allow_negative_numbers = true)]
    pub restart_warmup: Option<f64>,
    /// Weight decay [default: the optimizer's].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Run the CRIC phase to choose what to prune more carefully.
    #[arg(long)]
    pub cric: bool,
    /// cross-entropy, mse, bce or distill [default: cross-entropy with labels, distill without].
    #[arg(long)]
    pub loss: Option<String>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// A TOML job file; options given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output folder [default: oto-out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the job whose --out folder is DIR (its settings are reused).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "data", "val", "target_sparsity", "target_macs", "target_params", "max_group_sparsity", "epochs", "steps", "batch_size", "optimizer", "lr", "schedule", "warmup_steps", "lr_after_pruning", "restart_lr", "restart_warmup", "weight_decay", "cric", "loss", "config", "out", "seed", "save_sparse", "quantize", "quantize_block_size", "unprunable", "text", "images"])]
    pub resume: Option<PathBuf>,
    /// Seed of the data order, dropout and initial choices [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write the full-size trained model with its pruned structures at zero.
    #[arg(long)]
    pub save_sparse: bool,
    /// Also quantize the compact model (model.qdq.onnx) to this size budget: stored weight bytes over float32 ones (int8 ~0.25), bits per layer by HAWQ-V2.
    #[arg(long, value_name = "R")]
    pub quantize: Option<f64>,
    /// Block size of int4 weights with --quantize; 0: one scale per output channel [default: 32].
    #[arg(long, value_name = "N", requires = "quantize")]
    pub quantize_block_size: Option<usize>,
    /// libtorch threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the group(s) of this initializer or node (repeatable).
    #[arg(long, value_name = "NAME")]
    pub unprunable: Vec<String>,
    /// Train data-parallel in N local worker processes (Gloo on CPU; with --device cuda one
    /// GPU per worker, NCCL); --batch-size stays the global batch. Under torchrun (RANK and
    /// WORLD_SIZE set) each process is one rank and this is ignored.
    #[arg(long, value_name = "N")]
    pub nproc: Option<usize>,
    /// Data-parallel: BatchNorm statistics over the global batch (SyncBatchNorm) instead of
    /// each process's share of it (DDP's default); kept by --resume.
    #[arg(long)]
    pub sync_batch_norm: bool,
    /// Raw text or image folders instead of --data.
    #[command(flatten)]
    pub data_args: super::data::DataArgs,
}

impl Args {
    fn spec(&self) -> JobSpec {
        self.data_args.apply(JobSpec {
            model: self.model.clone(),
            data: self.data.clone(),
            val: self.val.clone(),
            out: self.out.clone(),
            target_sparsity: self.target_sparsity,
            target_macs: self.target_macs,
            target_params: self.target_params,
            max_group_sparsity: self.max_group_sparsity,
            epochs: self.epochs,
            steps: self.steps,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            schedule: self.schedule.clone(),
            warmup_steps: self.warmup_steps,
            lr_after_pruning: self.lr_after_pruning.clone(),
            restart_lr: self.restart_lr,
            restart_warmup: self.restart_warmup,
            weight_decay: self.weight_decay,
            loss: self.loss.clone(),
            device: self.device.clone(),
            seed: self.seed,
            cric: self.cric.then_some(true),
            save_sparse: self.save_sparse.then_some(true),
            quantize: self.quantize,
            quantize_block_size: self.quantize_block_size,
            threads: self.threads,
            unprunable: (!self.unprunable.is_empty()).then(|| self.unprunable.clone()),
            ..JobSpec::default()
        })
    }
}

/// Shows the job's progress: a bar on a terminal, plain lines otherwise; nothing with `-q`.
struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    tty: bool,
    total: u64,
    sparsity: f64,
    metric: String,
    phase: String,
}

impl Progress {
    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Observer for Progress {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Phase(name) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                tracing::info!("{name}");
                self.line(&format!("{name}..."));
            }
            Event::Training { total, done } => {
                self.total = total;
                if !self.quiet && self.tty {
                    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                    let style = ProgressStyle::with_template("{elapsed_precise} {bar:30.cyan/blue} {pos}/{len} steps  {msg}  ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style);
                    bar.set_position(done);
                    bar.reset_eta();
                    self.bar = Some(bar);
                }
                self.line(&format!(
                    "training: {total} steps{}",
                    if done > 0 { format!(", continuing after step {done}") } else { String::new() }
                ));
            }
            Event::Extended { total, reason } => {
                self.total = total;
                if let Some(bar) = &self.bar {
                    bar.set_length(total);
                }
                self.line(&format!("{reason}: {total} steps in all"));
            }
            Event::Step { step, loss, point } => {
                if let Some(p) = point {
                    self.sparsity = p.group_sparsity;
                    self.phase.clone_from(&p.phase);
                    tracing::debug!(step, loss, lr = p.lr, group_sparsity = p.group_sparsity, "step");
                }
                if let Some(bar) = &self.bar {
                    bar.set_position(step);
                    bar.set_message(format!("loss {loss:.4}{}  group sparsity {:.3}  {}", self.metric, self.sparsity, self.phase));
                }
            }
            Event::Eval(p) => {
                self.metric = match p.accuracy {
                    Some(a) => format!("  eval acc {:.2}%", 100.0 * a),
                    None => format!("  eval loss {:.4}", p.loss),
                };
                tracing::info!(step = p.step, loss = p.loss, accuracy = p.accuracy, "evaluation");
                if self.bar.is_none() {
                    self.line(&format!(
                        "step {}/{}:{}  group sparsity {:.3}  ({})",
                        p.step, self.total, self.metric, self.sparsity, self.phase
                    ));
                }
            }
            Event::Note(text) => {
                tracing::info!("{text}");
                self.line(&text);
            }
        }
    }
}

/// Runs `oto prune`.
pub fn run(args: &Args, quiet: bool, _verbose: u8) -> Result<()> {
    let env = oto_torch::dist::DistEnv::from_env().map_err(input_error)?;
    match (&env, args.nproc) {
        (None, Some(0)) => return Err(input_error(anyhow::anyhow!("--nproc must be at least 1"))),
        (None, Some(n)) if n > 1 => return super::launch::launch(n, args.threads),
        _ => {}
    }
    let rank = env.as_ref().map(|e| format!("rank {} of {}: ", e.rank, e.world)).unwrap_or_default();
    let follower = env.as_ref().is_some_and(|e| e.rank > 0);
    run_process(args, quiet || follower, env.as_ref()).map_err(|e| match e.is::<crate::job::Interrupted>() {
        // Rank 0 says where the checkpoint is; the others only exit with the same code.
        true if follower => super::launch::Exit(130).into(),
        true => e,
        false if rank.is_empty() => e,
        false => e.context(rank.trim_end_matches(": ").to_string()),
    })
}

/// The device of one rank: with CUDA, the GPU of its local rank.
fn rank_device(requested: Option<&str>, env: &oto_torch::dist::DistEnv) -> Option<String> {
    let cuda = match requested.map(str::trim) {
        Some("cuda") => true,
        Some("auto") | None => oto_torch::tch::Cuda::is_available(),
        _ => false,
    };
    if cuda {
        Some(format!("cuda:{}", env.local_rank))
    } else {
        requested.map(str::to_string)
    }
}

/// Seconds a collective may wait for the other ranks (`OTO_DIST_TIMEOUT`, default 300).
fn dist_timeout() -> Result<std::time::Duration> {
    match std::env::var("OTO_DIST_TIMEOUT") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| input_error(anyhow::anyhow!("OTO_DIST_TIMEOUT={v:?} is not a positive number of seconds"))),
        Err(_) => Ok(std::time::Duration::from_secs(300)),
    }
}

/// One process of the job: the whole job, or one rank of a data-parallel one.
fn run_process(args: &Args, quiet: bool, env: Option<&oto_torch::dist::DistEnv>) -> Result<()> {
    let mut spec = args.spec();
    let device = env.map_or_else(|| args.device.clone(), |e| rank_device(args.device.as_deref(), e));
    spec.device.clone_from(&device);
    let mut setup = match &args.resume {
        Some(dir) => Setup::resume(dir, device, args.threads)?,
        None => {
            let file = match &args.config {
                Some(path) => JobSpec::from_toml_file(path).map_err(input_error)?,
                None => JobSpec::default(),
            };
            Setup::new(&file.overridden_by(spec))?
        }
    };
    // A resumed job keeps the synchronized BatchNorm it was started with.
    setup.job.sync_batch_norm |= args.sync_batch_norm;
    if let Some(env) = env {
        let group = oto_torch::dist::ProcessGroup::init(env, setup.device(), dist_timeout()?).map_err(crate::error::classify)?;
        setup.parallel = Some(job::train::Parallel { group: Arc::new(group), sync_batch_norm: setup.job.sync_batch_norm });
    }
    // The first Ctrl-C asks the job to checkpoint and stop; a second one exits at once.
    let interrupt = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&interrupt))?;
        signal_hook::flag::register(signal, Arc::clone(&interrupt))?;
    }
    let out = setup.job.out.clone();
    let mut progress = Progress {
        bar: None,
        quiet,
        tty: std::io::stderr().is_terminal(),
        total: 0,
        sparsity: 0.0,
        metric: String::new(),
        phase: String::new(),
    };
    let result = job::run_rank(setup, &interrupt, &mut progress);
    if let Some(bar) = progress.bar.take() {
        bar.finish_and_clear();
    }
    let Some(report) = result? else { return Ok(()) };
    if !quiet {
        println!("{}", summary_table(&report));
        let branch = match &report.verification.branch_input {
            Some(input) => format!(" (the merged decoder's first pass; `oto check` compares both branches of '{input}')"),
            None => String::new(),
        };
        println!(
            "verified in onnxruntime: max |sparse - compact| = {:.2e} on {} held-out samples{branch}",
            report.verification.max_abs_diff, report.verification.samples
        );
        if let Some(q) = &report.quantization {
            print!("{}", job::quantize::report_section(q));
        }
        let sparse = if report.job.save_sparse { ", model.sparse.onnx" } else { "" };
        let qdq = if report.quantization.is_some() { ", model.qdq.onnx" } else { "" };
        println!("wrote {}/{{model.onnx{sparse}{qdq}, groups.json, report.json, report.md, curve.png}}", out.display());
    }
    Ok(())
}

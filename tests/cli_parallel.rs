//! Data-parallel `oto prune` on c10d (Gloo over loopback): 2 workers with a global batch
//! of 32 take the same steps as 1 process with a batch of 32 (the MLP, no BatchNorm; the
//! demo CNN with synchronized BatchNorm; CRIC; distillation without labels), under
//! `--nproc`, torchrun and two torchrun "nodes"; a resumed job ends as an uninterrupted one;
//! a killed worker stops the whole job with a non-zero exit code and the checkpoint intact.
//!
//! The models compared have no Dropout: each rank draws its own dropout masks (as PyTorch's
//! DDP does), so a model with dropout takes other steps on 2 workers than on 1 process.

mod common;
use common::*;
use oto_testkit::{root, zoo_path as zoo};
use oto_torch::tch::{self, Kind, Tensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 256 samples of Gaussian inputs for the MLP, with labels from a fixed linear map, or
/// without labels (the job then distills from the original model).
fn mlp_data(dir: &Path, labels: bool) -> PathBuf {
    let path = dir.join(if labels { "mlp_train.npz" } else { "mlp_unlabeled.npz" });
    tch::manual_seed(7);
    let x = Tensor::randn([256, 32], (Kind::Float, tch::Device::Cpu));
    let w = Tensor::randn([32, 10], (Kind::Float, tch::Device::Cpu));
    if labels {
        let labels = x.matmul(&w).argmax(1, false);
        Tensor::write_npz(&[("x", &x), ("labels", &labels)], &path).unwrap();
    } else {
        Tensor::write_npz(&[("x", &x)], &path).unwrap();
    }
    path
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// `oto prune` of `model` on `data` for `steps` steps, global batch 32, 1 thread a process.
fn prune_args(model: &Path, data: &Path, steps: u64, out: &Path) -> Vec<String> {
    let steps = steps.to_string();
    let args = [
        "prune",
        "--model",
        s(model),
        "--data",
        s(data),
        "--target-sparsity",
        "0.5",
        "--steps",
        &steps,
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--threads",
        "1",
        "--device",
        "cpu",
        "-q",
        "--out",
        s(out),
    ];
    args.iter().map(|a| a.to_string()).collect()
}

fn run(args: &[String]) {
    let out = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{args:?}\n{}\n{}", text(&out.stdout), text(&out.stderr));
}

/// The initializers of a compact model, by name.
fn initializers(path: &Path) -> Vec<(String, Vec<f64>)> {
    let model = oto_onnx::Model::load(path).unwrap();
    let graph = model.proto.graph.clone().unwrap();
    graph.initializer.iter().map(|t| (t.name.clone().unwrap_or_default(), model.tensor(t).unwrap().to_f64_vec())).collect()
}

/// Two finished jobs of `steps` steps took the same steps (with CRIC, its cycles' steps
/// on top): per-step losses within 1e-5 relative, the same pruned elements, compact models
/// of the same shapes with weights within 1e-4.
fn assert_same_job(one: &Path, two: &Path, steps: usize) {
    let replayed = json(&one.join("report.json"))["cric"]["replayed_steps"].as_u64().unwrap_or(0) as usize;
    let (a, b) = (json(&one.join("checkpoint/progress.json")), json(&two.join("checkpoint/progress.json")));
    let (a, b) = (a["history"]["steps"].as_array().unwrap(), b["history"]["steps"].as_array().unwrap());
    assert_eq!(a.len(), steps + replayed);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!((lx - ly).abs() <= 1e-5 * lx.abs(), "step {}: loss {lx} (1 process) vs {ly} (2 processes)", x["step"]);
        assert_eq!(x["group_sparsity"], y["group_sparsity"], "step {}", x["step"]);
    }
    let (ga, gb) = (json(&one.join("groups.json")), json(&two.join("groups.json")));
    assert_eq!(ga["pruned"], gb["pruned"], "different elements pruned");
    assert!(ga["pruned"].as_object().unwrap().values().any(|v| !v.as_array().unwrap().is_empty()), "nothing was pruned");
    let (ma, mb) = (initializers(&one.join("model.onnx")), initializers(&two.join("model.onnx")));
    assert_eq!(ma.len(), mb.len());
    for ((na, va), (nb, vb)) in ma.iter().zip(&mb) {
        assert_eq!((na, va.len()), (nb, vb.len()));
        let worst = va.iter().zip(vb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{na}: compact weights differ by {worst}");
    }
}

/// A build without the c10d shim (no Gloo headers) refuses `--nproc` with exit code 2 and
/// what to install; `true` when this build has the shim.
fn data_parallel_built(dir: &Path) -> bool {
    if oto_torch::dist::AVAILABLE {
        return true;
    }
    let mut args = prune_args(&zoo("mlp.onnx"), &mlp_data(dir, true), 2, &dir.join("refused"));
    args.extend(["--nproc", "2"].iter().map(|a| a.to_string()));
    let out = oto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("libgloo-dev"), "{}", text(&out.stderr));
    eprintln!("NOTE: this build has no data-parallel training (no Gloo headers): only the refusal was checked");
    false
}

#[test]
fn two_workers_take_the_steps_of_one_process() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    if !data_parallel_built(dir.path()) {
        return;
    }
    let mlp = (zoo("mlp.onnx"), mlp_data(dir.path(), true), Vec::<&str>::new());
    let cnn = (zoo("demo_cnn.onnx"), root().join("examples/data/digits_train.npz"), vec!["--sync-batch-norm"]);
    for (model, data, extra) in [mlp, cnn] {
        let name = model.file_stem().unwrap().to_string_lossy().into_owned();
        let one = dir.path().join(format!("{name}-1"));
        run(&prune_args(&model, &data, 20, &one));
        let two = dir.path().join(format!("{name}-2"));
        let mut args = prune_args(&model, &data, 20, &two);
        args.extend(["--nproc", "2"].iter().map(|a| a.to_string()));
        args.extend(extra.iter().map(|a| a.to_string()));
        run(&args);
        assert_same_job(&one, &two, 20);
    }
    // The same job as 2 ranks under torchrun (the venv's, on PATH as the Makefile sets it).
    let (model, data) = (zoo("demo_cnn.onnx"), root().join("examples/data/digits_train.npz"));
    let out_dir = dir.path().join("demo_cnn-torchrun");
    let exe = env!("CARGO_BIN_EXE_oto");
    let mut args = prune_args(&model, &data, 20, &out_dir);
    args.push("--sync-batch-norm".into());
    let out = Command::new("torchrun")
        .args(["--standalone", "--nproc-per-node", "2", "--no-python", exe])
        .args(&args)
        .output()
        .expect("torchrun (from the Python venv) must be on PATH");
    assert!(out.status.success(), "torchrun: {}\n{}", text(&out.stdout), text(&out.stderr));
    assert_same_job(&dir.path().join("demo_cnn-1"), &out_dir, 20);
}

/// The worker processes of the launcher `pid` (its children).
fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[test]
fn a_killed_worker_stops_every_rank_and_keeps_the_checkpoint() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    if !data_parallel_built(dir.path()) {
        return;
    }
    let out_dir = dir.path().join("job");
    let config = dir.path().join("job.toml");
    std::fs::write(&config, "checkpoint_every = 20\n").unwrap();
    let mut args = prune_args(&zoo("mlp.onnx"), &mlp_data(dir.path(), true), 100_000, &out_dir);
    args.extend(["--nproc", "2", "--config", s(&config)].iter().map(|a| a.to_string()));
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_oto")).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let state = out_dir.join("checkpoint/state.safetensors");
    let started = Instant::now();
    while !state.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(launcher.try_wait().unwrap().is_none(), "the job ended before a worker could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let workers = children(launcher.id());
    assert_eq!(workers.len(), 2, "workers {workers:?}");
    let killed = Instant::now();
    assert!(Command::new("kill").args(["-KILL", &workers[1].to_string()]).status().unwrap().success());
    let result = launcher.wait_with_output().unwrap();
    let elapsed = killed.elapsed();
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rank 1 of 2 was killed by a signal") && stderr.contains("--resume"), "{stderr}");
    // Rank 0 failed by itself (its collective lost the peer: its own error message), in
    // seconds (2-3 s on an idle 2-core machine; the bound leaves room for a loaded CI), long
    // before the launcher's 30 s grace period would have killed it.
    assert!(stderr.contains("rank 0 of 2") && stderr.contains("data-parallel"), "{stderr}");
    assert!(elapsed < Duration::from_secs(20), "the job took {elapsed:?} to stop");
    // The checkpoint is whole: the job continues from it (in one process).
    let ck = oto_torch::checkpoint::Checkpoint::read(&state, tch::Device::Cpu).unwrap();
    let step = ck.state["step"].as_u64().unwrap();
    assert!(step > 0 && step < 100_000, "checkpoint at step {step}");
    assert!(!out_dir.join("model.onnx").exists(), "a failed job wrote outputs");
}

/// `args` with `extra` appended.
fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Two values within 1e-5 relative.
fn assert_close(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((x - y).abs() <= 1e-5 * x.abs(), "{what}: {x} (1 process) vs {y} (2 processes)");
}

#[test]
fn cric_and_distillation_on_two_workers_take_the_steps_of_one_process() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    if !data_parallel_built(dir.path()) {
        return;
    }
    let mlp = zoo("mlp.onnx");
    let cric = ("cric", mlp_data(dir.path(), true), &["--cric"][..]);
    let distill = ("distill", mlp_data(dir.path(), false), &[][..]);
    for (name, data, extra) in [cric, distill] {
        let one = dir.path().join(format!("{name}-1"));
        run(&with(prune_args(&mlp, &data, 20, &one), extra));
        let two = dir.path().join(format!("{name}-2"));
        run(&with(with(prune_args(&mlp, &data, 20, &two), extra), &["--nproc", "2"]));
        assert_same_job(&one, &two, 20);
        let (ra, rb) = (json(&one.join("report.json")), json(&two.join("report.json")));
        if name == "distill" {
            assert!(ra["job"]["loss"].to_string().contains("istill"), "the job did not distill: {}", ra["job"]["loss"]);
            continue;
        }
        // CRIC took the same snapshot, measured the same probe losses (on the global batch)
        // and made the same cycle decisions.
        let (ca, cb) = (&ra["cric"], &rb["cric"]);
        assert!(ca["cycles"].as_u64().unwrap() >= 1, "{ca}");
        for key in ["phase", "snapshot_step", "cycles", "new_elements", "violating", "hybrid_start"] {
            assert_eq!(ca[key], cb[key], "CRIC's {key}");
        }
        assert_close(&ca["reference_loss"], &cb["reference_loss"], "CRIC's reference loss");
        let (pa, pb) = (ca["probes"].as_array().unwrap(), cb["probes"].as_array().unwrap());
        assert_eq!(pa.len(), pb.len());
        assert!(!pa.is_empty());
        for (x, y) in pa.iter().zip(pb) {
            assert_eq!((&x["group"], &x["zeroed"]), (&y["group"], &y["zeroed"]));
            for (lx, ly) in x["loss"].as_array().unwrap().iter().zip(y["loss"].as_array().unwrap()) {
                assert_close(lx, ly, &format!("probe loss of group {}", x["group"]));
            }
        }
    }
    // BatchNorm per rank (not synchronized) with CRIC: its snapshot and its probes (eval
    // mode) read the running statistics, which must be rank 0's on every rank; the replica
    // check at every CRIC phase (HESSO's state, CRIC's probe losses and snapshot) would
    // stop the job if they differed.
    let cnn = dir.path().join("cnn-cric-2");
    let digits = root().join("examples/data/digits_train.npz");
    run(&with(prune_args(&zoo("demo_cnn.onnx"), &digits, 20, &cnn), &["--cric", "--nproc", "2"]));
    let report = json(&cnn.join("report.json"));
    assert!(report["cric"]["cycles"].as_u64().unwrap() >= 1, "{}", report["cric"]);
}

#[test]
fn a_two_worker_job_resumed_after_an_interrupt_ends_as_an_uninterrupted_one() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    if !data_parallel_built(dir.path()) {
        return;
    }
    let (model, data) = (zoo("demo_cnn.onnx"), root().join("examples/data/digits_train.npz"));
    let config = dir.path().join("job.toml");
    std::fs::write(&config, "checkpoint_every = 10\n").unwrap();
    const STEPS: u64 = 100;
    let job =
        |out: &Path| with(prune_args(&model, &data, STEPS, out), &["--cric", "--nproc", "2", "--sync-batch-norm", "--config", s(&config)]);
    let full = dir.path().join("full");
    run(&job(&full));
    // The same job, Ctrl-C on one worker after the first checkpoint: every rank stops after
    // the same step, with a checkpoint.
    let part = dir.path().join("part");
    let launcher = Command::new(env!("CARGO_BIN_EXE_oto")).args(job(&part)).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let state = part.join("checkpoint/state.safetensors");
    let started = Instant::now();
    while !state.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let workers = children(launcher.id());
    assert_eq!(workers.len(), 2, "workers {workers:?}");
    assert!(Command::new("kill").args(["-INT", &workers[1].to_string()]).status().unwrap().success());
    let result = launcher.wait_with_output().unwrap();
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let ck = oto_torch::checkpoint::Checkpoint::read(&state, tch::Device::Cpu).unwrap();
    let step = ck.state["step"].as_u64().unwrap();
    assert!((10..STEPS).contains(&step), "interrupted at step {step}");
    assert!(!part.join("model.onnx").exists(), "an interrupted job wrote outputs");
    // Resumed on 2 workers, it ends where the uninterrupted job did (synchronized BatchNorm
    // is part of the saved job).
    assert_eq!(json(&part.join("checkpoint/job.json"))["sync_batch_norm"], true);
    run(&with(vec!["prune".into(), "--resume".into(), s(&part).into()], &["--nproc", "2", "-q"]));
    assert_same_job(&full, &part, STEPS as usize);
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn two_torchrun_nodes_take_the_steps_of_two_local_workers() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    if !data_parallel_built(dir.path()) {
        return;
    }
    let (model, data) = (zoo("mlp.onnx"), mlp_data(dir.path(), true));
    let local = dir.path().join("nproc-2");
    run(&with(prune_args(&model, &data, 20, &local), &["--nproc", "2"]));
    // Two torchrun launches on this machine stand for two machines of one process each
    // (static rendezvous at node 0's address: LOCAL_RANK 0 on both, RANK 0 and 1).
    let nodes = |outs: [&Path; 2]| {
        let port = free_port().to_string();
        let launches: Vec<_> = (0..2)
            .map(|node: usize| {
                let rank = node.to_string();
                Command::new("torchrun")
                    .args(["--nnodes", "2", "--nproc-per-node", "1", "--node-rank", &rank, "--master-addr", "127.0.0.1"])
                    .args(["--master-port", &port, "--no-python", env!("CARGO_BIN_EXE_oto")])
                    .args(prune_args(&model, &data, 20, outs[node]))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("torchrun (from the Python venv) must be on PATH")
            })
            .collect();
        for (node, launch) in launches.into_iter().enumerate() {
            let out = launch.wait_with_output().unwrap();
            let stderr = text(&out.stderr);
            assert!(out.status.success(), "node {node}: {}\n{stderr}", text(&out.stdout));
            // Rank 0 joins the store torchrun's agent serves instead of trying to serve it too.
            assert!(!stderr.contains("failed to bind"), "node {node}: {stderr}");
        }
    };
    // One output folder both nodes see (shared storage).
    let shared = dir.path().join("shared");
    nodes([&shared, &shared]);
    assert_same_job(&local, &shared, 20);
    // A folder per node: only node 0 (rank 0) writes; node 1's folder is not even created.
    let (node0, node1) = (dir.path().join("node0"), dir.path().join("node1"));
    nodes([&node0, &node1]);
    assert_same_job(&local, &node0, 20);
    assert!(!node1.exists(), "node 1 wrote into {}", node1.display());
}

/// The per-step losses a finished job recorded.
fn losses(out: &Path) -> Vec<f64> {
    let progress = json(&out.join("checkpoint/progress.json"));
    progress["history"]["steps"].as_array().unwrap().iter().map(|p| p["loss"].as_f64().unwrap()).collect()
}

/// Dropout in training mode (alexnet_lite, ratio 0.5): each rank draws its own masks, as
/// DDP's processes do, so 2 workers do not take one process's steps; the masks are seeded
/// (seed, step, rank), so the same 2-worker job takes the same steps every time.
#[test]
fn dropout_masks_are_drawn_per_rank_and_reproducible() {
    let _job = one_job_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    if !data_parallel_built(dir.path()) {
        return;
    }
    let data = dir.path().join("images.npz");
    tch::manual_seed(3);
    let x = Tensor::randn([128, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
    let labels = Tensor::randint(10, [128], (Kind::Int64, tch::Device::Cpu));
    Tensor::write_npz(&[("x", &x), ("labels", &labels)], &data).unwrap();
    let model = oto_testkit::legacy_path("alexnet_lite.onnx");
    let job = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        run(&with(prune_args(&model, &data, 10, &out), extra));
        losses(&out)
    };
    let one = job("one", &[]);
    let (two_a, two_b) = (job("two-a", &["--nproc", "2"]), job("two-b", &["--nproc", "2"]));
    assert_eq!(two_a.len(), 10);
    assert_eq!(two_a, two_b, "the same 2-worker job took other steps");
    let differs = one.iter().zip(&two_a).any(|(a, b)| (a - b).abs() > 1e-5 * a.abs());
    assert!(differs, "2 workers with dropout took exactly one process's steps: {one:?} vs {two_a:?}");
}

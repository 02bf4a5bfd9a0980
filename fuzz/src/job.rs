//! Job files (`oto prune --config`): seeds, line-level mutations, and the stages they go
//! through (parse and check, then resolve).

use crate::{enter, InputReport, Rng, Stage, JOB_NAME};
use oto::job::config::JobSpec;
use std::path::Path;

/// A job file that sets every key, so that mutations reach each of them.
const FULL_JOB: &str = r#"model = "model.onnx"
data = "train.npz"
val = "val.npz"
out = "out"
target_sparsity = 0.5
steps = 100
batch_size = 16
optimizer = "adamw"
lr = 0.001
schedule = "step"
warmup_steps = 10
weight_decay = 0.01
loss = "cross-entropy"
device = "cpu"
seed = 3
cric = true
save_sparse = true
threads = 2
unprunable = ["w1", "node"]
clip_grad_norm = 1.0
eval_every = 10
evaluations = 5
checkpoint_every = 20

[hesso]
start_pruning_step = 10
pruning_steps = 30
pruning_periods = 3
group_divisible = 2

[hesso.importance]
magnitude = 0.2
avg_magnitude = 0.2
cosine = 0.2
taylor1 = 0.2
taylor2 = 0.2

[cric_settings]
start_cric_step = 50
sampling_steps = 5
max_cycles = 2
tolerance = 1
hybrid_training_steps = 10
probe_weight = 0.1
"#;

/// Values no job file should hold.
const HOSTILE_VALUES: [&str; 24] = [
    "0",
    "-1",
    "1",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "1.0",
    "0.999999999999",
    "1e-320",
    "\"\"",
    "\"x\"",
    "true",
    "[]",
    "[1, 2]",
    "{}",
    "{ a = 1 }",
    "2026-01-01",
];

/// The bundled job files of `dir` (`*.toml`) and one that sets every key.
pub fn load_seeds(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut seeds = vec![("(every key)".to_string(), FULL_JOB.to_string())];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<_> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            seeds.push((p.display().to_string(), text));
        }
    }
    Ok(seeds)
}

/// A mutated copy of the job file `text`.
pub fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let keys: Vec<String> =
        lines.iter().filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string())).filter(|k| !k.starts_with('#')).collect();
    for _ in 0..=rng.below(3) {
        let n = lines.len();
        if n == 0 {
            lines.push(String::new());
            continue;
        }
        let i = rng.below(n);
        match rng.below(8) {
            0..=3 => {
                // A hostile value for a key.
                if let Some((k, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{k}= {}", HOSTILE_VALUES[rng.below(HOSTILE_VALUES.len())]);
                } else if let Some(k) = rng.pick(&keys) {
                    lines.push(format!("{k} = {}", HOSTILE_VALUES[rng.below(HOSTILE_VALUES.len())]));
                }
            }
            4 => {
                lines.remove(i);
            }
            5 => {
                // A repeated key or section.
                let l = lines[i].clone();
                lines.insert(rng.below(n + 1), l);
            }
            6 => {
                let section = ["[hesso]", "[cric_settings]", "[hesso.importance]", "[unknown]", "[[hesso]]", "["][rng.below(6)];
                lines.insert(rng.below(n + 1), section.to_string());
            }
            _ => {
                // A key under the wrong name, or an unknown one.
                if let Some((_, v)) = lines[i].split_once('=') {
                    let k = rng.pick(&keys).cloned().unwrap_or_else(|| "unknown_key".into());
                    lines[i] = format!("{k} ={v}");
                }
            }
        }
    }
    let mut out = lines.join("\n");
    if rng.chance(10) && !out.is_empty() {
        let mut bytes = out.into_bytes();
        let i = rng.below(bytes.len());
        bytes[i] = b"=\"[]{}#\n.0-"[rng.below(11)];
        out = String::from_utf8_lossy(&bytes).into_owned();
    }
    out
}

/// Parses and checks `text` as the job file `JOB_NAME`, then resolves it for a random
/// number of samples, with and without labels.
pub fn run(text: &str, rng: &mut Rng, report: &mut InputReport) {
    enter(Stage::JobParse);
    let spec = match JobSpec::from_toml_str(text, Path::new(JOB_NAME)) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e:#}");
            if !msg.contains(JOB_NAME) {
                report.unnamed_errors.push(msg.clone());
            }
            return report.refuse(Stage::JobParse, msg);
        }
    };
    enter(Stage::JobResolve);
    let spec = spec.overridden_by(JobSpec::default());
    let samples = [0, 1, 7, 1438, usize::MAX][rng.below(5)];
    match spec.resolve(samples, rng.chance(50)) {
        Ok(job) => {
            if let Err(e) = job.check() {
                report.invalid.push(format!("a resolved job fails Job::check: {e:#}"));
            }
        }
        Err(e) => report.refuse(Stage::JobResolve, format!("{e:#}")),
    }
}

//! The data options shared by every command that reads data (`prune`, `eval`): arrays
//! (`--data`), raw text (`--text` with a tokenizer) or an image folder (`--images`).

use crate::job::config::JobSpec;
use std::path::PathBuf;

/// Raw-text and image-folder data options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataArgs {
    /// Raw text instead of --data: one example per line (a tab then an integer label
    /// optional), or JSON Lines (.jsonl) with --text-field and --label-field.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "images"])]
    pub text: Option<PathBuf>,
    /// An image folder instead of --data: one sub-folder per class (sorted names are the
    /// class indices), PNG or JPEG files.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data", "text"])]
    pub images: Option<PathBuf>,
    /// The tokenizer for --text [default: tokenizer.json beside the model].
    #[arg(long, value_name = "tokenizer.json", requires = "text")]
    pub tokenizer: Option<PathBuf>,
    /// The JSON Lines field holding the text [default: text].
    #[arg(long, value_name = "NAME", requires = "text")]
    pub text_field: Option<String>,
    /// The JSON Lines field holding the integer label [default: label].
    #[arg(long, value_name = "NAME", requires = "text")]
    pub label_field: Option<String>,
    /// Tokens per example, padded and truncated [default: the model's fixed sequence
    /// length, else the tokenizer's, else 128].
    #[arg(long, value_name = "N", requires = "text")]
    pub max_length: Option<usize>,
    /// Channel means (R,G,B) subtracted from pixels scaled to [0, 1] [default: ImageNet's 0.485,0.456,0.406].
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb, requires = "images")]
    pub mean: Option<[f32; 3]>,
    /// Channel standard deviations (R,G,B) [default: ImageNet's 0.229,0.224,0.225].
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb, requires = "images")]
    pub std: Option<[f32; 3]>,
    /// Fraction of the image folder held out (chosen by --seed): validation data for
    /// `prune`, the images `eval` evaluates.
    #[arg(long, value_name = "F", requires = "images")]
    pub val_split: Option<f64>,
}

impl DataArgs {
    /// `spec` with these options set (for the job's [`JobSpec::data_source`]).
    pub fn apply(&self, spec: JobSpec) -> JobSpec {
        JobSpec {
            text: self.text.clone(),
            images: self.images.clone(),
            tokenizer: self.tokenizer.clone(),
            text_field: self.text_field.clone(),
            label_field: self.label_field.clone(),
            max_length: self.max_length,
            mean: self.mean,
            std: self.std,
            val_split: self.val_split,
            ..spec
        }
    }
}

/// Parses `R,G,B` (three numbers separated by commas).
fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let values: Vec<f32> =
        s.split(',').map(|v| v.trim().parse::<f32>().map_err(|_| format!("'{v}' is not a number"))).collect::<Result<_, _>>()?;
    <[f32; 3]>::try_from(values).map_err(|v| format!("expected three numbers R,G,B, got {}", v.len()))
}

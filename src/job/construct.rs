//! The construction stage: the trained (sparse) model read back from the executor, its
//! all-zero group elements found and cut out into the compact model.

use super::observe::{Event, Observer};
use super::train::Trained;
use anyhow::Result;
use oto_construct::ConstructReport;
use oto_onnx::Model;
use std::collections::BTreeMap;
use std::time::Instant;

/// The sparse and the compact model, and every model serialized.
pub struct Constructed {
    /// The original model serialized (every weight inline).
    pub original_bytes: Vec<u8>,
    /// The trained model, full size, pruned elements at zero.
    pub sparse: Model,
    /// The compact model.
    pub compact: Model,
    /// `sparse` serialized (every weight inline).
    pub sparse_bytes: Vec<u8>,
    /// `compact` serialized (every weight inline).
    pub compact_bytes: Vec<u8>,
    /// The elements removed, per group id (every all-zero element; includes HESSO's).
    pub removed: BTreeMap<String, Vec<usize>>,
    /// Parameters and MACs before and after.
    pub report: ConstructReport,
    /// Seconds this stage took.
    pub seconds: f64,
}

/// Builds the compact model from the trained one.
pub fn construct(trained: &Trained, observer: &mut dyn Observer) -> Result<Constructed> {
    observer.event(Event::Phase("constructing the compact model"));
    let t = Instant::now();
    let sparse = trained.exec.updated_model(&trained.model)?;
    let removed = oto_construct::zero_elements(&trained.analysis, &sparse)?;
    let (compact, mut report) = oto_construct::construct(&sparse, &trained.analysis, &removed)?;
    // Symbolic input axes other than batch and sequence (an image's height and width)
    // count at the sizes the data has.
    let data = super::train::data_shapes(&trained.eval_data);
    for (m, macs) in [(&sparse, &mut report.macs_before), (&compact, &mut report.macs_after)] {
        let graph = oto_onnx::Graph::new(m)?;
        let shapes = oto_onnx::shape::infer(&graph)?;
        let given = oto_onnx::cost::data_sizes(&graph, &shapes, &data);
        if !given.is_empty() {
            *macs = oto_onnx::cost::macs_given(&graph, &shapes, &given).total;
        }
    }
    let sparse_bytes = sparse.to_bytes()?;
    let compact_bytes = compact.to_bytes()?;
    let original_bytes = trained.model.to_bytes()?;
    Ok(Constructed { original_bytes, sparse, compact, sparse_bytes, compact_bytes, removed, report, seconds: t.elapsed().as_secs_f64() })
}

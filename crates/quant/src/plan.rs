//! [`BitPlan`]: how every quantizable weight is stored. The rewrite reads only this, so a
//! per-layer allocation (e.g. by Hessian traces) plugs in by building another plan.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The storage of one weight initializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bits {
    /// Kept as it is (float).
    Float,
    /// Symmetric int8, one scale per output channel.
    Int8,
    /// Symmetric int4, one scale per block of the input axis (and per output channel).
    Int4,
}

impl Bits {
    /// The bit width: 8, 4, or 32 for float.
    pub fn width(self) -> u8 {
        match self {
            Bits::Float => 32,
            Bits::Int8 => 8,
            Bits::Int4 => 4,
        }
    }

    /// The bits of `n` (8 or 4; 32 or 16 mean float).
    pub fn from_bits(n: u32) -> Option<Bits> {
        match n {
            8 => Some(Bits::Int8),
            4 => Some(Bits::Int4),
            16 | 32 => Some(Bits::Float),
            _ => None,
        }
    }
}

/// Bits per weight initializer, by initializer name. Weights it does not list get
/// [`BitPlan::default_bits`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitPlan {
    /// What unlisted weights get.
    pub default_bits: Bits,
    /// Per-weight choices.
    pub weights: BTreeMap<String, Bits>,
}

impl BitPlan {
    /// Every weight with the same bits.
    pub fn uniform(bits: Bits) -> BitPlan {
        BitPlan { default_bits: bits, weights: BTreeMap::new() }
    }

    /// The bits of the weight `name`.
    pub fn bits(&self, name: &str) -> Bits {
        self.weights.get(name).copied().unwrap_or(self.default_bits)
    }
}

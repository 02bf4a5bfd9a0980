//! Elementwise operators: one-input functions, broadcasting arithmetic and comparisons,
//! `Where`, `PRelu`, `Clip`, `Dropout`, `Cast`. Shapes: the input's, or the broadcast of
//! the inputs. No MACs are counted for them.

use super::{Op, ScalarParam};
use crate::error::Result;
use crate::graph::Graph;
use crate::proto::NodeProto;
use crate::shape::{broadcast_shapes, vt, Infer, ValueType, R};
use crate::tensor::DType;

/// One-input elementwise functions: the output has the input's shape (and type, except
/// `IsNaN` and `IsInf`, which are boolean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the ONNX operator of the same name
pub enum Unary {
    Relu,
    LeakyRelu,
    Elu,
    Selu,
    Celu,
    Gelu,
    Mish,
    Sigmoid,
    HardSigmoid,
    HardSwish,
    Tanh,
    Softplus,
    Softsign,
    ThresholdedRelu,
    Shrink,
    Exp,
    Log,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Erf,
    Floor,
    Ceil,
    Round,
    Sign,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Identity,
    Not,
    BitwiseNot,
    IsNaN,
    IsInf,
}

impl Unary {
    /// The kind of a one-input elementwise operator name.
    pub fn parse(op: &str) -> Option<Unary> {
        use Unary::*;
        Some(match op {
            "Relu" => Relu,
            "LeakyRelu" => LeakyRelu,
            "Elu" => Elu,
            "Selu" => Selu,
            "Celu" => Celu,
            "Gelu" => Gelu,
            "Mish" => Mish,
            "Sigmoid" => Sigmoid,
            "HardSigmoid" => HardSigmoid,
            "HardSwish" => HardSwish,
            "Tanh" => Tanh,
            "Softplus" => Softplus,
            "Softsign" => Softsign,
            "ThresholdedRelu" => ThresholdedRelu,
            "Shrink" => Shrink,
            "Exp" => Exp,
            "Log" => Log,
            "Neg" => Neg,
            "Abs" => Abs,
            "Sqrt" => Sqrt,
            "Reciprocal" => Reciprocal,
            "Erf" => Erf,
            "Floor" => Floor,
            "Ceil" => Ceil,
            "Round" => Round,
            "Sign" => Sign,
            "Sin" => Sin,
            "Cos" => Cos,
            "Tan" => Tan,
            "Asin" => Asin,
            "Acos" => Acos,
            "Atan" => Atan,
            "Sinh" => Sinh,
            "Cosh" => Cosh,
            "Asinh" => Asinh,
            "Acosh" => Acosh,
            "Atanh" => Atanh,
            "Identity" => Identity,
            "Not" => Not,
            "BitwiseNot" => BitwiseNot,
            "IsNaN" => IsNaN,
            "IsInf" => IsInf,
            _ => return None,
        })
    }
}

/// Broadcasting arithmetic: the output takes the element type of input 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the ONNX operator of the same name
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Mod,
    /// Variadic.
    Max,
    /// Variadic.
    Min,
    /// Variadic.
    Mean,
    /// Variadic.
    Sum,
    BitShift,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
}

impl Binary {
    /// The kind of a broadcasting arithmetic operator name.
    pub fn parse(op: &str) -> Option<Binary> {
        use Binary::*;
        Some(match op {
            "Add" => Add,
            "Sub" => Sub,
            "Mul" => Mul,
            "Div" => Div,
            "Pow" => Pow,
            "Mod" => Mod,
            "Max" => Max,
            "Min" => Min,
            "Mean" => Mean,
            "Sum" => Sum,
            "BitShift" => BitShift,
            "BitwiseAnd" => BitwiseAnd,
            "BitwiseOr" => BitwiseOr,
            "BitwiseXor" => BitwiseXor,
            _ => return None,
        })
    }
}

/// Broadcasting comparisons and logic: a boolean output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the ONNX operator of the same name
pub enum Compare {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl Compare {
    /// The kind of a comparison or logic operator name.
    pub fn parse(op: &str) -> Option<Compare> {
        use Compare::*;
        Some(match op {
            "Equal" => Equal,
            "Less" => Less,
            "Greater" => Greater,
            "LessOrEqual" => LessOrEqual,
            "GreaterOrEqual" => GreaterOrEqual,
            "And" => And,
            "Or" => Or,
            "Xor" => Xor,
            _ => return None,
        })
    }
}

impl Infer<'_, '_> {
    /// Operators whose output has the type and shape of input 0 (`PRelu`: its slope must
    /// broadcast to the input).
    pub(crate) fn same_shape(&mut self, node: &NodeProto, op: &Op) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        if *op == Op::PRelu {
            let slope = self.shape(node, 1)?;
            broadcast_shapes(&[&x, &slope]).map_err(|m| self.fail(node, m))?;
        }
        let dtype = match op {
            Op::Unary(Unary::IsNaN | Unary::IsInf) => Some(DType::Bool),
            _ => self.dtype(node, 0),
        };
        Ok(vec![vt(dtype, x)])
    }

    /// Broadcasting operators (arithmetic, comparisons, `Where`).
    pub(crate) fn broadcast(&mut self, node: &NodeProto, op: &Op) -> R<Vec<ValueType>> {
        let shapes: Vec<Vec<crate::shape::Dim>> = (0..node.input.len()).map(|k| self.shape(node, k)).collect::<R<_>>()?;
        let refs: Vec<&[crate::shape::Dim]> = shapes.iter().map(Vec::as_slice).collect();
        let out = broadcast_shapes(&refs).map_err(|m| self.fail(node, m))?;
        let dtype = match op {
            Op::Compare(_) => Some(DType::Bool),
            Op::Where => self.dtype(node, 1),
            _ => self.dtype(node, 0),
        };
        Ok(vec![vt(dtype, out)])
    }

    /// `Dropout`: the input's shape, and a boolean mask of the same shape.
    pub(crate) fn dropout(&mut self, node: &NodeProto) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        Ok(vec![vt(self.dtype(node, 0), x.clone()), vt(Some(DType::Bool), x)])
    }

    /// `Cast` (to its `to`) and `CastLike` (to input 1's type): the input's shape.
    pub(crate) fn cast(&mut self, node: &NodeProto, to: Option<DType>) -> R<Vec<ValueType>> {
        let x = self.shape(node, 0)?;
        Ok(vec![vt(to, x)])
    }
}

/// `Clip`'s bounds: the `min`/`max` attributes before opset 11, inputs 1 and 2 from then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// The lower bound; none: unbounded.
    pub min: ScalarParam,
    /// The upper bound; none: unbounded.
    pub max: ScalarParam,
}

impl Clip {
    pub(crate) fn parse(graph: &Graph<'_>, node: &NodeProto) -> Result<Clip> {
        Ok(Clip { min: ScalarParam::parse(graph, node, "min", 11, 1)?, max: ScalarParam::parse(graph, node, "max", 11, 2)? })
    }

    /// The bounds resolved against constants (and `folded` shapes); `None` for an absent bound.
    pub fn bounds(&self, graph: &Graph<'_>, node: &NodeProto, folded: Option<&crate::shape::Shapes>) -> Result<(Option<f32>, Option<f32>)> {
        let lo = self.min.resolve(graph, node, folded, "min")?;
        let hi = self.max.resolve(graph, node, folded, "max")?;
        Ok((lo.map(|v| v as f32), hi.map(|v| v as f32)))
    }
}

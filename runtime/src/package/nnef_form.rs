//! The typed tract graph of an exported ONNX model, rewritten so that tract's NNEF writer can
//! write it.
//!
//! `QuantizeLinearU8` and `DequantizeLinearF32` (the activations of a statically quantized
//! model, as tract 0.23.9 reads ONNX's QuantizeLinear / DequantizeLinear) have no NNEF
//! serializer. Each becomes the operators tract's own kernels compute:
//! `round_half_to_even(x * (1/scale)) + zero_point` clamped to 0..=255 and cast to u8; and
//! `(cast(q) - zero_point) * scale`. Same order, same f32 operations, so the same values.
//!
//! Weights are written as f32 whatever the ONNX file stores: the writer propagates constants
//! before it writes (`tract_nnef::ser::rewrite_model`), which folds the f16 `Cast` and int8
//! `DequantizeLinear` of every weight; so does tract's ONNX reader. Putting the stored tensor
//! and its dequantization back into the typed graph was tried and folded again.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearU8};

/// `model` with its activation quantizers in NNEF-writable operators.
pub fn serializable(mut model: TypedModel) -> TractResult<TypedModel> {
    let quantize = |n: &TypedNode| -> Option<QuantizeLinearU8> {
        n.op_as::<ElementWiseOp>()?
            .0
            .downcast_ref::<QuantizeLinearU8>()
            .cloned()
    };
    let quantizers: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| quantize(n).is_some() || n.op_is::<DequantizeLinearF32>())
        .map(|n| n.id)
        .collect();
    for id in quantizers {
        let patch = if let Some(q) = quantize(model.node(id)) {
            quantize_patch(&model, id, q.scale, q.zero_point)?
        } else if let Some(dq) = model.node(id).op_as::<DequantizeLinearF32>() {
            dequantize_patch(&model, id, dq.scale, dq.zero_point)?
        } else {
            continue;
        };
        patch.apply(&mut model)?;
    }
    model.into_compact()
}

/// An f32 constant of the given rank (all dimensions 1) for element-wise operators.
fn scalar(value: f32, rank: usize) -> TractResult<Tensor> {
    tensor0(value).broadcast_into_rank(rank)
}

/// `QuantizeLinearU8 { scale: 1/s, zero_point }` as tract computes it
/// (`quantize_linear_f32_u8`), in NNEF-writable operators.
fn quantize_patch(
    model: &TypedModel,
    id: usize,
    inverse_scale: f32,
    zero_point: u8,
) -> TractResult<TypedModelPatch> {
    let node = model.node(id);
    let name = &node.name;
    let mut patch = TypedModelPatch::new(format!("quantize {name}"));
    let x = patch.tap_model(model, node.inputs[0])?;
    let rank = model.outlet_fact(node.inputs[0])?.rank();
    let mut wire = x;
    if model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
        wire = patch.wire_node(format!("{name}.as_f32"), cast(f32::datum_type()), &[wire])?[0];
    }
    let k = |patch: &mut TypedModelPatch, label: &str, v: f32| {
        patch.add_const(format!("{name}.{label}"), scalar(v, rank)?)
    };
    let s = k(&mut patch, "inverse_scale", inverse_scale)?;
    wire = patch.wire_node(format!("{name}.scaled"), math::mul(), &[wire, s])?[0];
    wire = patch.wire_node(
        format!("{name}.rounded"),
        math::round_half_to_even(),
        &[wire],
    )?[0];
    let z = k(&mut patch, "zero_point", f32::from(zero_point))?;
    wire = patch.wire_node(format!("{name}.shifted"), math::add(), &[wire, z])?[0];
    let lo = k(&mut patch, "min", 0.0)?;
    wire = patch.wire_node(format!("{name}.low"), math::max(), &[wire, lo])?[0];
    let hi = k(&mut patch, "max", 255.0)?;
    wire = patch.wire_node(format!("{name}.high"), math::min(), &[wire, hi])?[0];
    wire = patch.wire_node(format!("{name}.u8"), cast(u8::datum_type()), &[wire])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
    Ok(patch)
}

/// `DequantizeLinearF32 { scale, zero_point }`: `(q - zero_point) * scale` in f32.
fn dequantize_patch(
    model: &TypedModel,
    id: usize,
    scale: f32,
    zero_point: i32,
) -> TractResult<TypedModelPatch> {
    let node = model.node(id);
    let name = &node.name;
    let mut patch = TypedModelPatch::new(format!("dequantize {name}"));
    let q = patch.tap_model(model, node.inputs[0])?;
    let rank = model.outlet_fact(node.inputs[0])?.rank();
    let mut wire = patch.wire_node(format!("{name}.as_f32"), cast(f32::datum_type()), &[q])?[0];
    if zero_point != 0 {
        let z = patch.add_const(
            format!("{name}.zero_point"),
            scalar(zero_point as f32, rank)?,
        )?;
        wire = patch.wire_node(format!("{name}.centred"), math::sub(), &[wire, z])?[0];
    }
    let s = patch.add_const(format!("{name}.scale"), scalar(scale, rank)?)?;
    wire = patch.wire_node(format!("{name}.scaled"), math::mul(), &[wire, s])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
    Ok(patch)
}

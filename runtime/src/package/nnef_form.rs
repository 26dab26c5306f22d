//! The typed tract graph of an exported ONNX model, rewritten so that tract's NNEF writer can
//! write it.
//!
//! `GeluExact`, which decluttering makes of the `Erf` chain ONNX writes for GELU, has no
//! serializer either; it is put back as that chain (the loading device fuses it again).
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
use tract_onnx::tract_core::ops::nn::GeluExact;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearU8};

/// `model` (decluttered) with the operators tract cannot write replaced: the activation
/// quantizers, and the exact GELU that decluttering fuses out of ONNX's `Erf` chain (UNeXt's
/// MLP blocks), put back as that chain.
pub fn serializable(mut model: TypedModel) -> TractResult<TypedModel> {
    let quantize = |n: &TypedNode| -> Option<QuantizeLinearU8> {
        n.op_as::<ElementWiseOp>()?
            .0
            .downcast_ref::<QuantizeLinearU8>()
            .cloned()
    };
    let is_gelu = |n: &TypedNode| {
        n.op_as::<ElementWiseOp>()
            .is_some_and(|e| e.0.downcast_ref::<GeluExact>().is_some())
    };
    let unwritable: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| quantize(n).is_some() || n.op_is::<DequantizeLinearF32>() || is_gelu(n))
        .map(|n| n.id)
        .collect();
    for id in unwritable {
        let patch = if let Some(q) = quantize(model.node(id)) {
            quantize_patch(&model, id, q.scale, q.zero_point)?
        } else if let Some(dq) = model.node(id).op_as::<DequantizeLinearF32>() {
            dequantize_patch(&model, id, dq.scale, dq.zero_point)?
        } else {
            gelu_patch(&model, id)?
        };
        patch.apply(&mut model)?;
    }
    model.into_compact()
}

/// `GeluExact` as `(x * 0.5) * (erf(x * 1/sqrt(2)) + 1)`, the order its kernel computes in.
fn gelu_patch(model: &TypedModel, id: usize) -> TractResult<TypedModelPatch> {
    let node = model.node(id);
    let name = &node.name;
    let fact = model.outlet_fact(node.inputs[0])?;
    anyhow::ensure!(
        fact.datum_type == f32::datum_type(),
        "{name}: GELU on {:?}, only f32 is rewritten",
        fact.datum_type
    );
    let rank = fact.rank();
    let mut patch = TypedModelPatch::new(format!("gelu {name}"));
    let x = patch.tap_model(model, node.inputs[0])?;
    let c = scalar(&mut patch, name, "inv_sqrt2", 2f32.sqrt().recip(), rank)?;
    let mut e = patch.wire_node(format!("{name}.scaled"), math::mul(), &[x, c])?[0];
    e = patch.wire_node(format!("{name}.erf"), math::erf(), &[e])?[0];
    let one = scalar(&mut patch, name, "one", 1.0, rank)?;
    e = patch.wire_node(format!("{name}.plus_one"), math::add(), &[e, one])?[0];
    let half = scalar(&mut patch, name, "half", 0.5, rank)?;
    let h = patch.wire_node(format!("{name}.half"), math::mul(), &[x, half])?[0];
    let y = patch.wire_node(format!("{name}.gelu"), math::mul(), &[h, e])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), y)?;
    Ok(patch)
}

/// The f32 constant `value`, named `{node}.{label}`, of `rank` with every dimension 1 (an
/// operand for element-wise operators), added to `patch`.
fn scalar(
    patch: &mut TypedModelPatch,
    node: &str,
    label: &str,
    value: f32,
    rank: usize,
) -> TractResult<OutletId> {
    patch.add_const(
        format!("{node}.{label}"),
        tensor0(value).broadcast_into_rank(rank)?,
    )
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
    let fact = model.outlet_fact(node.inputs[0])?;
    let rank = fact.rank();
    let mut wire = patch.tap_model(model, node.inputs[0])?;
    if fact.datum_type != f32::datum_type() {
        wire = patch.wire_node(format!("{name}.as_f32"), cast(f32::datum_type()), &[wire])?[0];
    }
    let s = scalar(&mut patch, name, "inverse_scale", inverse_scale, rank)?;
    wire = patch.wire_node(format!("{name}.scaled"), math::mul(), &[wire, s])?[0];
    wire = patch.wire_node(
        format!("{name}.rounded"),
        math::round_half_to_even(),
        &[wire],
    )?[0];
    let z = scalar(&mut patch, name, "zero_point", f32::from(zero_point), rank)?;
    wire = patch.wire_node(format!("{name}.shifted"), math::add(), &[wire, z])?[0];
    let lo = scalar(&mut patch, name, "min", 0.0, rank)?;
    wire = patch.wire_node(format!("{name}.low"), math::max(), &[wire, lo])?[0];
    let hi = scalar(&mut patch, name, "max", 255.0, rank)?;
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
        let z = scalar(&mut patch, name, "zero_point", zero_point as f32, rank)?;
        wire = patch.wire_node(format!("{name}.centred"), math::sub(), &[wire, z])?[0];
    }
    let s = scalar(&mut patch, name, "scale", scale, rank)?;
    wire = patch.wire_node(format!("{name}.scaled"), math::mul(), &[wire, s])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
    Ok(patch)
}
